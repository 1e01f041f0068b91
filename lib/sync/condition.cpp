// Condition. See include/mproc/sync.hpp.
//
// Each waiter takes a slot of its own in the condition's state, under the
// lock: its process, its arrival ticket, and a WaitWord whose state turns 1
// when it is notified. notify(n), under the lock, picks the n oldest
// waiting slots and sets each one's word with add(1): notified and woken
// in one step, so a notifier killed anywhere notified a waiter fully or not
// at all. Only waiters that were waiting when notify ran can be picked, so
// a notification never goes to a later waiter (which could find its
// predicate false and sleep on while the one meant to wake sleeps too).
//
// Deaths:
//  - a waiter killed while it waits leaves its slot taken by a dead
//    process: notify checks that a slot's process is alive before it picks
//    it, and frees the slot of one that is not;
//  - a waiter woken and killed before it took the lock back leaves a
//    notified slot of a dead process: every waiter looks for such orphans
//    when its safety net wakes it (at most kRecheckInterval apart) and one
//    takes the notification over — the only path here a death can cause;
//  - a notifier or waiter killed holding the lock: the lock is robust, and
//    what it guards is the slots (single stores) and a ticket counter.
// Waiters beyond the slots share one word that every notify moves (they
// may wake without being picked: a Condition may return early).
#include "mproc/sync.hpp"

#include <climits>

#include "os/fault.hpp"
#include "os/os.hpp"
#include "sync/state.hpp"
#include "sync/waiter.hpp"

namespace mproc {
namespace detail {

struct ConditionSlot {
    std::atomic<std::int32_t> pid{0};      // the waiter's process; 0: free
    std::atomic<std::uint32_t> ticket{0};  // arrival order (wraps)
    WaitWord word;                         // state 1: notified
};

inline constexpr int kConditionSlots = 32;

struct ConditionState {
    std::uint32_t magic = kConditionMagic;
    std::uint32_t next_ticket = 0;       // under the lock
    std::uint32_t overflow_waiting = 0;  // under the lock
    WaitWord overflow;                   // moved by every notify, for waiters without a slot
    ConditionSlot slots[kConditionSlots];
};

}  // namespace detail

namespace {

using detail::ConditionSlot;
using detail::ConditionState;

// Under the lock.
ConditionSlot* claim_slot(ConditionState* st) {
    for (auto& s : st->slots) {
        if (s.pid.load(std::memory_order_relaxed) != 0) continue;
        std::uint32_t v = s.word.state();
        s.word.change(v, 0);
        s.ticket.store(st->next_ticket++, std::memory_order_relaxed);
        s.pid.store(os::pid(), std::memory_order_release);
        return &s;
    }
    return nullptr;
}

bool notified(const ConditionSlot& s) { return s.word.state() != 0; }

// A notified slot whose process is gone: a notification nobody will take.
ConditionSlot* find_orphan(ConditionState* st, const ConditionSlot* mine) {
    for (auto& s : st->slots) {
        if (&s == mine || !notified(s)) continue;
        const std::int32_t pid = s.pid.load(std::memory_order_acquire);
        if (pid != 0 && !os::process_exists(pid)) return &s;
    }
    return nullptr;
}

}  // namespace

Condition::Condition() : m_(true) { init_state(); }
Condition::Condition(Lock lock) : m_(std::move(lock.m_)) { init_state(); }
Condition::Condition(RLock lock) : m_(std::move(lock.m_)) { init_state(); }

void Condition::init_state() {
    std::tie(seg_, st_) = detail::new_state<detail::ConditionState>("mproc-condition");
}

void Condition::check_guard(bool owns) {
    if (!owns) throw ValueError("Condition: the guard passed to wait() does not hold the lock");
}

bool Condition::wait(Timeout timeout) const {
    if (!m_.held_by_me()) throw ValueError("Condition::wait(): the lock must be held to wait");
    const os::Deadline deadline = os::Deadline::after(timeout);
    ConditionSlot* slot = claim_slot(st_);
    std::uint32_t seen = 0;
    if (!slot) {
        ++st_->overflow_waiting;
        seen = st_->overflow.state();
    }
    const std::uint32_t levels = m_.release_all();
    bool orphan_seen = false;
    try {
        if (slot) {
            auto ready = [&](std::uint32_t s) {
                if (s != 0) return true;
                orphan_seen = find_orphan(st_, slot) != nullptr;
                return orphan_seen;
            };
            if (!os::spin_until([&] { return notified(*slot); }, os::spin_budget_ns()))
                slot->word.wait(ready, deadline, detail::Net::recheck, "sync.woken");
        } else {
            st_->overflow.wait([&](std::uint32_t s) { return s != seen; }, deadline, detail::Net::recheck,
                               "sync.woken");
        }
    } catch (...) {
        m_.reacquire(levels);
        if (slot) slot->pid.store(0, std::memory_order_release);
        throw;
    }
    m_.reacquire(levels);
    bool result;
    if (slot) {
        // Under the lock again. Notified (even just now, past the timeout)
        // is notified; else take over a dead waiter's notification.
        result = notified(*slot);
        if (!result && orphan_seen) {
            if (ConditionSlot* o = find_orphan(st_, slot)) {
                o->pid.store(0, std::memory_order_release);
                result = true;
            }
        }
        slot->pid.store(0, std::memory_order_release);
    } else {
        if (st_->overflow_waiting > 0) --st_->overflow_waiting;
        result = st_->overflow.state() != seen;
    }
    return result;
}

void Condition::notify(int n) const {
    if (!m_.held_by_me()) throw ValueError("Condition::notify(): the lock must be held to notify");
    int granted = 0;
    while (granted < n) {
        // The oldest waiting slot.
        ConditionSlot* best = nullptr;
        for (auto& s : st_->slots) {
            if (s.pid.load(std::memory_order_acquire) == 0 || notified(s)) continue;
            if (!best || static_cast<std::int32_t>(s.ticket.load(std::memory_order_relaxed) -
                                                   best->ticket.load(std::memory_order_relaxed)) < 0)
                best = &s;
        }
        if (!best) break;
        if (!os::process_exists(best->pid.load(std::memory_order_relaxed))) {
            best->pid.store(0, std::memory_order_release);  // died waiting
            continue;
        }
        os::fault_point("sync.publish");
        best->word.add(1, detail::kWakeAll, detail::Publishers::exclusive);  // notified and woken
        os::fault_point("sync.published");
        ++granted;
    }
    if (granted < n && st_->overflow_waiting > 0)
        st_->overflow.add(1, detail::kWakeAll, detail::Publishers::exclusive);
}

void Condition::notify_all() const { notify(INT_MAX); }

void Condition::mproc_export(detail::HandleWriter& w) const {
    m_.mproc_export(w);
    w.segment(seg_, st_);
}

Condition Condition::mproc_import(detail::HandleReader& r) {
    auto m = detail::MutexHandle::mproc_import(r);
    auto [seg, p] = r.segment(sizeof(detail::ConditionState));
    auto* st = detail::checked<detail::ConditionState>(p, detail::kConditionMagic, "Condition");
    return Condition(std::move(m), std::move(seg), st);
}

}  // namespace mproc
