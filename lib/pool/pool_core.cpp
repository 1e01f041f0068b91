// PoolCore: the parent side of Pool and ProcessPoolExecutor (see
// include/mproc/detail/pool_core.hpp for the design in short).
//
// Threads: the caller's (submit, close, join, terminate), the result thread
// (reads the result channel, finishes jobs, tops up the task channel) and
// the watcher thread (polls the workers' sentinels and a wake-up socket).
// `mu` guards the bookkeeping; job callbacks always run without it, so a
// callback may submit more work.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <map>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>

#include <csignal>
#include <cstring>

#include "mproc/detail/pool_core.hpp"
#include "os/os.hpp"
#include "os/socket.hpp"
#include "os/process.hpp"
#include "pool/messages.hpp"

namespace mproc::detail {

namespace {

constexpr std::size_t kChannelCapacity = std::size_t{4} << 20;
// A sanity bound, far above any core count: each worker costs an fd
// (its sentinel) in the watcher's poll set and a process.
constexpr int kMaxWorkers = 4096;

std::string death_message(int pid, int code) {
    std::string m = "a worker process (pid " + std::to_string(pid) + ") ";
    if (code < 0) {
        const char* name = sigabbrev_np(-code);
        m += "was killed by signal " + std::to_string(-code) + (name ? std::string(" (SIG") + name + ")" : "");
    } else {
        m += "exited with code " + std::to_string(code);
    }
    return m + " while running this task; the pool replaced it";
}

std::string broken_message(int pid, int code) {
    std::string m = death_message(pid, code);
    m.resize(m.size() - std::string("; the pool replaced it").size());
    return "A process in the process pool was terminated abruptly while the future was running or "
           "pending: " + m;
}

}  // namespace

std::size_t default_chunksize(std::size_t n, int processes, std::size_t chunksize) {
    if (chunksize > 0) return chunksize;
    std::size_t d = 4 * static_cast<std::size_t>(std::max(processes, 1));
    std::size_t c = n / d + (n % d ? 1 : 0);
    return std::max<std::size_t>(c, 1);
}

/// See pool_core.hpp. `ctx` is the pool's Impl while it lives.
struct ResultPump {
    std::mutex mu;       // one result handled at a time
    std::mutex live_mu;  // guards ctx against the pool's destruction
    void* ctx = nullptr;
    bool (*pump_one)(void*) = nullptr;
};

namespace {
// Set while this thread handles a result: a future callback that waits for
// another result must not pump (it would re-enter ResultPump::mu).
thread_local bool t_handling = false;
}  // namespace

struct PoolCore::Impl {
    struct Worker {
        Process proc;
        int pid = 0;
        int sentinel = -1;
        bool alive = false;
    };
    struct InFlight {
        std::shared_ptr<Job> job;
        std::uint64_t first = 0;
        std::uint32_t count = 0;
    };
    struct Queued {
        std::uint64_t id = 0;
        std::shared_ptr<Job> job;
        std::uint64_t first = 0;
        std::uint32_t count = 0;
        std::vector<std::byte> msg;
    };
    struct Failure {
        std::shared_ptr<Job> job;
        std::uint64_t first;
        std::uint32_t count;
        std::exception_ptr e;
    };
    enum class State { running, closed, stopping, terminated };

    PoolConfig cfg;
    PoolChannel tasks{kChannelCapacity};
    PoolChannel results{kChannelCapacity};
    Array<std::uint64_t> slots;
    std::size_t window = 0;

    mutable std::mutex mu;
    std::condition_variable idle_cv;
    std::vector<Worker> workers;
    std::deque<Queued> backlog;
    std::unordered_map<std::uint64_t, InFlight> inflight;
    std::uint64_t next_chunk = 1;
    std::map<std::pair<TaskEntry, AnyFunction>, std::vector<std::byte>> refs;
    State state = State::running;
    bool broken = false;
    std::string broken_reason;

    os::Fd wake_r, wake_w;
    std::atomic<bool> watcher_stop{false};
    std::thread result_thread, watcher_thread;
    std::shared_ptr<ResultPump> pump = std::make_shared<ResultPump>();
    bool threads_running = false;

    explicit Impl(PoolConfig c)
        : cfg(std::move(c)), slots(static_cast<std::size_t>(std::max(cfg.processes, 1))) {}

    // ---- workers ----------------------------------------------------------

    Worker start_worker(std::uint32_t index) {
        Worker w;
        w.proc = cfg.factory(tasks, results, slots, index, cfg.maxtasks);
        // The threads running here are the pool's own (result and watcher),
        // and a worker needs none of their locks: no warning for this fork.
        QuietForkScope quiet;
        w.proc.start();
        w.pid = *w.proc.pid();
        w.sentinel = w.proc.sentinel();
        w.alive = true;
        return w;
    }

    // ---- dispatch ---------------------------------------------------------

    // Moves chunks from the backlog into the task channel while the window
    // has room. Under mu.
    void dispatch_locked() {
        while (!backlog.empty() && inflight.size() < window) {
            Queued& q = backlog.front();
            if (!q.job->on_dispatch(q.first)) {
                backlog.pop_front();
                continue;
            }
            if (!tasks.core().put(q.msg, Duration(0))) break;  // ring full: the next result retries
            inflight.emplace(q.id, InFlight{std::move(q.job), q.first, q.count});
            backlog.pop_front();
        }
        if (backlog.empty() && inflight.empty()) idle_cv.notify_all();
    }

    // Takes every unfinished chunk out of the bookkeeping. Under mu.
    void take_all_locked(std::vector<Failure>& out, std::exception_ptr e) {
        for (auto& [id, f] : inflight) out.push_back({std::move(f.job), f.first, f.count, e});
        inflight.clear();
        for (auto& q : backlog) out.push_back({std::move(q.job), q.first, q.count, e});
        backlog.clear();
        idle_cv.notify_all();
    }

    static void fail(std::vector<Failure>& fs) {
        for (auto& f : fs) {
            try {
                f.job->on_failure(f.first, f.count, f.e);
            } catch (...) {
            }
        }
        fs.clear();
    }

    // ---- result thread ----------------------------------------------------

    void result_loop() {
        for (;;) {
            // Wait without holding the channel's read side, so a thread
            // waiting for its result can take results meanwhile (pump_one).
            results.core().poll(std::nullopt);
            std::lock_guard<std::mutex> one_at_a_time(pump->mu);
            ReadReservation r;
            if (!results.core().begin_get(r, Duration(0))) continue;  // a waiter took it
            if (!handle_result(r)) return;
        }
    }

    /// Handles one result if no one else is and one is there (a waiter's
    /// spin). False if it did not.
    bool pump_one() {
        std::unique_lock<std::mutex> g(pump->mu, std::try_to_lock);
        if (!g) return false;
        ReadReservation r;
        if (!results.core().begin_get(r, Duration(0))) return false;
        ResultHeader h;
        auto b = r.bytes();
        if (b.size() >= sizeof h) {
            std::memcpy(&h, b.data(), sizeof h);
            if (h.kind == ResultKind::stop) return false;  // the result thread's; left in place
        }
        handle_result(r);
        return true;
    }

    /// Handles a result (committing it); false for the stop message.
    bool handle_result(ReadReservation& r) {
        struct Handling {  // results handled here may finish futures whose
            Handling() { t_handling = true; }  // callbacks wait on others:
            ~Handling() { t_handling = false; }  // those must not pump
        } handling;
        {
            auto b = r.bytes();
            ResultHeader h;
            if (b.size() < sizeof h) {
                r.commit();
                return true;
            }
            std::memcpy(&h, b.data(), sizeof h);
            if (h.kind == ResultKind::stop) {
                r.commit();
                return false;
            }
            std::vector<Failure> failures;
            std::optional<InFlight> done;
            {
                std::lock_guard<std::mutex> g(mu);
                auto it = inflight.find(h.chunk);
                if (it != inflight.end()) {
                    done = std::move(it->second);
                    inflight.erase(it);
                }
                if (h.kind == ResultKind::worker_died && cfg.break_on_death && !broken &&
                    state != State::terminated && (done || h.code != 0)) {
                    broken = true;
                    broken_reason = broken_message(h.pid, h.code);
                    auto e = std::make_exception_ptr(BrokenProcessPool(broken_reason));
                    if (done) failures.push_back({std::move(done->job), done->first, done->count, e});
                    done.reset();
                    take_all_locked(failures, e);
                    for (auto& w : workers)
                        if (w.alive) w.proc.kill();
                } else if (state != State::terminated) {
                    dispatch_locked();
                }
            }
            if (done) {
                try {
                    if (h.kind == ResultKind::outcomes) {
                        done->job->on_chunk(done->first, done->count, b.subspan(sizeof h));
                    } else if (h.kind == ResultKind::chunk_error) {
                        InBuf in(b.subspan(sizeof h));
                        done->job->on_failure(done->first, done->count, decode_exception(in));
                    } else {
                        done->job->on_failure(
                            done->first, done->count,
                            std::make_exception_ptr(BrokenProcessPool(death_message(h.pid, h.code))));
                    }
                } catch (...) {
                    try {
                        done->job->on_failure(done->first, done->count, std::current_exception());
                    } catch (...) {
                    }
                }
            }
            r.commit();
            fail(failures);
        }
        return true;
    }

    void post(const ResultHeader& h) {
        results.core().put(std::as_bytes(std::span(&h, 1)), std::nullopt);
    }

    // ---- watcher thread ---------------------------------------------------

    void watch_loop() {
        std::vector<int> fds;
        std::vector<std::size_t> index;
        for (;;) {
            fds.assign(1, wake_r.get());
            index.assign(1, 0);
            {
                std::lock_guard<std::mutex> g(mu);
                for (std::size_t i = 0; i < workers.size(); ++i)
                    if (workers[i].alive) {
                        fds.push_back(workers[i].sentinel);
                        index.push_back(i);
                    }
            }
            const std::vector<std::size_t> ready = os::poll_readable(fds, os::Deadline::never());
            if (!ready.empty() && ready.front() == 0) {
                std::byte buf[64];
                (void)::read(wake_r.get(), buf, sizeof buf);
            }
            if (watcher_stop.load()) return;
            for (std::size_t k : ready)
                if (k != 0) on_worker_exit(static_cast<std::uint32_t>(index[k]));
        }
    }

    void on_worker_exit(std::uint32_t i) {
        Process old;
        int pid = 0;
        {
            std::lock_guard<std::mutex> g(mu);
            old = workers[i].proc;
            pid = workers[i].pid;
        }
        old.join();
        int code = old.exitcode().value_or(-SIGKILL);
        std::atomic_ref<std::uint64_t> slot(slots.data()[i]);
        std::uint64_t chunk = slot.exchange(0);
        bool replace;
        {
            std::lock_guard<std::mutex> g(mu);
            workers[i].alive = false;
            replace = !broken && (state == State::running || state == State::closed);
        }
        if (chunk || code != 0) post(ResultHeader{chunk, ResultKind::worker_died, code, pid});
        if (!replace) return;
        try {
            Worker w = start_worker(i);
            std::lock_guard<std::mutex> g(mu);
            if (state == State::terminated || broken) {
                w.proc.kill();
                w.proc.join();
                return;
            }
            workers[i] = std::move(w);
        } catch (...) {
            std::vector<Failure> fs;
            {
                std::lock_guard<std::mutex> g(mu);
                bool any = std::any_of(workers.begin(), workers.end(), [](const Worker& w) { return w.alive; });
                if (!any) {
                    broken = true;
                    take_all_locked(fs, std::make_exception_ptr(BrokenProcessPool(
                                            "the pool could not start a worker process")));
                }
            }
            fail(fs);
        }
    }

    void wake_watcher() {
        std::byte b{1};
        (void)::write(wake_w.get(), &b, 1);
    }

    // Stops both threads (not from either of them).
    void stop_threads() {
        if (!threads_running) return;
        threads_running = false;
        watcher_stop = true;
        wake_watcher();
        watcher_thread.join();
        post(ResultHeader{0, ResultKind::stop, 0, 0});
        result_thread.join();
    }
};

bool spin_for_result(const std::atomic<bool>& done, ResultPump* pump) noexcept {
    if (pump == nullptr || t_handling)
        return os::spin_until([&] { return done.load(std::memory_order_acquire); }, os::spin_budget_ns());
    return os::spin_until(
        [&] {
            if (done.load(std::memory_order_acquire)) return true;
            try {
                std::lock_guard<std::mutex> g(pump->live_mu);
                if (pump->ctx) pump->pump_one(pump->ctx);
            } catch (...) {
                // Leave it to the result thread, which reports failures.
            }
            return done.load(std::memory_order_acquire);
        },
        os::spin_budget_ns());
}

std::weak_ptr<ResultPump> PoolCore::pump() const { return impl_->pump; }

PoolCore::PoolCore(PoolConfig cfg) {
    if (cfg.processes < 1) throw ValueError("mproc pool: the number of processes must be at least 1");
    if (cfg.processes > kMaxWorkers)
        throw ValueError("mproc pool: at most " + std::to_string(kMaxWorkers) + " worker processes per pool");
    impl_ = std::make_unique<Impl>(std::move(cfg));
    Impl& m = *impl_;
    m.window = m.cfg.break_on_death ? static_cast<std::size_t>(m.cfg.processes) + 1
                                    : static_cast<std::size_t>(m.cfg.processes) * 4 + 4;
    auto [a, b] = os::unix_socket_pair(false);
    m.wake_r = std::move(a);
    m.wake_w = std::move(b);
    try {
        for (int i = 0; i < m.cfg.processes; ++i) m.workers.push_back(m.start_worker(static_cast<std::uint32_t>(i)));
    } catch (...) {
        for (auto& w : m.workers) {
            w.proc.kill();
            w.proc.join();
        }
        throw;
    }
    m.pump->ctx = &m;
    m.pump->pump_one = [](void* c) { return static_cast<Impl*>(c)->pump_one(); };
    m.result_thread = std::thread([&m] { m.result_loop(); });
    m.watcher_thread = std::thread([&m] { m.watch_loop(); });
    m.threads_running = true;
}

PoolCore::~PoolCore() {
    {
        std::lock_guard<std::mutex> g(impl_->pump->live_mu);
        impl_->pump->ctx = nullptr;
    }
    try {
        terminate();
    } catch (...) {
    }
}

void PoolCore::submit(TaskEntry entry, AnyFunction fn, RefMaker make_ref, std::vector<Chunk> chunks) {
    Impl& m = *impl_;
    std::unique_lock<std::mutex> g(m.mu);
    if (m.broken) throw BrokenProcessPool(m.broken_reason.empty() ? "the process pool is broken" : m.broken_reason);
    if (m.state != Impl::State::running) throw ValueError("mproc pool: the pool is not running (closed or terminated)");
    auto key = std::make_pair(entry, fn);
    auto it = m.refs.find(key);
    if (it == m.refs.end()) {
        g.unlock();
        std::vector<std::byte> ref = make_ref(fn);
        g.lock();
        it = m.refs.emplace(key, std::move(ref)).first;
    }
    const std::vector<std::byte>& ref = it->second;
    for (auto& c : chunks) {
        Impl::Queued q;
        q.id = m.next_chunk++;
        q.job = std::move(c.job);
        q.first = c.first;
        q.count = c.count;
        TaskHeader h{q.id, c.count, static_cast<std::uint32_t>(ref.size())};
        q.msg.resize(sizeof h + ref.size() + c.items.size());
        std::memcpy(q.msg.data(), &h, sizeof h);
        std::memcpy(q.msg.data() + sizeof h, ref.data(), ref.size());
        if (!c.items.empty()) std::memcpy(q.msg.data() + sizeof h + ref.size(), c.items.data(), c.items.size());
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
        m.idle_cv.wait(g, [&] { return (m.backlog.empty() && m.inflight.empty()) || m.broken; });
        if (m.state == Impl::State::closed) m.state = Impl::State::stopping;
    }
    if (!m.threads_running) return;
    TaskHeader stop{};
    for (int i = 0; i < m.cfg.processes; ++i) m.tasks.core().put(std::as_bytes(std::span(&stop, 1)), std::nullopt);
    std::vector<Process> procs;
    {
        std::lock_guard<std::mutex> g(m.mu);
        for (auto& w : m.workers) procs.push_back(w.proc);
    }
    for (auto& p : procs) p.join();
    m.stop_threads();
}

void PoolCore::terminate(const char* reason) {
    Impl& m = *impl_;
    std::vector<Impl::Failure> fs;
    std::vector<Process> procs;
    {
        std::lock_guard<std::mutex> g(m.mu);
        m.state = Impl::State::terminated;
        for (auto& w : m.workers) procs.push_back(w.proc);
    }
    if (m.threads_running) {
        m.watcher_stop = true;
        m.wake_watcher();
        m.watcher_thread.join();
    }
    for (auto& p : procs) {
        try {
            p.kill();
        } catch (...) {
        }
    }
    for (auto& p : procs) {
        try {
            p.join();
        } catch (...) {
        }
    }
    if (m.threads_running) {
        m.threads_running = false;
        m.post(ResultHeader{0, ResultKind::stop, 0, 0});
        m.result_thread.join();
    }
    {
        std::lock_guard<std::mutex> g(m.mu);
        for (auto& w : m.workers) w.alive = false;
        m.take_all_locked(fs, std::make_exception_ptr(BrokenProcessPool(reason)));
    }
    Impl::fail(fs);
}

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
    Impl::fail(fs);
    if (!wait) return;
    bool broken;
    {
        std::lock_guard<std::mutex> g(m.mu);
        broken = m.broken;
    }
    if (broken) terminate("the process pool is broken");
    else join();
}

bool PoolCore::withdraw(const Job* job) {
    Impl& m = *impl_;
    std::lock_guard<std::mutex> g(m.mu);
    auto n = std::erase_if(m.backlog, [job](const Impl::Queued& q) { return q.job.get() == job; });
    return n > 0;
}

int PoolCore::processes() const noexcept { return impl_->cfg.processes; }

std::vector<int> PoolCore::worker_pids() const {
    std::lock_guard<std::mutex> g(impl_->mu);
    std::vector<int> out;
    for (auto& w : impl_->workers)
        if (w.alive) out.push_back(w.pid);
    return out;
}

bool PoolCore::broken() const {
    std::lock_guard<std::mutex> g(impl_->mu);
    return impl_->broken;
}

}  // namespace mproc::detail
