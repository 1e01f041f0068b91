// mproc synchronization: Lock, RLock, Condition, Semaphore, BoundedSemaphore,
// Event and Barrier that work across processes, with the semantics of
// Python's multiprocessing (and threading) classes of the same names.
//
// Each object is a handle to state in an anonymous shared segment: copying a
// handle gives another reference to the same lock, passing it to a forked or
// spawned child (as a Process argument) lets the child use it too. Handles
// are safe to use from any thread of any process that holds one; a single
// handle object is as thread-safe as a shared_ptr (copy it per thread rather
// than assigning one object from two threads).
//
// Blocking: acquire(), wait() and friends block, first spinning briefly and
// then sleeping on a futex in the kernel; each takes a Timeout (nullopt =
// forever, zero = don't block) and returns false on timeout (Barrier::wait
// throws BrokenBarrierError, as Python's does).
//
// Owner death: Lock and RLock are robust. When a process (or thread) dies
// holding one, by kill -9 included, the next acquire() succeeds and
// owner_died() returns true for as long as that acquirer holds it: whatever
// the lock protected may be half-updated, and the acquirer decides how to
// repair it. The lock itself is usable again. Semaphores, Events and Barriers
// have no owner; a process that dies in a Barrier's wait leaves the others to
// their timeouts.
//
// Crash safety of the wake-ups (DESIGN.md principle 4): no process killed at
// any instruction leaves another asleep while the lock, a permit, a set
// event, a notification or a completed round is there for it. A release,
// set(), notify() or completed round is one step that wakes as it is made
// (a waker killed before it did not release, set, notify or arrive; killed
// after, its waiters are awake). Lock waiters queue in the kernel (priority-
// inheritance futexes): a waiter killed after being woken leaves no one
// stranded. A Semaphore or Condition waiter woken and killed before it took
// its permit or notification leaves it to the others, who find it within
// 250 ms (their safety net: the only path of these that a death can take).
//
// Ownership: a Lock or RLock is released by the thread that acquired it
// (C++'s rule, stricter than Python's Lock); releasing one that this thread
// does not hold throws ValueError. Acquiring a Lock this thread already holds
// throws mproc::Error instead of deadlocking forever: use RLock for that.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>

#include "mproc/detail/segment.hpp"
#include "mproc/detail/wait_for.hpp"
#include "mproc/duration.hpp"
#include "mproc/errors.hpp"

namespace mproc {

namespace detail {
struct MutexState;
struct SemaphoreState;
struct EventState;
struct ConditionState;
struct BarrierState;
/// Bytes a lock's state takes inside another object's segment (Value, Array,
/// Queue place their lock at the start of their own segment).
inline constexpr std::size_t kMutexStateSize = 128;

template <class Derived>
struct TimedLockable {
    void lock() const { self().acquire(); }
    bool try_lock() const { return self().acquire(Duration(0)); }
    void unlock() const { self().release(); }
    template <class Rep, class Period>
    bool try_lock_for(const std::chrono::duration<Rep, Period>& d) const {
        return self().acquire(std::chrono::duration_cast<Duration>(d));
    }
    template <class Clock, class Dur>
    bool try_lock_until(const std::chrono::time_point<Clock, Dur>& t) const {
        return try_lock_for(t - Clock::now());
    }

private:
    const Derived& self() const { return static_cast<const Derived&>(*this); }
};

/// The robust process-shared mutex under Lock and RLock.
class MutexHandle {
public:
    bool acquire(Timeout timeout) const;
    void release() const;
    bool owner_died() const noexcept;
    /// True if some thread of some process holds it now.
    bool locked() const noexcept;
    /// True if the calling thread holds it (tracked for both kinds).
    bool held_by_me() const noexcept;
    bool recursive() const noexcept;
    /// Releases every level this thread holds; returns how many.
    std::uint32_t release_all() const;
    void reacquire(std::uint32_t levels) const;

    void mproc_export(HandleWriter& w) const;
    static MutexHandle mproc_import(HandleReader& r);

    /// A new mutex in its own segment, or placed at `at` inside `seg`
    /// (kMutexStateSize bytes, zeroed) when `at` is given.
    MutexHandle(bool recursive, SegmentPtr seg = nullptr, std::byte* at = nullptr);
    /// The mutex already placed at `at` inside `seg`.
    static MutexHandle attach(SegmentPtr seg, std::byte* at);

private:
    MutexHandle() = default;
    SegmentPtr seg_;
    MutexState* st_ = nullptr;
};
}  // namespace detail

/// multiprocessing.Lock: a non-recursive, robust, process-shared lock.
class Lock : public detail::TimedLockable<Lock> {
public:
    Lock() : m_(false) {}
    /// Blocks until the lock is held (true) or the timeout passes (false).
    bool acquire(Timeout timeout = std::nullopt) const { return m_.acquire(timeout); }
    /// ValueError if this thread does not hold the lock.
    void release() const { m_.release(); }
    /// While held: true if this hold took the lock over from an owner that
    /// died holding it (what it protected may be inconsistent).
    bool owner_died() const noexcept { return m_.owner_died(); }
    /// True if the lock is held now, by any thread of any process (Python
    /// 3.14's locked()); a snapshot. An owner that died holding it does not
    /// count: the next acquire() takes it at once.
    bool locked() const noexcept { return m_.locked(); }

    void mproc_export(detail::HandleWriter& w) const { m_.mproc_export(w); }
    static Lock mproc_import(detail::HandleReader& r);
    /// A new Lock placed inside another object's segment, and a handle to
    /// one placed there before.
    Lock(detail::SegmentPtr seg, std::byte* at) : m_(false, std::move(seg), at) {}
    static Lock attach(detail::SegmentPtr seg, std::byte* at) {
        return Lock(detail::MutexHandle::attach(std::move(seg), at));
    }

private:
    friend class Condition;
    explicit Lock(detail::MutexHandle m) : m_(std::move(m)) {}
    detail::MutexHandle m_;
};

/// multiprocessing.RLock: re-entrant; the thread that holds it may acquire
/// it again and must release it as many times.
class RLock : public detail::TimedLockable<RLock> {
public:
    RLock() : m_(true) {}
    bool acquire(Timeout timeout = std::nullopt) const { return m_.acquire(timeout); }
    void release() const { m_.release(); }
    bool owner_died() const noexcept { return m_.owner_died(); }
    /// True if it is held now, by any thread (this one included).
    bool locked() const noexcept { return m_.locked(); }
    /// True if the calling thread holds it.
    bool is_owned() const noexcept { return m_.held_by_me(); }

    void mproc_export(detail::HandleWriter& w) const { m_.mproc_export(w); }
    static RLock mproc_import(detail::HandleReader& r);
    /// A new RLock placed inside another object's segment, and a handle to
    /// one placed there before.
    RLock(detail::SegmentPtr seg, std::byte* at) : m_(true, std::move(seg), at) {}
    static RLock attach(detail::SegmentPtr seg, std::byte* at) {
        return RLock(detail::MutexHandle::attach(std::move(seg), at));
    }

private:
    friend class Condition;
    explicit RLock(detail::MutexHandle m) : m_(std::move(m)) {}
    detail::MutexHandle m_;
};

/// multiprocessing.Condition: wait for a notification while atomically
/// releasing the associated lock (an RLock unless one is given). notify(n)
/// wakes up to n of the threads waiting when it is called, longest-waiting
/// first (up to 32 waiters are tracked one by one; beyond that, a notify
/// may wake more of them). Like std::condition_variable a wait may return
/// early without a notify; use wait_for with a predicate where that matters.
class Condition : public detail::TimedLockable<Condition> {
public:
    Condition();
    explicit Condition(Lock lock);
    explicit Condition(RLock lock);

    bool acquire(Timeout timeout = std::nullopt) const { return m_.acquire(timeout); }
    void release() const { m_.release(); }

    /// The lock must be held by this thread (ValueError otherwise). Releases
    /// it, waits for notify() or the timeout, re-acquires it. False on
    /// timeout.
    bool wait(Timeout timeout = std::nullopt) const;
    template <class L>
    bool wait(std::unique_lock<L>& guard, Timeout timeout = std::nullopt) const {
        check_guard(guard.owns_lock());
        return wait(timeout);
    }
    /// Waits until pred() is true or the timeout passes; returns pred().
    template <class Pred>
    bool wait_for(Pred pred, Timeout timeout = std::nullopt) const;
    template <class L, class Pred>
    bool wait_for(std::unique_lock<L>& guard, Pred pred, Timeout timeout = std::nullopt) const {
        check_guard(guard.owns_lock());
        return wait_for(std::move(pred), timeout);
    }
    /// Wakes up to n waiters; the lock must be held (ValueError otherwise).
    void notify(int n = 1) const;
    void notify_all() const;

    void mproc_export(detail::HandleWriter& w) const;
    static Condition mproc_import(detail::HandleReader& r);

private:
    Condition(detail::MutexHandle m, detail::SegmentPtr seg, detail::ConditionState* st)
        : m_(std::move(m)), seg_(std::move(seg)), st_(st) {}
    void init_state();
    static void check_guard(bool owns);
    detail::MutexHandle m_;
    detail::SegmentPtr seg_;
    detail::ConditionState* st_ = nullptr;
};

/// multiprocessing.Semaphore: a counter; acquire() takes one (waiting while
/// it is zero), release() gives one back. The value is at most 2^31 - 1.
class Semaphore {
public:
    explicit Semaphore(unsigned value = 1) : Semaphore(value, 0) {}
    bool acquire(Timeout timeout = std::nullopt) const;
    bool try_acquire() const { return acquire(Duration(0)); }
    void release(unsigned n = 1) const;
    unsigned get_value() const noexcept;
    /// True if acquire() would block now (the value is 0): Python 3.14.
    bool locked() const noexcept;

    void mproc_export(detail::HandleWriter& w) const;
    static Semaphore mproc_import(detail::HandleReader& r);

protected:
    /// bound 0 = unbounded.
    Semaphore(unsigned value, unsigned bound);
    Semaphore(detail::SegmentPtr seg, detail::SemaphoreState* st)
        : seg_(std::move(seg)), st_(st) {}
    detail::SegmentPtr seg_;
    detail::SemaphoreState* st_ = nullptr;
};

/// multiprocessing.BoundedSemaphore: release() past the initial value throws
/// ValueError and changes nothing.
class BoundedSemaphore : public Semaphore {
public:
    explicit BoundedSemaphore(unsigned value = 1) : Semaphore(value, value) {}
    static BoundedSemaphore mproc_import(detail::HandleReader& r);

private:
    using Semaphore::Semaphore;
};

/// multiprocessing.Event: a flag that waiters block on until it is set.
class Event {
public:
    Event();
    void set() const;
    void clear() const;
    bool is_set() const noexcept;
    /// True once the flag is set; false if the timeout passed first.
    bool wait(Timeout timeout = std::nullopt) const;

    void mproc_export(detail::HandleWriter& w) const;
    static Event mproc_import(detail::HandleReader& r);

private:
    Event(detail::SegmentPtr seg, detail::EventState* st) : seg_(std::move(seg)), st_(st) {}
    detail::SegmentPtr seg_;
    detail::EventState* st_ = nullptr;
};

/// multiprocessing.Barrier: `parties` callers of wait() block until all
/// have arrived, then all return, each with a distinct index in
/// [0, parties). The barrier is then ready for the next round. abort(), a
/// reset() while others wait, or a wait that times out breaks it: waiters
/// (then and later) get BrokenBarrierError until reset().
class Barrier {
public:
    /// `action`, if given, is run by the one caller (in its own process) that
    /// completes a round, before the others are released. `timeout` is the
    /// default for wait(), and travels with the barrier to any child. The
    /// action does not travel to spawned or forkserver children (a
    /// std::function cannot be sent by reference): it runs when the round is
    /// completed by the creator or a forked child; give spawned parties'
    /// rounds an action by having the creator take part last, or run the
    /// action after wait() in the party whose index is 0.
    explicit Barrier(unsigned parties, std::function<void()> action = {},
                     Timeout timeout = std::nullopt);
    /// Returns this caller's index; BrokenBarrierError if the barrier is or
    /// becomes broken, or the timeout passes (which also breaks it).
    unsigned wait(Timeout timeout = std::nullopt) const;
    void abort() const;
    void reset() const;
    unsigned parties() const noexcept;
    unsigned n_waiting() const noexcept;
    bool broken() const noexcept;

    void mproc_export(detail::HandleWriter& w) const;
    static Barrier mproc_import(detail::HandleReader& r);

private:
    Barrier(detail::SegmentPtr seg, detail::BarrierState* st) : seg_(std::move(seg)), st_(st) {}
    detail::SegmentPtr seg_;
    detail::BarrierState* st_ = nullptr;
    std::function<void()> action_;
    Timeout default_timeout_;
};

template <class Pred>
bool Condition::wait_for(Pred pred, Timeout timeout) const {
    return detail::wait_for_predicate([this](Timeout left) { wait(left); }, pred, timeout);
}

}  // namespace mproc
