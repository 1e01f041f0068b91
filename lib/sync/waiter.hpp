// mproc::detail::WaitWord — the one wait/wake protocol under every blocking
// call in mproc that is not a lock: the queue and pipe ring (both sides),
// JoinableQueue.join, Semaphore, Event, Condition and Barrier.
//
// The word is 32 bits in shared memory:
//
//     bit 0      S, "someone may be asleep on this word"
//     bits 1..31 the state the waiters wait on (a count, a value, a
//                generation), modulo 2^31
//
// What waiters wait *for* lives in the word itself: a waiter sleeps on the
// very value it found not ready, so the kernel's futex compare tells it of
// any change it missed, and a waker's change and its wake-up can be made
// one indivisible step.
//
// Waiting (wait()): load the word; if ready(state) return; set S with a CAS
// (a CAS that fails means the word changed: start over); FUTEX_WAIT on the
// value with S set; on any return, start over.
//
// Waking (add(), set_bits()): if S is clear, change the word with a CAS
// that requires S clear — no system call, and a waiter that sets S in
// between makes the CAS fail. If S is set, the kernel applies the change and
// wakes the sleepers in one FUTEX_WAKE_OP. S is cleared only by the kernel,
// in an operation that also wakes every sleeper at that instant (FUTEX_WAKE_OP
// with ANDN, or an ADD that carries S into the state when every change is
// made under one lock: Publishers::exclusive).
//
// Invariant: a process asleep on the word sleeps on a value with S set, and
// S is cleared only together with a wake of all sleepers; so a change made
// while anyone sleeps goes through the kernel, which wakes them as it makes
// it. (change() alters the state without waking: for takers — a semaphore
// acquire, an Event.clear — whose change never makes a waiter ready.)
//
// Crash safety, by cases — a process killed at any instruction:
//  - a waker, before its FUTEX_WAKE_OP or CAS: nothing changed (its call was
//    interrupted and did not happen); after it: the change and the wake-up
//    both happened. There is no instant in between.
//  - a waiter, anywhere: it may leave S set with nobody asleep. That costs
//    the next waker one needless FUTEX_WAKE_OP, which clears S. Nothing
//    else: the word holds no turn or ticket of its; the one lock a sleeper
//    may hold (a ring side's, see ChannelCore) is an OwnerLock, which the
//    next waiter takes over when its holder dies (sync/owner_lock.hpp).
//  - a waiter woken by a wake of n < all sleepers (Semaphore.release(1),
//    Condition.notify(1)) and killed before it acts: its permit is still in
//    the word (its notification in its Condition slot), but the others
//    sleep on. This case takes the safety net: waiters that can be left so
//    (Semaphore, Condition) sleep at most kRecheckInterval at a time and
//    look again. Waiters woken by wake-all (the ring, Event, Barrier, join)
//    need no net and have none.
//  - changes the kernel cannot make in one step with the wake — a bounded
//    add (BoundedSemaphore.release: change(), then wake()), and the socket
//    transport (a Connection: add_and_claim() publishes, then the caller
//    sends its byte) — leave a waker killed in between to the same net (the
//    waiters poll at most kRecheckInterval at a time), or to the next waker
//    (S stays set).
// So the net is only ever the path after a death, never the normal one, and
// it bounds that path at kRecheckInterval.
//
// Using it for a shared-memory queue (the manager's heap queue, say):
//  - keep the queue's item count (or a change sequence) in a WaitWord's
//    state; make the change that publishes an item with add(1) after the
//    item is fully in place, under the queue's lock if there is one
//    (Publishers::exclusive then saves a system call);
//  - getters wait on that word with wait(ready = "count > what I consumed")
//    after releasing the queue's lock: never sleep holding a lock another
//    process needs to make you ready;
//  - putters waiting for room wait on a second word whose state the getters
//    advance with add(1) as they free a slot;
//  - shutdown wakes every waiter at once: give the state a "shut" bit and
//    set_bits() it on every queue word (every waiter's ready() looks at the
//    bit), so the flag and the wake are again one step; wake_all() alone
//    wakes them too, but only helps if what they re-check already changed.
//
// Thread safety: every member may be used from any thread of any process
// that maps the word. A WaitWord is 4 bytes, zero = state 0, nobody asleep.
// Internal header.
#pragma once

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>

#include "os/fault.hpp"
#include "os/os.hpp"

namespace mproc::detail {

/// The safety net's bound (see above): the longest a waiter that relies on
/// it sleeps before it looks again, and so the longest the one case a
/// death can cause stays unnoticed.
inline constexpr std::chrono::milliseconds kRecheckInterval{250};

/// The sooner of `deadline` and kRecheckInterval from now.
os::Deadline recheck_deadline(const os::Deadline& deadline) noexcept;

inline constexpr int kWakeAll = INT_MAX;

/// Who changes the word. exclusive: every add() and wake_all() runs under
/// one lock (only takers' change() run beside it), which lets a wake-all
/// add clear S in the same operation.
enum class Publishers { concurrent, exclusive };

/// Whether a waiter may be left asleep by a woken waiter's death (see above).
enum class Net { none, recheck };

class WaitWord {
public:
    static constexpr std::uint32_t kStateMask = 0x7fffffffu;

    std::uint32_t state() const noexcept { return word_.load(std::memory_order_acquire) >> 1; }
    bool has_sleepers() const noexcept { return (word_.load(std::memory_order_relaxed) & 1u) != 0; }

    /// Adds `delta` to the state (mod 2^31) and wakes up to n sleepers, in
    /// one step as far as any death is concerned.
    void add(std::uint32_t delta, int n = kWakeAll, Publishers who = Publishers::concurrent) noexcept;
    /// ORs `bits` into the state and wakes every sleeper (Event.set).
    void set_bits(std::uint32_t bits) noexcept;
    /// Replaces the state if it is `expected` (else loads it into expected
    /// and returns false); keeps S and wakes nobody. Only for changes that
    /// make no waiter ready (see above).
    bool change(std::uint32_t& expected, std::uint32_t desired) noexcept;
    /// Wakes every sleeper now and clears S; the state is unchanged.
    void wake_all() noexcept;
    /// Wakes up to n sleepers after a change() that made some ready — for a
    /// change the kernel cannot make (a bounded add). Not one step: a waker
    /// killed between change() and wake() leaves its sleepers to the next
    /// waker or the safety net, so only Net::recheck waiters may rely on it.
    void wake(int n) noexcept;

    /// For a wake transport other than the futex: adds `delta`, clears S,
    /// and returns whether S was set (then the caller wakes its sleeper).
    bool add_and_claim(std::uint32_t delta) noexcept;
    /// For a sleeper that sleeps elsewhere (a socket): set S, clear S.
    void mark_sleeping() noexcept { word_.fetch_or(1u, std::memory_order_acq_rel); }
    void clear_sleeping() noexcept { word_.fetch_and(~1u, std::memory_order_acq_rel); }

    /// Waits until ready(state) returns true (true) or the deadline passes
    /// (false). ready may act (take a permit): it runs only on states read
    /// from the word. `sleep(word, value, until)` sleeps while the word
    /// holds `value`, until `until` at the latest (false when it passed);
    /// the default is a futex wait. With Net::recheck no sleep is longer
    /// than kRecheckInterval.
    template <class Ready>
    bool wait(Ready&& ready, const os::Deadline& deadline, Net net = Net::none,
              const char* woken_point = "sync.woken") {
        return wait(ready, deadline, net, woken_point, [](const std::atomic<std::uint32_t>& w, std::uint32_t v,
                                                          const os::Deadline& until) {
            return os::futex_wait(&w, v, until);
        });
    }
    template <class Ready, class Sleep>
    bool wait(Ready&& ready, const os::Deadline& deadline, Net net, const char* woken_point, Sleep&& sleep);

private:
    void kernel_add(std::uint32_t delta, int n, Publishers who) noexcept;
    std::atomic<std::uint32_t> word_{0};
};
static_assert(sizeof(WaitWord) == 4);

template <class Ready, class Sleep>
bool WaitWord::wait(Ready&& ready, const os::Deadline& deadline, Net net, const char* woken_point,
                    Sleep&& sleep) {
    for (;;) {
        std::uint32_t w = word_.load(std::memory_order_acquire);
        if (ready(w >> 1)) return true;
        if (deadline.expired()) return false;
        if ((w & 1u) == 0) {
            // Flag first; a change made before the flag makes this CAS fail.
            if (!word_.compare_exchange_weak(w, w | 1u, std::memory_order_acq_rel)) continue;
            w |= 1u;
        }
        const bool in_time = net == Net::recheck ? sleep(word_, w, recheck_deadline(deadline))
                                                 : sleep(word_, w, deadline);
        os::fault_point(woken_point);
        if (!in_time && deadline.expired()) return ready(state());
    }
}

}  // namespace mproc::detail
