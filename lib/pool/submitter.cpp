// PoolCore: the one submitter (see include/mproc/detail/pool_core.hpp for
// the design in short, lib/pool/worker_transport.hpp for transports).
//
// Threads: the callers' (submit, close, join, terminate, interrupt), the
// result thread (takes result messages, finishes jobs, tops the transport
// up), the timer thread (per-task timeouts and interrupting cancels: ends
// the worker holding a doomed chunk), and the transport's own. `mu` guards
// the bookkeeping; job callbacks always run without it (so a callback may
// submit more work) and one at a time (under ResultPump::mu).
#include "pool/local_transport.hpp"
#include "pool/submitter_impl.hpp"

namespace mproc::detail {

std::string death_message(int pid, int code) {
    std::string m = "a worker process (pid " + std::to_string(pid) + ") ";
    if (code < 0) {
        std::string name = os::signal_name(-code);
        m += "was killed by signal " + std::to_string(-code) + (name.empty() ? "" : " (" + name + ")");
    } else {
        m += "exited with code " + std::to_string(code);
    }
    return m;
}

bool& handling_results() noexcept {
    thread_local bool handling = false;
    return handling;
}

std::size_t default_chunksize(std::size_t n, int processes, std::size_t chunksize) {
    if (chunksize > 0) return chunksize;
    std::size_t d = 4 * static_cast<std::size_t>(std::max(processes, 1));
    std::size_t c = n / d + (n % d ? 1 : 0);
    return std::max<std::size_t>(c, 1);
}

bool spin_for_result(const std::atomic<bool>& done, ResultPump* pump) noexcept {
    if (pump == nullptr || handling_results())
        return os::spin_until([&] { return done.load(std::memory_order_acquire); }, os::spin_budget_ns());
    return os::spin_until(
        [&] {
            if (done.load(std::memory_order_acquire)) return true;
            try {
                std::shared_lock<std::shared_mutex> g(pump->live_mu);
                if (pump->ctx) pump->pump_one(pump->ctx);
            } catch (...) {
                // Leave it to the result thread, which reports failures.
            }
            return done.load(std::memory_order_acquire);
        },
        os::spin_budget_ns());
}

bool interrupt_job(const std::weak_ptr<ResultPump>& pump, const Job* job, std::exception_ptr e) {
    std::shared_ptr<ResultPump> p = pump.lock();
    if (!p) return false;
    std::shared_lock<std::shared_mutex> g(p->live_mu);
    return p->ctx && p->interrupt(p->ctx, job, std::move(e));
}

std::weak_ptr<ResultPump> PoolCore::pump() const { return impl_->pump; }

PoolCore::PoolCore(PoolConfig cfg) {
    if (!cfg.transport) {
        if (cfg.processes < 1) throw ValueError("mproc pool: the number of processes must be at least 1");
        if (cfg.processes > kMaxWorkers)
            throw ValueError("mproc pool: at most " + std::to_string(kMaxWorkers) + " worker processes per pool");
        cfg.transport = make_local_transport(cfg);
    }
    impl_ = std::make_unique<Impl>(std::move(cfg));
    Impl& m = *impl_;
    m.transport = m.cfg.transport;
    m.cfg.processes = m.transport->size();
    m.window = m.cfg.window != 0          ? m.cfg.window
               : m.cfg.break_on_death ? static_cast<std::size_t>(m.cfg.processes) + 1
                                      : static_cast<std::size_t>(m.cfg.processes) * 4 + 4;
    m.transport->start(m);
    m.pump->ctx = &m;
    m.pump->pump_one = [](void* c) { return static_cast<Impl*>(c)->pump_one(); };
    m.pump->interrupt = [](void* c, const Job* j, std::exception_ptr e) {
        return static_cast<Impl*>(c)->interrupt(j, std::move(e));
    };
    m.pump->feeder_done = [](void* c) {
        auto* i = static_cast<Impl*>(c);
        std::lock_guard<std::mutex> g(i->mu);
        --i->feeders;
        i->idle_cv.notify_all();
    };
    m.result_thread = std::thread([&m] { m.result_loop(); });
    m.timer_thread = std::thread([&m] { m.timer_loop(); });
    m.threads_running = true;
}

PoolCore::~PoolCore() {
    {
        std::unique_lock<std::shared_mutex> g(impl_->pump->live_mu);
        impl_->pump->ctx = nullptr;
    }
    try {
        terminate();
    } catch (...) {
    }
}

std::span<const std::byte> PoolCore::task_ref(TaskEntry entry, AnyFunction fn, RefMaker make_ref) {
    Impl& m = *impl_;
    auto key = std::make_pair(entry, fn);
    {
        std::lock_guard<std::mutex> g(m.mu);
        auto it = m.refs.find(key);
        if (it != m.refs.end()) return it->second;
    }
    std::vector<std::byte> ref = make_ref(fn);
    std::lock_guard<std::mutex> g(m.mu);
    return m.refs.emplace(key, std::move(ref)).first->second;
}

void PoolCore::submit(std::vector<Chunk> chunks, bool continuation) {
    Impl& m = *impl_;
    std::lock_guard<std::mutex> g(m.mu);
    if (m.broken) throw BrokenProcessPool(m.broken_reason.empty() ? "the process pool is broken" : m.broken_reason);
    if (m.state != Impl::State::running && !(continuation && m.state == Impl::State::closed))
        throw ValueError("mproc pool: the pool is not running (closed or terminated)");
    for (auto& c : chunks) {
        Impl::Queued q;
        q.id = m.next_chunk++;
        TaskHeader h;
        if (c.msg.size() < sizeof h) throw ValueError("mproc pool: a chunk without its task header");
        std::memcpy(&h, c.msg.data(), sizeof h);
        h.chunk = q.id;
        h.count = c.count;
        std::memcpy(c.msg.data(), &h, sizeof h);
        q.job = std::move(c.job);
        q.first = c.first;
        q.count = c.count;
        q.msg = std::move(c.msg);
        q.timeout = c.timeout;
        m.backlog.push_back(std::move(q));
    }
    m.dispatch_locked();
}

void PoolCore::close() {
    Impl& m = *impl_;
    std::lock_guard<std::mutex> g(m.mu);
    if (m.state == Impl::State::running) m.state = Impl::State::closed;
}

void PoolCore::join() {
    Impl& m = *impl_;
    {
        std::unique_lock<std::mutex> g(m.mu);
        if (m.state == Impl::State::running) throw ValueError("mproc::Pool::join: call close() or terminate() first");
        m.idle_cv.wait(g, [&] { return (m.backlog.empty() && m.inflight.empty() && m.feeders == 0) || m.broken; });
        if (m.state == Impl::State::closed) m.state = Impl::State::stopping;
    }
    if (!m.threads_running) return;
    m.transport->send_stop();
    m.transport->join_workers();
    m.transport->stop();
    m.stop_threads();
}

void PoolCore::terminate(const char* reason) { impl_->teardown(true, reason); }

void PoolCore::shutdown(bool wait, bool cancel_queued) {
    Impl& m = *impl_;
    std::vector<Impl::Failure> fs;
    {
        std::lock_guard<std::mutex> g(m.mu);
        if (m.state == Impl::State::running) m.state = Impl::State::closed;
        if (cancel_queued) {
            auto e = std::make_exception_ptr(CancelledError("cancelled by shutdown(cancel_futures=true)"));
            for (auto& q : m.backlog) fs.push_back({std::move(q.job), q.first, q.count, e});
            m.backlog.clear();
            m.idle_cv.notify_all();
        }
    }
    m.deliver(fs);
    if (!wait) return;
    bool broken;
    {
        std::lock_guard<std::mutex> g(m.mu);
        broken = m.broken;
    }
    if (broken) terminate("the process pool is broken");
    else join();
}

void PoolCore::end_workers(bool kill) {
    shutdown(false, true);
    impl_->teardown(kill, kill ? "kill_workers() ended the worker process running this task"
                               : "terminate_workers() ended the worker process running this task");
}

bool PoolCore::withdraw(const Job* job) {
    Impl& m = *impl_;
    std::lock_guard<std::mutex> g(m.mu);
    auto n = std::erase_if(m.backlog, [job](const Impl::Queued& q) { return q.job.get() == job; });
    if (m.backlog.empty() && m.inflight.empty()) m.idle_cv.notify_all();
    return n > 0;
}

bool PoolCore::interrupt(const Job* job, std::exception_ptr e) { return impl_->interrupt(job, std::move(e)); }

std::shared_ptr<void> PoolCore::keep_open() {
    Impl& m = *impl_;
    {
        std::lock_guard<std::mutex> g(m.mu);
        ++m.feeders;
    }
    std::weak_ptr<ResultPump> weak = m.pump;
    return std::shared_ptr<void>(nullptr, [weak](void*) {
        if (auto p = weak.lock()) {
            std::shared_lock<std::shared_mutex> g(p->live_mu);
            if (p->ctx) p->feeder_done(p->ctx);
        }
    });
}

int PoolCore::processes() const noexcept { return impl_->cfg.processes; }

std::vector<int> PoolCore::worker_pids() const { return impl_->transport->worker_ids(); }

bool PoolCore::broken() const {
    std::lock_guard<std::mutex> g(impl_->mu);
    return impl_->broken;
}

}  // namespace mproc::detail
