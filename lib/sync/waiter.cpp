// The wait/wake protocol. See waiter.hpp for the design and its argument.
#include "sync/waiter.hpp"

#include <algorithm>

namespace mproc::detail {

namespace {
// The kernel's FUTEX_WAKE_OP operand is 12 bits, signed: the state moves in
// steps of 2 (bit 0 is S), so one operation adds at most 1023.
constexpr std::uint32_t kMaxKernelStep = 1023;

// The sleeper's view must include everything the waker wrote before the
// kernel changed the word. The system call orders it for the hardware; this
// release on the word says so to ThreadSanitizer, which cannot see the
// kernel's write (it changes nothing).
void release_before_kernel(std::atomic<std::uint32_t>& w) noexcept { w.fetch_add(0, std::memory_order_release); }
}  // namespace

os::Deadline recheck_deadline(const os::Deadline& deadline) noexcept {
    const os::Deadline net = os::Deadline::after(std::chrono::duration_cast<Duration>(kRecheckInterval));
    if (deadline.is_never() || *deadline.remaining() > *net.remaining()) return net;
    return deadline;
}

void WaitWord::add(std::uint32_t delta, int n, Publishers who) noexcept {
    delta &= kStateMask;
    std::uint32_t w = word_.load(std::memory_order_relaxed);
    while ((w & 1u) == 0) {
        // Nobody asleep: a plain CAS, which fails if a waiter flags itself.
        if (word_.compare_exchange_weak(w, w + (delta << 1), std::memory_order_acq_rel)) return;
    }
    kernel_add(delta, n, who);
}

void WaitWord::kernel_add(std::uint32_t delta, int n, Publishers who) noexcept {
    release_before_kernel(word_);
    do {
        const std::uint32_t step = std::min(delta, kMaxKernelStep);
        delta -= step;
        const bool last = delta == 0;
        int woken;
        if (who == Publishers::exclusive && n == kWakeAll && last) {
            // S is set and only this lock holder clears it: adding 2*step-1
            // moves the state by step and carries S away, waking everyone.
            woken = os::futex_wake_op(&word_, kWakeAll, os::FutexOp::add, static_cast<int>(2 * step - 1));
            if (woken >= 0) return;
        } else {
            woken = os::futex_wake_op(&word_, n, os::FutexOp::add, static_cast<int>(2 * step));
        }
        if (woken < 0) {
            // No FUTEX_WAKE_OP: change, then wake. A death in between is
            // caught by whoever changes the word next (S stays set).
            word_.fetch_add(step << 1, std::memory_order_acq_rel);
            os::futex_wake(&word_, n);
            woken = n == kWakeAll ? 0 : n;
        }
        // Everyone asleep is awake (fewer than n were): clear S, waking any
        // waiter that flagged itself since, so none sleeps unflagged.
        if (last && woken < n) os::futex_wake_op(&word_, kWakeAll, os::FutexOp::andn, 1);
    } while (delta != 0);
}

void WaitWord::set_bits(std::uint32_t bits) noexcept {
    bits &= kStateMask;
    std::uint32_t w = word_.load(std::memory_order_relaxed);
    for (;;) {
        if (((w >> 1) & bits) == bits) return;  // already set: nothing to publish
        if (w & 1u) break;
        if (word_.compare_exchange_weak(w, w | (bits << 1), std::memory_order_acq_rel)) return;
    }
    release_before_kernel(word_);
    const std::uint32_t shifted = bits << 1;
    if (shifted < 2048) {
        if (os::futex_wake_op(&word_, kWakeAll, os::FutexOp::bit_or, static_cast<int>(shifted)) < 0) {
            word_.fetch_or(shifted, std::memory_order_acq_rel);
            os::futex_wake(&word_, kWakeAll);
        }
    } else {
        // Bits the operand cannot carry: set, then wake (S stays set, so a
        // death in between leaves the next waker to wake them).
        word_.fetch_or(shifted, std::memory_order_acq_rel);
        os::futex_wake(&word_, kWakeAll);
    }
    os::futex_wake_op(&word_, kWakeAll, os::FutexOp::andn, 1);
}

bool WaitWord::change(std::uint32_t& expected, std::uint32_t desired) noexcept {
    std::uint32_t w = word_.load(std::memory_order_relaxed);
    for (;;) {
        if ((w >> 1) != (expected & kStateMask)) {
            expected = w >> 1;
            return false;
        }
        if (word_.compare_exchange_weak(w, ((desired & kStateMask) << 1) | (w & 1u), std::memory_order_acq_rel))
            return true;
    }
}

void WaitWord::wake_all() noexcept {
    if ((word_.load(std::memory_order_acquire) & 1u) == 0) return;  // nobody asleep
    release_before_kernel(word_);
    if (os::futex_wake_op(&word_, kWakeAll, os::FutexOp::andn, 1) < 0) {
        word_.fetch_and(~1u, std::memory_order_acq_rel);
        os::futex_wake(&word_, kWakeAll);
    }
}

void WaitWord::wake(int n) noexcept {
    if ((word_.load(std::memory_order_acquire) & 1u) == 0) return;  // nobody asleep
    if (os::futex_wake(&word_, n) < n) wake_all();
}

bool WaitWord::add_and_claim(std::uint32_t delta) noexcept {
    delta &= kStateMask;
    std::uint32_t w = word_.load(std::memory_order_relaxed);
    while (!word_.compare_exchange_weak(w, (w + (delta << 1)) & ~1u, std::memory_order_acq_rel)) {
    }
    return (w & 1u) != 0;
}

}  // namespace mproc::detail
