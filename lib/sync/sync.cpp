// Cross-process synchronization primitives. See include/mproc/sync.hpp.
//
// Lock/RLock are robust priority-inheritance pthread mutexes (os layer):
// the kernel tells the next locker when an owner died and keeps the queue
// of waiters itself, so no waiter's death strands the others. Semaphore
// and Event wait on a WaitWord of their own (sync/waiter.hpp), whose state
// is the very thing they wait for — the semaphore's value, the event's
// flag — so a release or a set is one step for every death: made and
// woken, or not made. Condition is in condition.cpp, Barrier in barrier.cpp.
#include "mproc/sync.hpp"

#include <algorithm>
#include <climits>
#include <new>

#include "os/fault.hpp"
#include "os/os.hpp"
#include "sync/state.hpp"
#include "sync/waiter.hpp"

namespace mproc {
namespace detail {

struct MutexState {
    pthread_mutex_t m;
    std::uint32_t magic;
    std::uint32_t recursive;
    // Written only by the holder, under m; read by any thread asking
    // whether it holds the lock.
    std::atomic<pid_t> owner_tid{0};
    std::atomic<std::uint32_t> count{0};  // recursion depth
    std::uint32_t recovered = 0;  // this hold took over from a dead owner
};
static_assert(sizeof(MutexState) <= kMutexStateSize, "MutexState outgrew kMutexStateSize");

struct SemaphoreState {
    WaitWord value;  // the value itself
    std::uint32_t bound = 0;
    std::uint32_t magic = kSemaphoreMagic;
};

struct EventState {
    WaitWord flag;  // state 1: set
    std::uint32_t magic = kEventMagic;
};

namespace {
// Takes one from a WaitWord whose state counts permits; false if none.
bool take_one(WaitWord& w, std::uint32_t seen) noexcept {
    while (seen > 0)
        if (w.change(seen, seen - 1)) return true;
    return false;
}
}  // namespace

// ---- MutexHandle ----------------------------------------------------------

MutexHandle::MutexHandle(bool recursive, SegmentPtr seg, std::byte* at) {
    if (!seg) {
        seg = Segment::anonymous(kMutexStateSize, recursive ? "mproc-rlock" : "mproc-lock");
        at = seg->data();
    }
    auto* st = new (at) MutexState();
    os::robust_mutex_init(&st->m, recursive);
    st->recursive = recursive ? 1 : 0;
    st->magic = kMutexMagic;
    seg_ = std::move(seg);
    st_ = st;
}

bool MutexHandle::acquire(Timeout timeout) const {
    os::LockStatus s = os::robust_mutex_trylock(&st_->m);
    if (s == os::LockStatus::timed_out && !(timeout && timeout->count() <= 0))
        s = os::robust_mutex_lock(&st_->m, os::Deadline::after(timeout));
    const pid_t me = os::tid();
    switch (s) {
        case os::LockStatus::timed_out:
            return false;
        case os::LockStatus::would_deadlock:
            // Only this thread could release it, so a bounded wait would
            // time out: say so now. An unbounded one would never return.
            if (timeout) return false;
            throw Error(
                "Lock::acquire(): this thread already holds this Lock, so waiting would "
                "deadlock forever; use mproc::RLock for re-entrant locking");
        case os::LockStatus::owner_died:
            st_->owner_tid.store(me, std::memory_order_relaxed);
            st_->count.store(1, std::memory_order_relaxed);
            st_->recovered = 1;
            return true;
        case os::LockStatus::acquired:
            break;
    }
    if (st_->count.load(std::memory_order_relaxed) > 0 &&
        st_->owner_tid.load(std::memory_order_relaxed) == me) {
        // Re-entry of an RLock. Only the holder writes count: no RMW.
        st_->count.store(st_->count.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    } else {
        st_->owner_tid.store(me, std::memory_order_relaxed);
        st_->count.store(1, std::memory_order_relaxed);
        st_->recovered = 0;
    }
    return true;
}

// Thread ids are unique across the processes of one pid namespace, so the
// owner's tid alone says whether this thread holds the lock.
bool MutexHandle::held_by_me() const noexcept {
    return st_->count.load(std::memory_order_relaxed) > 0 &&
           st_->owner_tid.load(std::memory_order_relaxed) == os::tid();
}

void MutexHandle::release() const {
    if (!held_by_me())
        throw ValueError(st_->recursive ? "RLock::release(): this thread does not hold the RLock"
                                        : "Lock::release(): this thread does not hold the Lock");
    const std::uint32_t left = st_->count.load(std::memory_order_relaxed) - 1;
    st_->count.store(left, std::memory_order_relaxed);
    if (left == 0) {
        st_->owner_tid.store(0, std::memory_order_relaxed);
        st_->recovered = 0;
    }
    if (!os::robust_mutex_unlock(&st_->m))
        throw ValueError("Lock::release(): the lock is not held by this thread");
}

bool MutexHandle::owner_died() const noexcept { return held_by_me() && st_->recovered != 0; }
bool MutexHandle::locked() const noexcept { return os::robust_mutex_held(&st_->m); }
bool MutexHandle::recursive() const noexcept { return st_->recursive != 0; }

std::uint32_t MutexHandle::release_all() const {
    std::uint32_t levels = st_->count.load(std::memory_order_relaxed);
    for (std::uint32_t i = 0; i < levels; ++i) release();
    return levels;
}

void MutexHandle::reacquire(std::uint32_t levels) const {
    for (std::uint32_t i = 0; i < levels; ++i) acquire(std::nullopt);
}

void MutexHandle::mproc_export(HandleWriter& w) const { w.segment(seg_, st_); }

MutexHandle MutexHandle::attach(SegmentPtr seg, std::byte* at) {
    MutexHandle h;
    h.st_ = checked<MutexState>(at, kMutexMagic, "Lock or RLock");
    h.seg_ = std::move(seg);
    return h;
}

MutexHandle MutexHandle::mproc_import(HandleReader& r) {
    auto [seg, p] = r.segment(kMutexStateSize);
    return attach(std::move(seg), p);
}

}  // namespace detail

Lock Lock::mproc_import(detail::HandleReader& r) {
    auto m = detail::MutexHandle::mproc_import(r);
    if (m.recursive()) throw SerializationError("handle is an RLock, not a Lock");
    return Lock(std::move(m));
}

RLock RLock::mproc_import(detail::HandleReader& r) {
    auto m = detail::MutexHandle::mproc_import(r);
    if (!m.recursive()) throw SerializationError("handle is a Lock, not an RLock");
    return RLock(std::move(m));
}

// ---- Semaphore ------------------------------------------------------------

Semaphore::Semaphore(unsigned value, unsigned bound) {
    if (value > detail::WaitWord::kStateMask)
        throw ValueError("Semaphore: the value must be at most 2^31 - 1");
    std::tie(seg_, st_) = detail::new_state<detail::SemaphoreState>("mproc-semaphore");
    std::uint32_t zero = 0;
    st_->value.change(zero, value);
    st_->bound = bound;
}

bool Semaphore::acquire(Timeout timeout) const {
    auto take = [&](std::uint32_t v) { return detail::take_one(st_->value, v); };
    if (take(st_->value.state())) return true;
    if (timeout && timeout->count() <= 0) return false;
    if (os::spin_until([&] { return take(st_->value.state()); }, os::spin_budget_ns())) return true;
    // A waiter woken by release(1) and killed before taking the permit
    // leaves it in the word for the others: the net finds it.
    return st_->value.wait(take, os::Deadline::after(timeout), detail::Net::recheck, "sync.woken");
}

void Semaphore::release(unsigned n) const {
    if (n == 0) return;
    if (st_->bound == 0) {
        if (n > detail::WaitWord::kStateMask - st_->value.state())
            throw ValueError("Semaphore::release(): the value would exceed 2^31 - 1");
        os::fault_point("sync.publish");
        st_->value.add(n, static_cast<int>(std::min<unsigned>(n, INT_MAX)));
        os::fault_point("sync.published");
        return;
    }
    // The kernel cannot check a bound: change with a check, then wake. A
    // releaser killed in between leaves S set for the next waker, and its
    // waiters to the safety net.
    std::uint32_t v = st_->value.state();
    do {
        if (v + n > st_->bound)
            throw ValueError("BoundedSemaphore::release(): released more times than acquired");
    } while (!st_->value.change(v, v + n));
    os::fault_point("sync.published");
    st_->value.wake(static_cast<int>(std::min<unsigned>(n, INT_MAX)));
}

unsigned Semaphore::get_value() const noexcept { return st_->value.state(); }
bool Semaphore::locked() const noexcept { return st_->value.state() == 0; }

void Semaphore::mproc_export(detail::HandleWriter& w) const { w.segment(seg_, st_); }

Semaphore Semaphore::mproc_import(detail::HandleReader& r) {
    auto [seg, p] = r.segment(sizeof(detail::SemaphoreState));
    return Semaphore(std::move(seg),
                     detail::checked<detail::SemaphoreState>(p, detail::kSemaphoreMagic, "Semaphore"));
}

BoundedSemaphore BoundedSemaphore::mproc_import(detail::HandleReader& r) {
    auto [seg, p] = r.segment(sizeof(detail::SemaphoreState));
    auto* st = detail::checked<detail::SemaphoreState>(p, detail::kSemaphoreMagic, "Semaphore");
    if (st->bound == 0) throw SerializationError("handle is a Semaphore, not a BoundedSemaphore");
    return BoundedSemaphore(std::move(seg), st);
}

// ---- Event ----------------------------------------------------------------

Event::Event() { std::tie(seg_, st_) = detail::new_state<detail::EventState>("mproc-event"); }

void Event::set() const {
    os::fault_point("sync.publish");
    st_->flag.set_bits(1);
    os::fault_point("sync.published");
}

void Event::clear() const {
    std::uint32_t set = 1;
    st_->flag.change(set, 0);  // wakes nobody: nobody waits for "clear"
}

bool Event::is_set() const noexcept { return st_->flag.state() != 0; }

bool Event::wait(Timeout timeout) const {
    auto is = [](std::uint32_t f) { return f != 0; };
    if (is(st_->flag.state())) return true;
    if (timeout && timeout->count() <= 0) return false;
    if (os::spin_until([&] { return is(st_->flag.state()); }, os::spin_budget_ns())) return true;
    return st_->flag.wait(is, os::Deadline::after(timeout), detail::Net::none, "sync.woken");
}

void Event::mproc_export(detail::HandleWriter& w) const { w.segment(seg_, st_); }

Event Event::mproc_import(detail::HandleReader& r) {
    auto [seg, p] = r.segment(sizeof(detail::EventState));
    return Event(std::move(seg), detail::checked<detail::EventState>(p, detail::kEventMagic, "Event"));
}

}  // namespace mproc
