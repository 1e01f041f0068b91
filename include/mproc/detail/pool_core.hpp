// mproc::detail::PoolCore — the type-erased engine under Pool and
// ProcessPoolExecutor, and ResultState, the shared state of AsyncResult and
// Future. Not a public API; see pool.hpp and futures.hpp.
//
// Parent side: submitted chunks wait in a backlog; at most a few per worker
// are in the task channel at once (enough that a worker finishing a chunk
// finds the next one without a wake-up, few enough that cancel() and
// shutdown(cancel_futures) can still withdraw the rest). A result thread
// reads the result channel, hands each chunk's bytes to its Job (which
// decodes them and runs callbacks, in the parent) and tops the task channel
// up. A watcher thread polls the workers' sentinels; when one exits it reads
// which chunk the worker had taken (each worker records that in a shared
// slot before it consumes the message) and fails that chunk with
// BrokenProcessPool naming the signal, then starts a replacement (Pool) or
// breaks the pool (ProcessPoolExecutor).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <variant>
#include <vector>

#include "mproc/detail/channel.hpp"
#include "mproc/detail/pool_task.hpp"
#include "mproc/duration.hpp"
#include "mproc/errors.hpp"
#include "mproc/process.hpp"
#include "mproc/shared_memory.hpp"

namespace mproc::detail {

/// A raw-bytes channel handle (no per-item serialization header).
class PoolChannel {
public:
    PoolChannel() = default;
    explicit PoolChannel(std::size_t capacity)
        : core_(std::make_shared<ChannelCore>(capacity, 0, ChannelCore::Wait::futex)) {}
    ChannelCore& core() const noexcept { return *core_; }
    void mproc_export(HandleWriter& w) const { core_->mproc_export(w); }
    static PoolChannel mproc_import(HandleReader& r) {
        PoolChannel c;
        c.core_ = std::make_shared<ChannelCore>(ChannelCore::mproc_import(r, nullptr));
        return c;
    }

private:
    std::shared_ptr<ChannelCore> core_;
};

/// The worker's loop (lib/pool/worker.cpp). `init` runs first.
void pool_worker_loop(const PoolChannel& tasks, const PoolChannel& results,
                      const Array<std::uint64_t>& slots, std::uint32_t index,
                      std::uint64_t maxtasks, const std::function<void()>& init);

/// A worker process's target: the initializer's function and arguments
/// travel as ordinary Process arguments (so handles among them reach
/// spawned workers).
template <class Init, class... P>
void pool_worker_entry(PoolChannel tasks, PoolChannel results, Array<std::uint64_t> slots,
                       std::uint32_t index, std::uint64_t maxtasks, Init init, P... params) {
    pool_worker_loop(tasks, results, slots, index, maxtasks, [&] {
        if constexpr (std::is_pointer_v<Init>) {
            if (init) init(std::move(params)...);
        } else {
            init(std::move(params)...);
        }
    });
}

/// Makes (does not start) worker process number `index`.
using WorkerFactory = std::function<Process(const PoolChannel& tasks, const PoolChannel& results,
                                            const Array<std::uint64_t>& slots, std::uint32_t index,
                                            std::uint64_t maxtasks)>;

/// A submitted task or map: receives its chunks' outcomes on the result
/// thread.
class Job {
public:
    virtual ~Job() = default;
    /// `bytes`: `count` outcomes of items first..first+count-1.
    virtual void on_chunk(std::uint64_t first, std::uint32_t count, std::span<const std::byte> bytes) = 0;
    /// Every item of the chunk failed with `e` (worker died, pool torn down).
    virtual void on_failure(std::uint64_t first, std::uint32_t count, std::exception_ptr e) = 0;
    /// The chunk went to the workers; false if it was cancelled meanwhile
    /// (it is then dropped).
    virtual bool on_dispatch(std::uint64_t /*first*/) { return true; }
};

struct Chunk {
    std::shared_ptr<Job> job;
    std::uint64_t first = 0;
    std::uint32_t count = 0;
    std::vector<std::byte> items;
};

/// Encodes a task's entry and function pointer (task_ref<F, Item, Spread>).
using RefMaker = std::vector<std::byte> (*)(AnyFunction fn);

struct PoolConfig {
    int processes = 1;
    std::uint64_t maxtasks = 0;
    WorkerFactory factory;
    /// ProcessPoolExecutor: a worker's abnormal exit breaks the pool.
    bool break_on_death = false;
};

struct ResultPump;  // see below

class PoolCore {
public:
    explicit PoolCore(PoolConfig cfg);
    ~PoolCore();  // terminate()
    PoolCore(const PoolCore&) = delete;
    PoolCore& operator=(const PoolCore&) = delete;

    /// Queues chunks that run `entry` with function `fn`; make_ref(fn)
    /// encodes both (once per pool). ValueError once closed;
    /// BrokenProcessPool once broken.
    void submit(TaskEntry entry, AnyFunction fn, RefMaker make_ref, std::vector<Chunk> chunks);
    /// No more submissions; workers exit once the work is done.
    void close();
    /// After close(): waits for the work and the workers.
    void join();
    /// Kills the workers now; unfinished work fails with `reason`.
    void terminate(const char* reason = "the pool was terminated before this task finished");
    /// Executor's shutdown: close, optionally withdraw queued chunks
    /// (their jobs get CancelledError through on_failure), optionally join.
    void shutdown(bool wait, bool cancel_queued);
    /// Withdraws a job's chunks that have not gone to a worker yet.
    bool withdraw(const Job* job);

    int processes() const noexcept;
    /// Pids of the live workers.
    std::vector<int> worker_pids() const;
    bool broken() const;
    /// For ResultState::set_pump.
    std::weak_ptr<ResultPump> pump() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// How many items per chunk: Python's rule when `chunksize` is 0
/// (ceil(n / (4 * processes))), at least 1.
std::size_t default_chunksize(std::size_t n, int processes, std::size_t chunksize);

// ---- results ----------------------------------------------------------------

/// Lets a thread that waits for a result take results off the pool's
/// result channel itself, instead of waiting for the result thread to do it
/// and then to wake it: one wake-up fewer per round trip. Results are
/// handled one at a time (by the result thread or one waiter).
struct ResultPump;

/// Spins (pausing) until `done` or a wake-up's worth of time passes (the
/// channels' budget, os::spin_budget_ns()), handling results that arrive
/// meanwhile if `pump` is given; returns `done`'s last value. A result
/// usually lands within microseconds of being waited for, and sleeping on a
/// condition variable costs a 25-45 us wake-up on a small VM.
bool spin_for_result(const std::atomic<bool>& done, ResultPump* pump) noexcept;

/// Shared state of an AsyncResult / Future.
template <class R>
class ResultState {
public:
    using Value = std::conditional_t<std::is_void_v<R>, std::monostate, R>;
    enum class Phase { pending, running, finished, cancelled };

    /// The pool whose results this state waits for (see ResultPump).
    void set_pump(std::weak_ptr<ResultPump> pump) { pump_ = std::move(pump); }

    bool set_running() {
        std::lock_guard<std::mutex> g(mu_);
        if (phase_ != Phase::pending) return phase_ == Phase::running;
        phase_ = Phase::running;
        return true;
    }
    void set_value(Value v) { finish([&] { value_.emplace(std::move(v)); }, Phase::finished); }
    void set_exception(std::exception_ptr e) { finish([&] { error_ = std::move(e); }, Phase::finished); }
    /// Python's Future.cancel: only while pending.
    bool cancel() {
        {
            std::lock_guard<std::mutex> g(mu_);
            if (phase_ == Phase::cancelled) return true;
            if (phase_ != Phase::pending) return false;
        }
        finish([&] { error_ = std::make_exception_ptr(CancelledError("the future was cancelled")); },
               Phase::cancelled);
        return true;
    }

    bool wait(Timeout timeout) const {
        if (done_.load(std::memory_order_acquire)) return true;
        if (!timeout || timeout->count() > 0) {
            const std::shared_ptr<ResultPump> pump = pump_.lock();
            if (spin_for_result(done_, pump.get())) return true;
        }
        std::unique_lock<std::mutex> g(mu_);
        auto ready = [&] { return phase_ == Phase::finished || phase_ == Phase::cancelled; };
        if (!timeout) {
            cv_.wait(g, ready);
            return true;
        }
        return cv_.wait_for(g, *timeout, ready);
    }
    Phase phase() const {
        std::lock_guard<std::mutex> g(mu_);
        return phase_;
    }
    bool ready() const {
        auto p = phase();
        return p == Phase::finished || p == Phase::cancelled;
    }
    /// After wait(): the error or nullptr.
    std::exception_ptr error() const {
        std::lock_guard<std::mutex> g(mu_);
        return error_;
    }
    /// After wait() with no error.
    Value& value() {
        std::lock_guard<std::mutex> g(mu_);
        return *value_;
    }
    /// Runs fn() once finished: now if it already is (in this thread),
    /// otherwise in the thread that finishes it.
    void add_callback(std::function<void()> fn) {
        {
            std::lock_guard<std::mutex> g(mu_);
            if (phase_ != Phase::finished && phase_ != Phase::cancelled) {
                callbacks_.push_back(std::move(fn));
                return;
            }
        }
        run_callback(fn);
    }
private:
    template <class Set>
    void finish(Set&& set, Phase p) {
        std::vector<std::function<void()>> cbs;
        {
            std::lock_guard<std::mutex> g(mu_);
            if (phase_ == Phase::finished || phase_ == Phase::cancelled) return;
            set();
            phase_ = p;
            cbs.swap(callbacks_);
            done_.store(true, std::memory_order_release);
        }
        cv_.notify_all();
        for (auto& cb : cbs) run_callback(cb);
    }
    static void run_callback(const std::function<void()>& fn) noexcept {
        try {
            fn();
        } catch (...) {
            // Python logs and drops an exception raised by a callback.
        }
    }

    mutable std::mutex mu_;
    mutable std::condition_variable cv_;
    std::atomic<bool> done_{false};  // finished or cancelled, for wait()'s spin
    std::weak_ptr<ResultPump> pump_;
    Phase phase_ = Phase::pending;
    std::optional<Value> value_;
    std::exception_ptr error_;
    std::vector<std::function<void()>> callbacks_;
};

}  // namespace mproc::detail
