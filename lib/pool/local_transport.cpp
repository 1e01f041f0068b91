// LocalTransport: one task ring every worker reads (a free worker takes the
// next message: no per-worker queues to balance), one result ring, and a
// claim slot per worker in shared memory — {chunk, start time} — written by
// the worker before it consumes the task message (run_worker_loop's claim).
// A watcher thread polls the workers' sentinels (pidfds) and a wake-up
// socket; when a worker exits it reads the slot, posts the worker_died
// message to the result ring (after anything the worker sent: the ring is
// FIFO and the worker is gone) and starts a replacement if the submitter
// asks for one.
#include <atomic>
#include <csignal>
#include <cstring>
#include <mutex>
#include <thread>

#include "os/os.hpp"
#include "os/process.hpp"
#include "os/socket.hpp"
#include "pool/local_transport.hpp"
#include "pool/messages.hpp"

namespace mproc::detail {

namespace {

constexpr std::size_t kChannelCapacity = std::size_t{4} << 20;

/// Slot i is words 2i (the chunk, 0: none) and 2i+1 (os::monotonic_ns() at claim).
std::atomic_ref<std::uint64_t> slot_word(const Array<std::uint64_t>& slots, std::uint32_t i, int w) {
    return std::atomic_ref<std::uint64_t>(slots.data()[2 * i + static_cast<std::uint32_t>(w)]);
}

class LocalEndpoint final : public WorkerEndpoint {
public:
    LocalEndpoint(const PoolChannel& t, const PoolChannel& r, const Array<std::uint64_t>& s, std::uint32_t i)
        : tasks_(t), results_(r), slots_(s), index_(i) {}
    std::span<const std::byte> receive_task() override {
        res_.emplace();
        tasks_.core().begin_get(*res_, std::nullopt);
        return res_->bytes();
    }
    void claim(std::uint64_t chunk) override {
        slot_word(slots_, index_, 1).store(os::monotonic_ns(), std::memory_order_relaxed);
        slot_word(slots_, index_, 0).store(chunk, std::memory_order_seq_cst);
    }
    void release_task() override {
        res_->commit();
        res_.reset();
    }
    void send_result(std::span<const std::byte> msg) override { results_.core().put(msg, std::nullopt); }
    void unclaim() override { slot_word(slots_, index_, 0).store(0, std::memory_order_seq_cst); }

private:
    const PoolChannel& tasks_;
    const PoolChannel& results_;
    const Array<std::uint64_t>& slots_;
    std::uint32_t index_;
    std::optional<ReadReservation> res_;
};

class LocalTransport final : public WorkerTransport {
public:
    explicit LocalTransport(const PoolConfig& cfg)
        : n_(cfg.processes), maxtasks_(cfg.maxtasks), factory_(cfg.factory),
          slots_(2 * static_cast<std::size_t>(cfg.processes)) {}
    ~LocalTransport() override {
        try {
            end_all(true);
        } catch (...) {
        }
    }

    void start(TransportEvents& events) override {
        events_ = &events;
        auto [a, b] = os::socket_pair(os::SocketKind::stream);
        wake_r_ = std::move(a);
        wake_w_ = std::move(b);
        try {
            for (int i = 0; i < n_; ++i) workers_.push_back(start_worker(static_cast<std::uint32_t>(i)));
        } catch (...) {
            for (auto& w : workers_) {
                w.proc.kill();
                w.proc.join();
            }
            workers_.clear();
            throw;
        }
        watcher_ = std::thread([this] { watch_loop(); });
        watching_ = true;
    }
    int size() const noexcept override { return n_; }

    bool try_send(std::span<const std::byte> msg) override { return tasks_.core().put(msg, Duration(0)); }
    void send_stop() override {
        TaskHeader stop{};
        for (int i = 0; i < n_; ++i) tasks_.core().put(std::as_bytes(std::span(&stop, 1)), std::nullopt);
    }

    void wait_result(Timeout timeout) override { results_.core().poll(timeout); }
    bool take_result(ResultSink& sink) override {
        ReadReservation r;
        if (!results_.core().begin_get(r, Duration(0))) return false;
        if (sink.handle(r.bytes())) r.commit();
        return true;
    }
    void post_result(std::span<const std::byte> msg) override { results_.core().put(msg, std::nullopt); }

    SlotState slot_state(std::uint32_t slot) const override {
        SlotState s;
        s.chunk = slot_word(slots_, slot, 0).load(std::memory_order_seq_cst);
        s.started_ns = slot_word(slots_, slot, 1).load(std::memory_order_relaxed);
        return s;
    }
    void end_worker(std::uint32_t slot, bool kill) override {
        std::lock_guard<std::mutex> g(mu_);
        if (slot >= workers_.size() || !workers_[slot].alive) return;
        try {
            if (kill) workers_[slot].proc.kill();
            else workers_[slot].proc.terminate();
        } catch (...) {
        }
    }
    std::vector<int> worker_ids() const override {
        std::lock_guard<std::mutex> g(mu_);
        std::vector<int> out;
        for (auto& w : workers_)
            if (w.alive) out.push_back(w.pid);
        return out;
    }

    void join_workers() override {
        for (auto& p : procs()) p.join();
    }
    void end_all(bool kill) override {
        stop();
        std::vector<Process> ps = procs();
        for (auto& p : ps) {
            try {
                if (kill) p.kill();
                else p.terminate();
            } catch (...) {
            }
        }
        for (auto& p : ps) {
            try {
                p.join();
            } catch (...) {
            }
        }
        std::lock_guard<std::mutex> g(mu_);
        for (auto& w : workers_) w.alive = false;
    }
    void stop() override {
        if (!watching_) return;
        watching_ = false;
        stop_ = true;
        os::send_wake(wake_w_.get());
        watcher_.join();
    }

private:
    struct Worker {
        Process proc;
        int pid = 0;
        int sentinel = -1;
        bool alive = false;
    };

    std::vector<Process> procs() const {
        std::lock_guard<std::mutex> g(mu_);
        std::vector<Process> out;
        for (auto& w : workers_) out.push_back(w.proc);
        return out;
    }

    Worker start_worker(std::uint32_t index) {
        Worker w;
        w.proc = factory_(tasks_, results_, slots_, index, maxtasks_);
        // The threads running here are the pool's own, and a worker needs
        // none of their locks: no warning for this fork.
        QuietForkScope quiet;
        w.proc.start();
        w.pid = *w.proc.pid();
        w.sentinel = w.proc.sentinel();
        w.alive = true;
        return w;
    }

    void watch_loop() {
        std::vector<int> fds;
        std::vector<std::uint32_t> index;
        for (;;) {
            fds.assign(1, wake_r_.get());
            index.assign(1, 0);
            {
                std::lock_guard<std::mutex> g(mu_);
                for (std::uint32_t i = 0; i < workers_.size(); ++i)
                    if (workers_[i].alive) {
                        fds.push_back(workers_[i].sentinel);
                        index.push_back(i);
                    }
            }
            const std::vector<std::size_t> ready = os::poll_readable(fds, os::Deadline::never());
            if (!ready.empty() && ready.front() == 0) os::wait_and_drain(wake_r_.get(), os::Deadline::after(Duration(0)));
            if (stop_.load()) return;
            for (std::size_t k : ready)
                if (k != 0) on_exit(index[k]);
        }
    }

    void on_exit(std::uint32_t i) {
        Process old;
        {
            std::lock_guard<std::mutex> g(mu_);
            old = workers_[i].proc;
        }
        old.join();
        const int code = old.exitcode().value_or(-SIGKILL);
        const std::uint64_t chunk = slot_word(slots_, i, 0).exchange(0);
        int pid = 0;
        {
            std::lock_guard<std::mutex> g(mu_);
            workers_[i].alive = false;
            pid = workers_[i].pid;
        }
        if (chunk || code != 0) {
            ResultHeader h{chunk, ResultKind::worker_died, code, pid, i};
            post_result(std::as_bytes(std::span(&h, 1)));
        }
        if (stop_.load() || !events_->replace(i)) return;
        try {
            Worker w = start_worker(i);
            std::lock_guard<std::mutex> g(mu_);
            if (stop_.load()) {
                w.proc.kill();
                w.proc.join();
                return;
            }
            workers_[i] = std::move(w);
        } catch (...) {
            events_->replace_failed(i, std::current_exception());
        }
    }

    int n_;
    std::uint64_t maxtasks_;
    WorkerFactory factory_;
    PoolChannel tasks_{kChannelCapacity, "mproc-pool-tasks"};
    PoolChannel results_{kChannelCapacity, "mproc-pool-results"};
    Array<std::uint64_t> slots_;
    TransportEvents* events_ = nullptr;
    mutable std::mutex mu_;
    std::vector<Worker> workers_;
    os::Fd wake_r_, wake_w_;
    std::atomic<bool> stop_{false};
    std::thread watcher_;
    bool watching_ = false;
};

}  // namespace

std::shared_ptr<WorkerTransport> make_local_transport(const PoolConfig& cfg) {
    return std::make_shared<LocalTransport>(cfg);
}

void pool_worker_loop(const PoolChannel& tasks, const PoolChannel& results, const Array<std::uint64_t>& slots,
                      std::uint32_t index, std::uint64_t maxtasks, const std::function<void()>& init) {
    // terminate_workers() must end a worker: a forked one does not keep a
    // SIGTERM handler the parent installed.
    os::ignore_signal(SIGTERM, false);
    init();
    LocalEndpoint ep(tasks, results, slots, index);
    run_worker_loop(ep, maxtasks);
}

}  // namespace mproc::detail
