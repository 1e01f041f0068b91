// mproc::detail::OwnerLock — the lock of a ring's side (Queue, Pipe, the
// pool's task and result rings): one 64-bit word in shared memory that
// names its owner, taken with one CAS and let go with one plain store
// (an exchange and a wake when someone sleeps waiting).
//
// The word:
//
//     bits 0..29   the owner's thread id (0: free)
//     bit 31       W, "someone may be asleep waiting for it"
//     bits 32..63  the low half of the owner's start time (clock ticks
//                  after boot): with the tid, a name no other thread has,
//                  even one the kernel gave the same tid later
//
// Why not the robust PI pthread mutex that Lock and the manager use: a
// queue's put and get take one lock each, and glibc's robust PI lock and
// unlock cost ~25 ns a pair on the development VM (list bookkeeping in
// thread-local storage, the kernel's robust list, out-of-line calls)
// against ~9 ns for a CAS and a store. That pair was half of a put+get.
// The price is who notices a death: not the kernel (the robust list is
// glibc's, one per thread), but the waiters, which look at the owner
// named in the word once per sleep slice.
//
// Locking: CAS 0 -> self. Failing that: spin os::lock_spin_budget_ns(),
// yield a few times, then sleep on the word's low half with W set, in
// slices of 1 ms doubling to 32 ms. After each slice that ends without a
// wake, the sleeper asks /proc (os::look_at_thread) whether the owner
// named in the word still runs: a thread that is gone, a zombie, or a
// thread with that tid but another start time held it and died. Then the
// sleeper CASes the word from exactly that dead owner to itself and is
// told owner_died, like a robust mutex's EOWNERDEAD: the caller repairs
// what the dead owner left (the ring's finish_dead_writer/reader).
// Unlocking: load the word; without W, store 0 — no locked instruction,
// which is a fifth of a queue's put+get on the development VM (70 -> 57
// ns with the exchange gone: the exchange waits for every store before
// it); with W, exchange it with 0 and wake one sleeper. A sleeper that
// took the lock after sleeping keeps W set (others may sleep still), so
// its unlock wakes the next.
//
// The one window the plain store leaves: a waiter that sets W after the
// owner's load and is asleep in the kernel before its store is not woken
// (the store clears W unseen). For that the owner must be held up between
// two adjacent instructions — preempted, or its vCPU descheduled — just as
// a waiter arrives. The waiter then sleeps out its slice, finds the word
// free and takes it; its slice is the first, 1 ms, because every waiter
// starts its slices afresh when the word names a new owner, and W is set
// only once per owner. So a missed wake costs one waiter ≤ 1 ms, never a
// hang; the lock itself stays free for everyone else meanwhile.
// tests/test_owner_lock.cpp stops an owner in the window (fault point
// lock.releasing) to check it.
//
// Crash safety, by cases — a thread killed at any instruction:
//  - an owner, anywhere between its CAS and its store or exchange (the
//    fault point lock.releasing included): the word names a dead thread;
//    the next locker sees that within one slice after its spin (a waiter
//    asleep already: within its current slice, ≤ 32 ms) and takes the
//    lock over (owner_died). Two waiters that both see the death race on
//    one CAS from the same word; one wins. The dead owner's word can never
//    come back (no thread has its name), so no ABA.
//  - an owner between its exchange and its wake: the lock is free, its
//    sleepers wake at the end of their slice and take it.
//  - a woken waiter before it retakes the lock: the same.
//  - a waiter, anywhere: it may leave W set; the owner's unlock then makes
//    one needless wake.
// So a death costs the others at most one slice (≤ 32 ms) of waiting;
// without deaths nobody polls: unlocks with sleepers wake them.
//
// Limits: every process using one lock must see thread ids in one pid
// namespace (as a PI futex requires too). Where /proc hides the owner
// (hidepid, no /proc), only kill(2) can tell whether its tid is in use:
// a dead owner whose tid was given to a new thread then looks alive.
//
// Thread safety: every member may be used from any thread of any process
// that maps the word. The lock is not recursive: a re-lock by its owner
// returns would_deadlock. 8 bytes, zero = free.
// Internal header.
#pragma once

#include <atomic>
#include <cstdint>

#include "os/fault.hpp"
#include "os/os.hpp"

namespace mproc::detail {

class OwnerLock {
public:
    /// Takes the lock, waiting until the deadline. owner_died: taken from
    /// a dead owner (what it guarded may be half-changed); timed_out.
    os::LockStatus lock(const os::Deadline& deadline) {
        std::uint64_t w = 0;
        if (__builtin_expect(word_.compare_exchange_strong(w, os::thread_identity(), std::memory_order_acquire,
                                                           std::memory_order_relaxed),
                             true)) {
            os::fault_point("lock.acquired");
            return os::LockStatus::acquired;
        }
        return contended(w, &deadline);
    }
    /// Takes the lock if it is free, or if its owner is dead; timed_out,
    /// without waiting, if a live owner holds it (a look at /proc, at most
    /// one a millisecond per thread and owner).
    os::LockStatus try_lock() {
        std::uint64_t w = 0;
        if (word_.compare_exchange_strong(w, os::thread_identity(), std::memory_order_acquire,
                                          std::memory_order_relaxed)) {
            os::fault_point("lock.acquired");
            return os::LockStatus::acquired;
        }
        return contended(w, nullptr);
    }
    /// Lets go; wakes a sleeper if any may sleep. Only by the owner.
    void unlock() noexcept {
        // Nobody flagged: a plain store (the window it leaves is above).
        if (__builtin_expect((word_.load(std::memory_order_relaxed) & kWaiters) == 0, true)) {
            os::fault_point("lock.releasing");
            word_.store(0, std::memory_order_release);
            return;
        }
        word_.exchange(0, std::memory_order_release);
        wake_one();
    }

    /// A read-only look (mproc-top): the tid named in the word (0: free)
    /// and whether someone may sleep waiting. A dead owner is still named
    /// until the next locker takes over.
    os::MutexSnapshot snapshot() const noexcept {
        const std::uint64_t w = word_.load(std::memory_order_relaxed);
        return {static_cast<pid_t>(w & kTidMask), (w & kWaiters) != 0};
    }

private:
    static constexpr std::uint64_t kTidMask = 0x3fffffffu;
    static constexpr std::uint64_t kWaiters = 0x80000000u;

    os::LockStatus contended(std::uint64_t seen, const os::Deadline* deadline);
    bool take_from_dead(std::uint64_t& seen, std::uint64_t me);
    void wake_one() noexcept;
    const std::atomic<std::uint32_t>* low() const noexcept;

    std::atomic<std::uint64_t> word_{0};
};
static_assert(sizeof(OwnerLock) == 8);

}  // namespace mproc::detail
