// Manager Locks, RLocks and Conditions.
//
// A Lock or RLock object holds mproc's own robust mutex (<mproc/sync.hpp>,
// placed in the object), so a holder that dies, by kill -9 included, is
// noticed by the kernel: the next acquirer gets the lock and
// lock_owner_died() says so. Owners are threads. On a served manager the
// thread serving a client's connection acquires on the client's behalf:
// when the client disconnects or is killed, that thread ends while holding
// the lock, and the kernel does the same for it. `holder` mirrors the
// owner (for locked()); it is written only by the holder, under the mutex.
//
// A Condition keeps the tickets of its waiters, in arrival order, in one
// array ([count][(ticket, tid) ...]) replaced by one store: notify(n)
// removes the first n live tickets and wakes everyone; a waiter whose
// ticket is gone was notified. A waiter's thread that died (its tid gone)
// is skipped, so it cannot swallow a notification.
#include <string>

#include "manager/ops_impl.hpp"
#include "mproc/errors.hpp"
#include "os/os.hpp"

namespace mproc::detail::mgr {

namespace {

MutexHandle mutex_of(const Target& t) {
    return MutexHandle::attach(t.seg, t.state<LockState>().mutex);
}

std::uint64_t& holder_of(const Target& t) { return t.state<LockState>().holder; }

/// Acquires `m` (a Lock object's), keeping the holder mirror right.
bool acquire(const Target& lock, const MutexHandle& m, Timeout timeout) {
    if (!m.acquire(timeout)) return false;
    store(holder_of(lock), static_cast<std::uint64_t>(os::tid()));
    if (lock.heap.shut_down()) {
        m.release();
        store(holder_of(lock), 0);
        throw ValueError("mproc::Manager: this Lock's manager has been shut down");
    }
    return true;
}

void release(const Target& lock, const MutexHandle& m) {
    if (!m.held_by_me()) {
        m.release();  // throws the Lock's own ValueError
        return;
    }
    std::uint64_t& holder = holder_of(lock);
    const std::uint64_t was = load(holder);
    store(holder, 0);
    m.release();
    if (m.held_by_me()) store(holder, was);  // an RLock still held at a lower level
}

}  // namespace

bool impl::lock_acquire(const Target& t, Timeout timeout) {
    if (t.heap.shut_down()) throw ValueError("mproc::Manager: this Lock's manager has been shut down");
    return acquire(t, mutex_of(t), timeout);
}

void impl::lock_release(const Target& t) { release(t, mutex_of(t)); }

bool impl::lock_locked(const Target& t) {
    const std::uint64_t h = load(holder_of(t));
    return h != 0 && os::process_exists(static_cast<pid_t>(h));
}

bool impl::lock_owner_died(const Target& t) { return mutex_of(t).owner_died(); }

bool impl::lock_is_owned(const Target& t) { return mutex_of(t).held_by_me(); }

// ---- Condition -----------------------------------------------------------------------

namespace {

struct Tickets {
    std::uint64_t* words = nullptr;  // [0] = count, then (ticket, tid) pairs
    std::uint64_t cap = 0;
    std::uint64_t size() const noexcept { return words ? load(words[0]) : 0; }
    std::uint64_t ticket(std::uint64_t i) const noexcept { return load(words[1 + 2 * i]); }
    std::uint64_t tid(std::uint64_t i) const noexcept { return load(words[2 + 2 * i]); }
};

Tickets tickets_of(const Target& t) noexcept {
    const std::uint64_t off = load(t.state<ConditionState>().waiters);
    if (off == 0) return {};
    return {t.heap.at<std::uint64_t>(off), (t.heap.payload_capacity(off) / sizeof(std::uint64_t) - 1) / 2};
}

/// Switches to a new ticket array holding the pairs keep(i) selects, plus
/// (ticket, tid) if ticket != 0.
template <class Keep>
void rewrite_tickets(const Target& t, Keep keep, std::uint64_t ticket = 0, std::uint64_t tid = 0) {
    const Tickets old = tickets_of(t);
    const std::uint64_t n = old.size();
    const std::uint64_t off = t.heap.alloc((1 + 2 * (n + 1)) * sizeof(std::uint64_t));
    auto* w = t.heap.at<std::uint64_t>(off);
    std::uint64_t k = 0;
    for (std::uint64_t i = 0; i < n; ++i) {
        if (!keep(i)) continue;
        w[1 + 2 * k] = old.ticket(i);
        w[2 + 2 * k] = old.tid(i);
        ++k;
    }
    if (ticket != 0) {
        w[1 + 2 * k] = ticket;
        w[2 + 2 * k] = tid;
        ++k;
    }
    w[0] = k;
    ConditionState& s = t.state<ConditionState>();
    const std::uint64_t old_off = load(s.waiters);
    os::fault_point("cond.tickets.unpublished");
    store(s.waiters, off);  // one store: the new set of waiters
    t.heap.free(old_off);
}

bool has_ticket(const Target& t, std::uint64_t ticket) noexcept {
    const Tickets a = tickets_of(t);
    for (std::uint64_t i = 0, n = a.size(); i < n; ++i)
        if (a.ticket(i) == ticket) return true;
    return false;
}

/// Removes `ticket`; false if it was gone already (notified).
bool withdraw(const Target& t, std::uint64_t ticket) {
    if (!has_ticket(t, ticket)) return false;
    const Tickets a = tickets_of(t);
    rewrite_tickets(t, [&](std::uint64_t i) { return a.ticket(i) != ticket; });
    return true;
}

void notify(const Target& t, std::uint64_t n) {
    Locked g(t);
    const Tickets a = tickets_of(t);
    if (a.size() == 0) return;
    std::uint64_t woken = 0;
    rewrite_tickets(t, [&](std::uint64_t i) {
        if (!os::process_exists(static_cast<pid_t>(a.tid(i)))) return false;  // died waiting
        if (woken < n) {
            ++woken;
            return false;
        }
        return true;
    });
    wake_all(t.obj->change);
}

}  // namespace

ObjectId impl::cond_lock(const Target& t) { return ObjectId{load(t.state<ConditionState>().lock)}; }

bool impl::cond_wait(const Target& t, Timeout timeout) {
    const ObjectId lock_id{load(t.state<ConditionState>().lock)};
    const Target lock{t.heap, object_of(t.heap, lock_id, mop::kLocks), t.seg};
    const MutexHandle m = mutex_of(lock);
    if (!m.held_by_me()) throw ValueError("mproc Condition wait(): the condition's lock must be held to wait");
    const os::Deadline deadline = os::Deadline::after(timeout);
    std::uint64_t ticket;
    std::uint32_t seen;
    {
        Locked g(t);
        ConditionState& s = t.state<ConditionState>();
        ticket = load(s.next_ticket) + 1;
        store(s.next_ticket, ticket);
        rewrite_tickets(t, [](std::uint64_t) { return true; }, ticket, static_cast<std::uint64_t>(os::tid()));
        seen = wait_token(t);
    }
    store(holder_of(lock), 0);
    const std::uint32_t levels = m.release_all();
    bool notified = false;
    try {
        for (;;) {
            const bool moved = wait(t.obj->change, seen, deadline);
            Locked g(t);
            if (!has_ticket(t, ticket)) {
                notified = true;
                break;
            }
            if (!moved) {
                notified = !withdraw(t, ticket);
                break;
            }
            seen = wait_token(t);
        }
    } catch (const WaitCancelled&) {
        // The client this thread waits for is gone: leave, without the lock.
        try {
            Locked g(t);
            withdraw(t, ticket);
        } catch (...) {
        }
        throw;
    } catch (...) {
        // Shut down: the caller still expects to hold the lock.
        m.reacquire(levels);
        store(holder_of(lock), static_cast<std::uint64_t>(os::tid()));
        throw;
    }
    m.reacquire(levels);
    store(holder_of(lock), static_cast<std::uint64_t>(os::tid()));
    return notified;
}

void impl::cond_notify(const Target& t, std::uint64_t n) { notify(t, n); }

void impl::cond_notify_all(const Target& t) { notify(t, UINT64_MAX); }

}  // namespace mproc::detail::mgr
