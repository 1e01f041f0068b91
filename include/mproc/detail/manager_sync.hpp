// A Manager's synchronization objects: LockProxy, RLockProxy,
// SemaphoreProxy, EventProxy, ConditionProxy and BarrierProxy, with the
// semantics of mproc's own (<mproc/sync.hpp>) and Python's, living in the
// manager so that connected managers share them too. Included by
// <mproc/manager.hpp>.
//
// Owners: a Lock or RLock is owned by the thread that acquired it. On a
// connected manager, by that thread's connection: when the thread or its
// process goes away (kill -9 included), or the connection drops, the lock
// is released for it, and the next acquire() succeeds with owner_died()
// true. Locally, the kernel does the same for a dead holder.
//
// Blocking: acquire(), wait() and friends block until they succeed, the
// timeout passes (false; Barrier: BrokenBarrierError) or the manager shuts
// down (ValueError: shutdown wakes every waiter at once; a thread blocked
// on a Lock held by another wakes when the holder lets go).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

#include "mproc/detail/manager_core.hpp"
#include "mproc/detail/wait_for.hpp"

namespace mproc {

class Manager;
class ConditionProxy;

namespace detail {
/// What LockProxy and RLockProxy share (both are Lockable, TimedLockable).
class LockCore {
public:
    /// Blocks until held (true) or the timeout passes (false).
    bool acquire(Timeout timeout = std::nullopt) const {
        return invoke<mop::op::lock_acquire>(obj_, timeout);
    }
    /// ValueError if this thread does not hold it.
    void release() const { invoke<mop::op::lock_release>(obj_); }
    /// Held by some thread (Python 3.14's locked()).
    bool locked() const { return invoke<mop::op::lock_locked>(obj_); }
    /// While held: this hold took the lock over from an owner that died
    /// holding it (what it protected may be inconsistent).
    bool owner_died() const { return invoke<mop::op::lock_owner_died>(obj_); }

    void lock() const { acquire(); }
    bool try_lock() const { return acquire(Duration(0)); }
    /// release() for std::lock_guard and friends: a connection that is gone
    /// took the lock with it, so that is not an error here.
    void unlock() const {
        try {
            release();
        } catch (const EOFError&) {
        }
    }
    template <class Rep, class Period>
    bool try_lock_for(const std::chrono::duration<Rep, Period>& d) const {
        return acquire(std::chrono::duration_cast<Duration>(d));
    }
    template <class Clock, class Dur>
    bool try_lock_until(const std::chrono::time_point<Clock, Dur>& t) const {
        return try_lock_for(t - Clock::now());
    }

    void mproc_export(HandleWriter& w) const { obj_.mproc_export(w); }

protected:
    LockCore() = default;
    explicit LockCore(ManagedObject obj) : obj_(std::move(obj)) {}
    friend class mproc::Manager;
    friend class mproc::ConditionProxy;
    ManagedObject obj_;
};
}  // namespace detail

/// manager.Lock(): a non-recursive lock; acquiring it again from the
/// thread that holds it throws mproc::Error (a bounded wait returns false).
class LockProxy : public detail::LockCore {
public:
    LockProxy() = default;
    static LockProxy mproc_import(detail::HandleReader& r) {
        return LockProxy(detail::ManagedObject::import(r, kind, 0));
    }

private:
    friend class Manager;
    static constexpr detail::mop::Kind kind = detail::mop::Kind::lock;
    static constexpr std::uint64_t tag() { return 0; }
    explicit LockProxy(detail::ManagedObject obj) : LockCore(std::move(obj)) {}
};

/// manager.RLock(): re-entrant; released as many times as acquired.
class RLockProxy : public detail::LockCore {
public:
    RLockProxy() = default;
    /// True if the calling thread holds it.
    bool is_owned() const { return detail::invoke<detail::mop::op::lock_is_owned>(obj_); }
    static RLockProxy mproc_import(detail::HandleReader& r) {
        return RLockProxy(detail::ManagedObject::import(r, kind, 0));
    }

private:
    friend class Manager;
    static constexpr detail::mop::Kind kind = detail::mop::Kind::rlock;
    static constexpr std::uint64_t tag() { return 0; }
    explicit RLockProxy(detail::ManagedObject obj) : LockCore(std::move(obj)) {}
};

/// manager.Semaphore(value) and manager.BoundedSemaphore(value).
class SemaphoreProxy {
public:
    SemaphoreProxy() = default;
    bool acquire(Timeout timeout = std::nullopt) const {
        return detail::invoke<detail::mop::op::sem_acquire>(obj_, timeout);
    }
    /// Adds n; a BoundedSemaphore released past its initial value throws
    /// ValueError (and stays as it was).
    void release(unsigned n = 1) const { detail::invoke<detail::mop::op::sem_release>(obj_, std::uint64_t{n}); }
    std::size_t get_value() const { return detail::invoke<detail::mop::op::sem_value>(obj_); }
    /// acquire() would block now (Python 3.14's locked()).
    bool locked() const { return get_value() == 0; }
    void lock() const { acquire(); }
    bool try_lock() const { return acquire(Duration(0)); }
    void unlock() const { release(); }

    void mproc_export(detail::HandleWriter& w) const { obj_.mproc_export(w); }
    static SemaphoreProxy mproc_import(detail::HandleReader& r) {
        return SemaphoreProxy(detail::ManagedObject::import(r, kind, 0));
    }

private:
    friend class Manager;
    static constexpr detail::mop::Kind kind = detail::mop::Kind::semaphore;
    static constexpr std::uint64_t tag() { return 0; }
    explicit SemaphoreProxy(detail::ManagedObject obj) : obj_(std::move(obj)) {}
    detail::ManagedObject obj_;
};

/// manager.Event().
class EventProxy {
public:
    EventProxy() = default;
    void set() const { detail::invoke<detail::mop::op::event_set>(obj_); }
    void clear() const { detail::invoke<detail::mop::op::event_clear>(obj_); }
    bool is_set() const { return detail::invoke<detail::mop::op::event_is_set>(obj_); }
    /// True once the flag is set; false if the timeout passed first.
    bool wait(Timeout timeout = std::nullopt) const { return detail::invoke<detail::mop::op::event_wait>(obj_, timeout); }

    void mproc_export(detail::HandleWriter& w) const { obj_.mproc_export(w); }
    static EventProxy mproc_import(detail::HandleReader& r) {
        return EventProxy(detail::ManagedObject::import(r, kind, 0));
    }

private:
    friend class Manager;
    static constexpr detail::mop::Kind kind = detail::mop::Kind::event;
    static constexpr std::uint64_t tag() { return 0; }
    explicit EventProxy(detail::ManagedObject obj) : obj_(std::move(obj)) {}
    detail::ManagedObject obj_;
};

/// manager.Condition(lock): its lock is a LockProxy or RLockProxy of the
/// same manager (a new RLock by default). Lockable: std::unique_lock works.
class ConditionProxy {
public:
    ConditionProxy() = default;
    bool acquire(Timeout timeout = std::nullopt) const { return lock_.acquire(timeout); }
    void release() const { lock_.release(); }
    void lock() const { lock_.lock(); }
    bool try_lock() const { return lock_.try_lock(); }
    void unlock() const { lock_.unlock(); }
    /// Releases the lock, waits for notify() (true) or the timeout (false),
    /// and holds the lock again before returning. ValueError if the lock is
    /// not held by this thread.
    bool wait(Timeout timeout = std::nullopt) const { return detail::invoke<detail::mop::op::cond_wait>(obj_, timeout); }
    /// Waits until pred() (checked with the lock held); returns its last value.
    template <class Pred>
    bool wait_for(Pred pred, Timeout timeout = std::nullopt) const {
        return detail::wait_for_predicate([this](Timeout left) { wait(left); }, pred, timeout);
    }
    /// Wakes up to n of the threads waiting now (in the order they came).
    void notify(unsigned n = 1) const { detail::invoke<detail::mop::op::cond_notify>(obj_, std::uint64_t{n}); }
    void notify_all() const { detail::invoke<detail::mop::op::cond_notify_all>(obj_); }

    void mproc_export(detail::HandleWriter& w) const {
        obj_.mproc_export(w);
        lock_.mproc_export(w);
    }
    static ConditionProxy mproc_import(detail::HandleReader& r) {
        detail::ManagedObject cond = detail::ManagedObject::import(r, kind, 0);
        const detail::mop::Kind lk =
            detail::invoke<detail::mop::op::kind_of>(detail::manager_of(cond), detail::invoke<detail::mop::op::cond_lock>(cond));
        return ConditionProxy(std::move(cond), detail::ManagedObject::import(r, lk, 0));
    }

private:
    friend class Manager;
    static constexpr detail::mop::Kind kind = detail::mop::Kind::condition;
    static constexpr std::uint64_t tag() { return 0; }
    /// The condition `obj`, with its lock found through it.
    explicit ConditionProxy(detail::ManagedObject obj) : obj_(std::move(obj)) {
        const detail::mop::ObjectId lock = detail::invoke<detail::mop::op::cond_lock>(obj_);
        const detail::ManagedObject mgr = detail::manager_of(obj_);
        lock_ = detail::LockCore(detail::ManagedObject(obj_.backend_ptr(), lock,
                                                       detail::invoke<detail::mop::op::kind_of>(mgr, lock), 0));
    }
    ConditionProxy(detail::ManagedObject obj, detail::ManagedObject lock) : obj_(std::move(obj)), lock_(std::move(lock)) {}
    detail::ManagedObject obj_;
    detail::LockCore lock_;
};

/// manager.Barrier(parties, timeout): `parties` callers of wait() block
/// until all have arrived, then each returns a distinct index in
/// [0, parties). abort(), a reset() while others wait, or a wait that times
/// out breaks it (BrokenBarrierError, then and later, until reset()). A
/// caller killed inside wait() leaves the others to their timeouts.
/// (Python's `action` runs in the server there; it is not offered here.)
class BarrierProxy {
public:
    BarrierProxy() = default;
    /// This caller's index; BrokenBarrierError if broken or timed out.
    /// Without a timeout, the barrier's default (from Manager::Barrier).
    unsigned wait() const { return wait(timeout_); }
    unsigned wait(Timeout timeout) const {
        return static_cast<unsigned>(detail::invoke<detail::mop::op::barrier_wait>(obj_, timeout));
    }
    void abort() const { detail::invoke<detail::mop::op::barrier_abort>(obj_); }
    void reset() const { detail::invoke<detail::mop::op::barrier_reset>(obj_); }
    unsigned parties() const { return static_cast<unsigned>(detail::invoke<detail::mop::op::barrier_parties>(obj_)); }
    unsigned n_waiting() const {
        return static_cast<unsigned>(detail::invoke<detail::mop::op::barrier_n_waiting>(obj_));
    }
    bool broken() const { return detail::invoke<detail::mop::op::barrier_broken>(obj_); }

    void mproc_export(detail::HandleWriter& w) const {
        obj_.mproc_export(w);
        w.value(timeout_ ? static_cast<std::uint64_t>(timeout_->count() * 1e9) : UINT64_MAX);
    }
    static BarrierProxy mproc_import(detail::HandleReader& r) {
        BarrierProxy b(detail::ManagedObject::import(r, kind, 0), std::nullopt);
        const std::uint64_t ns = r.value();
        if (ns != UINT64_MAX) b.timeout_ = Duration(static_cast<double>(ns) * 1e-9);
        return b;
    }

private:
    friend class Manager;
    static constexpr detail::mop::Kind kind = detail::mop::Kind::barrier;
    static constexpr std::uint64_t tag() { return 0; }
    explicit BarrierProxy(detail::ManagedObject obj, Timeout timeout = std::nullopt)
        : obj_(std::move(obj)), timeout_(timeout) {}
    detail::ManagedObject obj_;
    Timeout timeout_;
};

}  // namespace mproc
