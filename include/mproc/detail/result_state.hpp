// mproc::detail::ResultState — the shared state of AsyncResult and Future,
// finished by the pool's result thread (or a waiting caller pumping
// results). Not a public API; see pool.hpp and futures.hpp.
#pragma once

#include <atomic>
#include <condition_variable>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <variant>
#include <vector>

#include "mproc/duration.hpp"
#include "mproc/errors.hpp"

namespace mproc::detail {

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

class Job;

/// Fails `job`'s chunks with `e` now, ending the workers running them
/// (PoolCore::interrupt), if the pool still lives.
bool interrupt_job(const std::weak_ptr<ResultPump>& pump, const Job* job, std::exception_ptr e);

/// Shared state of an AsyncResult / Future.
template <class R>
class ResultState {
public:
    using Value = std::conditional_t<std::is_void_v<R>, std::monostate, R>;
    enum class Phase { pending, running, finished, cancelled };

    /// The pool whose results this state waits for (see ResultPump).
    void set_pump(std::weak_ptr<ResultPump> pump) { pump_ = std::move(pump); }
    /// The job that finishes this state (for interrupt()).
    void set_job(const Job* job) noexcept { job_ = job; }
    /// Future::cancel(interrupt=true) of a running task: fails it with
    /// CancelledError and ends its worker. False if it is not running.
    bool interrupt() {
        if (phase() != Phase::running || job_ == nullptr) return false;
        interrupt_job(pump_, job_, std::make_exception_ptr(CancelledError("the future was cancelled")));
        return phase() == Phase::cancelled;
    }

    bool set_running() {
        std::lock_guard<std::mutex> g(mu_);
        if (phase_ != Phase::pending) return phase_ == Phase::running;
        phase_ = Phase::running;
        return true;
    }
    void set_value(Value v) { finish([&] { value_.emplace(std::move(v)); }, Phase::finished); }
    void set_exception(std::exception_ptr e) { finish([&] { error_ = std::move(e); }, Phase::finished); }
    /// Python's Future.cancel: only while pending (`running` too: the task
    /// is being interrupted).
    bool cancel(bool running = false) {
        {
            std::lock_guard<std::mutex> g(mu_);
            if (phase_ == Phase::cancelled) return true;
            if (phase_ != Phase::pending && !(running && phase_ == Phase::running)) return false;
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
        auto ready = [&] { return published_; };
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
    /// Finished, and (see callbacks_first) its callbacks have run.
    bool ready() const {
        std::lock_guard<std::mutex> g(mu_);
        return published_;
    }
    /// Python's AsyncResult runs its callback before wait()/get() return
    /// (its docs' examples rely on that); a Future wakes its waiters first
    /// and runs callbacks after, as concurrent.futures does. AsyncResult
    /// asks for the former before any callback is added.
    void callbacks_first() {
        std::lock_guard<std::mutex> g(mu_);
        callbacks_first_ = true;
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
        bool first;
        {
            std::lock_guard<std::mutex> g(mu_);
            if (phase_ == Phase::finished || phase_ == Phase::cancelled) return;
            set();
            phase_ = p;
            cbs.swap(callbacks_);
            first = callbacks_first_;
            if (!first) publish();
        }
        if (first) {
            for (auto& cb : cbs) run_callback(cb);
            {
                std::lock_guard<std::mutex> g(mu_);
                publish();
            }
            cv_.notify_all();
            return;
        }
        cv_.notify_all();
        for (auto& cb : cbs) run_callback(cb);
    }
    /// Under mu_: wait() and ready() may now return.
    void publish() {
        published_ = true;
        done_.store(true, std::memory_order_release);
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
    const Job* job_ = nullptr;
    Phase phase_ = Phase::pending;
    bool published_ = false;
    bool callbacks_first_ = false;
    std::optional<Value> value_;
    std::exception_ptr error_;
    std::vector<std::function<void()>> callbacks_;
};

}  // namespace mproc::detail
