// How a ring side's waiters sleep and are woken: on the side's WaitWord
// (sync/waiter.hpp) by futex for a Queue, or in poll(2) on the end's own
// socket for a Connection, which also reports the peer's death. One
// interface, two implementations; the ring never asks which it has.
//
// Crash safety: the futex waker publishes and wakes in one step (see
// waiter.hpp). The socket waker publishes, then sends a byte: a waker
// killed in between leaves its sleeper to the safety net (its polls last at
// most kRecheckInterval) — or to the hang-up, if it held the last copy of
// its end.
//
// Internal header.
#pragma once

#include <atomic>
#include <cstdint>

#include "os/os.hpp"
#include "sync/waiter.hpp"

namespace mproc::detail {

class RingWaker {
public:
    /// Adds one to the side's word (its commit) and wakes its sleepers,
    /// stamping `woken_at` when there are any. Called under the side's lock.
    /// `link`: this end's socket (socket waker). EOFError (socket) if the
    /// other end is gone.
    virtual void publish(WaitWord& word, std::atomic<std::uint64_t>& woken_at, int link,
                         const char* published_point) const = 0;
    /// Sleeps while `word` holds `value` until `until` (false when it
    /// passed). EOFError (socket) if the other end hung up and the word has
    /// not changed.
    virtual bool sleep(const std::atomic<std::uint32_t>& word, std::uint32_t value, int link,
                       const os::Deadline& until) const = 0;
    virtual Net net() const noexcept = 0;

    static const RingWaker& futex() noexcept;
    static const RingWaker& socket() noexcept;

protected:
    ~RingWaker() = default;
};

/// The longest a spinning side waits before its first look (see below).
inline constexpr std::uint64_t kMaxPaceNs = 3000;
/// Below this pace one commit found at the first look is a stream too.
inline constexpr std::uint64_t kMinPaceNs = 100;

/// The two limits in pauses, measured once per process.
struct PaceLimits {
    unsigned min, max;
    static const PaceLimits& get() noexcept {
        static const PaceLimits limits{os::pauses_for_ns(kMinPaceNs), os::pauses_for_ns(kMaxPaceNs)};
        return limits;
    }
};

/// The adaptive spin, then the wait proper, for one side of one end.
///
/// The spin adapts per channel end (in this process): a spin that caught the
/// change doubles the next budget (up to spin_budget_ns()), one that ended in
/// sleep drops it to zero until a sleep shows the change came soon enough.
/// Ping-pong keeps spinning (0.4 us round trips); an idle pool worker on a
/// 2-core machine stops stealing the CPU its busy peers need (measured: a
/// pool's serial submit->result took 38 us without spinning, 68 us with a
/// fixed 20 us spin, 114 us with 200 us). When the change came is the
/// waker's stamp (`woken_at`: CLOCK_MONOTONIC is one clock for every
/// process), not when this process got a CPU again.
///
/// Its pace adapts too (`pace`: pauses before the first look). Each look at
/// the other side's commit word takes that line from the CPU writing it, so
/// a reader of a stream that looks as soon as it has drained the ring makes
/// every item cost its writer a cache miss. A spin whose first look found
/// more than one commit (or any, within kMinPaceNs) doubles the pace, up to
/// kMaxPaceNs: the items come faster than it looks, so it waits longer and
/// takes them in a batch. One that found a single commit, or needed more
/// looks, halves it, so ping-pong (one commit at a time, a round trip
/// apart) keeps looking at once, and a pace that overshot comes back.
/// Measured, 8-byte items 1 -> 1 on a 2-CPU VM: 7.5 M/s with every look at
/// once, 23 M/s paced (medians of 18 runs); the round trip stayed 0.7 us.
/// A ring made with Pace::prompt (`pace` null: the pool's task and result
/// rings, where every hop is on a task's way to its future) always looks at
/// once: paced, serial submit -> result took ~0.5 us longer a task.
template <class Ready>
bool spin_then_wait(WaitWord& word, const std::atomic<std::uint64_t>& woken_at,
                    std::atomic<std::uint32_t>& spin_ns, std::atomic<std::uint32_t>* pace,
                    const RingWaker& waker, int link,
                    const Ready& ready, const os::Deadline& deadline) {
    const std::uint32_t before = word.state();
    if (ready(before)) return true;
    const std::uint64_t max_ns = os::spin_budget_ns();
    const std::uint64_t start = os::monotonic_ns();
    const std::uint32_t budget = spin_ns.load(std::memory_order_relaxed);
    auto grow = [&] {
        spin_ns.store(static_cast<std::uint32_t>(std::min<std::uint64_t>(max_ns, budget * 2ull + 1000)),
                      std::memory_order_relaxed);
    };
    const unsigned first = pace ? pace->load(std::memory_order_relaxed) : 0;
    if (const unsigned looks = os::spin_paced([&] { return ready(word.state()); }, budget, first)) {
        grow();
        if (pace) {
            const std::uint32_t moved = (word.state() - before) & WaitWord::kStateMask;
            const PaceLimits& limit = PaceLimits::get();
            const bool faster = looks == 1 && (moved > 1 || first < limit.min);
            pace->store(faster ? std::min(limit.max, first * 2) : std::max(1u, first / 2),
                        std::memory_order_relaxed);
        }
        return true;
    }
    if (pace) pace->store(1, std::memory_order_relaxed);
    spin_ns.store(0, std::memory_order_relaxed);  // it did not pay: stop until it would
    const bool ok = word.wait(
        ready, deadline, waker.net(), "ring.woken",
        [&](const std::atomic<std::uint32_t>& w, std::uint32_t v, const os::Deadline& until) {
            return waker.sleep(w, v, link, until);
        });
    const std::uint64_t at = woken_at.load(std::memory_order_relaxed);
    if (ok && at >= start && at - start < max_ns) grow();
    return ok;
}

}  // namespace mproc::detail
