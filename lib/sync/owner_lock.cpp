// The ring sides' lock. See owner_lock.hpp.
#include "sync/owner_lock.hpp"

#include <algorithm>
#include <bit>

#include "os/procfs.hpp"

namespace mproc::detail {

namespace {

constexpr std::uint64_t kFirstSliceNs = 1'000'000;
constexpr std::uint64_t kMaxSliceNs = 32'000'000;

// What /proc says of the thread named in a held word.
bool owner_looks_dead(std::uint64_t word, std::uint64_t tid_mask) noexcept {
    const os::ThreadLook look = os::look_at_thread(static_cast<pid_t>(word & tid_mask));
    switch (look.is) {
        case os::ThreadLook::Is::gone: return true;
        case os::ThreadLook::Is::unknown: return false;  // only kill(2) to go by: in use
        case os::ThreadLook::Is::alive: break;
    }
    return static_cast<std::uint32_t>(look.start_ticks) != static_cast<std::uint32_t>(word >> 32);
}

constexpr std::uint64_t kRelookNs = 1'000'000;

// The last owner this thread found alive, and when: a try_lock() polled in
// a loop against a live owner reads /proc at most once a millisecond.
__attribute__((tls_model("initial-exec"))) thread_local std::uint64_t t_alive_word = 0;
__attribute__((tls_model("initial-exec"))) thread_local std::uint64_t t_alive_at = 0;

// Whether the owner a held word names (its W bit cleared) is dead (see
// owner_lock.hpp).
bool owner_dead(std::uint64_t owner, std::uint64_t tid_mask) noexcept {
    const std::uint64_t now = os::monotonic_ns();
    if (owner == t_alive_word && now - t_alive_at < kRelookNs) return false;
    if (owner_looks_dead(owner, tid_mask)) return true;
    t_alive_word = owner;
    t_alive_at = now;
    return false;
}

// The sooner of the caller's deadline and the end of this slice.
os::Deadline slice_end(const os::Deadline& deadline, std::uint64_t slice_ns) noexcept {
    const os::Deadline slice = os::Deadline::after(Duration(static_cast<double>(slice_ns) * 1e-9));
    if (deadline.is_never() || *deadline.remaining() > *slice.remaining()) return slice;
    return deadline;
}

}  // namespace

const std::atomic<std::uint32_t>* OwnerLock::low() const noexcept {
    // The futex is the half that holds the tid and W.
    const auto* p = reinterpret_cast<const std::atomic<std::uint32_t>*>(&word_);
    return std::endian::native == std::endian::little ? p : p + 1;
}

void OwnerLock::wake_one() noexcept { os::futex_wake(low(), 1); }

// From a word `seen` whose owner died, to `desired`; false if the owner
// lives, or if the word changed (then `seen` is what it holds now).
bool OwnerLock::take_from_dead(std::uint64_t& seen, std::uint64_t desired) {
    if (seen == 0 || !owner_dead(seen & ~kWaiters, kTidMask)) return false;
    std::uint64_t w = seen;
    if (!word_.compare_exchange_strong(w, desired, std::memory_order_acquire, std::memory_order_relaxed)) {
        seen = w;
        return false;
    }
    os::fault_point("lock.acquired");
    return true;
}

os::LockStatus OwnerLock::contended(std::uint64_t seen, const os::Deadline* deadline) {
    const std::uint64_t me = os::thread_identity();
    if ((seen & ~kWaiters) == me) return os::LockStatus::would_deadlock;
    // Takes the lock if it is free; else leaves what it holds in `seen`.
    auto take = [&](std::uint64_t desired) {
        std::uint64_t w = word_.load(std::memory_order_relaxed);
        if (w == 0 && word_.compare_exchange_strong(w, desired, std::memory_order_acquire,
                                                    std::memory_order_relaxed)) {
            os::fault_point("lock.acquired");
            return true;
        }
        seen = w;
        return false;
    };
    // try_lock(): no waiting, only a look at the owner.
    if (!deadline) {
        if (take_from_dead(seen, me | (seen & kWaiters))) return os::LockStatus::owner_died;
        return take(me) ? os::LockStatus::acquired : os::LockStatus::timed_out;
    }
    // A live owner lets go within the spin (a ring side is held for a few
    // dozen instructions); one that has not is preempted, sleeping on the
    // other side (a writer waiting for room), or dead.
    if (os::spin_until([&] { return take(me); }, os::lock_spin_budget_ns())) return os::LockStatus::acquired;
    // A preempted owner finishes sooner if we yield it the CPU.
    for (int i = 0; i < os::kLockYields && !deadline->expired(); ++i) {
        os::yield_cpu();
        if (take(me)) return os::LockStatus::acquired;
    }
    // Sleep, flagged in W, in slices; look at the owner after each. Each
    // new owner starts the slices afresh: W is set once per owner, so a
    // wake that owner's plain-store unlock missed (owner_lock.hpp) costs
    // at most the first slice.
    std::uint64_t slice = kFirstSliceNs;
    std::uint64_t slept_on = 0;
    for (;;) {
        std::uint64_t w = word_.load(std::memory_order_relaxed);
        if (w == 0) {
            // Keep W: others may sleep still, and our unlock must wake them.
            if (take(me | kWaiters)) return os::LockStatus::acquired;
            continue;
        }
        if ((w & kWaiters) == 0) {
            if (!word_.compare_exchange_weak(w, w | kWaiters, std::memory_order_relaxed)) continue;
            w |= kWaiters;
        }
        if ((w & ~kWaiters) != slept_on) {
            slept_on = w & ~kWaiters;
            slice = kFirstSliceNs;
        }
        if (deadline->expired()) {
            seen = w;
            return take_from_dead(seen, me | kWaiters) ? os::LockStatus::owner_died : os::LockStatus::timed_out;
        }
        if (os::futex_wait(low(), static_cast<std::uint32_t>(w), slice_end(*deadline, slice))) continue;
        // A slice without a wake: is the owner still there?
        seen = w;
        if (word_.load(std::memory_order_relaxed) == w && take_from_dead(seen, me | kWaiters))
            return os::LockStatus::owner_died;
        slice = std::min(2 * slice, kMaxSliceNs);
    }
}

}  // namespace mproc::detail
