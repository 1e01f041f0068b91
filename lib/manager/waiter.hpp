// How manager objects block: wait until an object changes, wake every
// waiter when it does. Internal header (lib/manager/).
//
// The word is the sync layer's WaitWord (lib/sync/waiter.hpp), the same
// wait/wake protocol the channel queue's ring uses; this file only says how
// the manager uses it. An object's word counts its changes (mod 2^31).
//
// Protocol, for an object whose state is guarded by its robust mutex:
//   waiter: lock; if ready -> done; t = wait_token(obj); unlock; wait(w, t, deadline)
//   (wait_token, object.hpp: the token, then the shut flag — see there)
//   waker:  lock; change the state; wake_all(w); unlock
// A waiter reads the token under the lock, so a change made after it looked
// moves the word past the token and its wait returns at once (the kernel's
// futex compare sees it): no wake-up is lost. A waiter never sleeps holding
// the object's lock. There is no timeout slice: a waiter sleeps until a
// change, its deadline, or shutdown, which moves every object's word (one
// FUTEX_WAKE_OP each, waking all of its sleepers at once).
//
// Deaths: every wake is a wake-all (Net::none in waiter.hpp's terms), so a
// woken waiter's death strands nobody. A waker killed between its change and
// its wake_all() held the object's robust mutex; the next process to lock
// the object is told so and wakes the word (Locked, object.hpp), as does any
// later change.
#pragma once

#include <atomic>
#include <cstdint>

#include "os/os.hpp"
#include "sync/waiter.hpp"

namespace mproc::detail::mgr {

using WaitWord = detail::WaitWord;

/// The token to wait past, read under the object's lock.
inline std::uint32_t token(const WaitWord& w) noexcept { return w.state(); }

/// Blocks until the word moves past `seen` (true) or the deadline passes
/// (false). Spins briefly first. Throws WaitCancelled if the calling
/// thread's WaitContext is cancelled.
bool wait(WaitWord& w, std::uint32_t seen, const os::Deadline& deadline);

/// Thrown by wait() in a thread whose wait was cancelled.
struct WaitCancelled {};

/// Lets another thread end this thread's waits: a manager server's thread
/// waits on behalf of a client, and when that client hangs up, the server's
/// watcher cancels the wait instead of letting it take an item nobody will
/// receive. One per thread that waits for someone else.
class WaitContext {
public:
    /// Makes `ctx` (or nullptr) the calling thread's context.
    static void install(WaitContext* ctx) noexcept;
    /// From any thread: every wait of the owner throws WaitCancelled from
    /// now on (the one in progress is woken).
    void cancel() noexcept;
    bool cancelled() const noexcept { return cancelled_.load(std::memory_order_seq_cst); }

private:
    friend bool wait(WaitWord&, std::uint32_t, const os::Deadline&);
    std::atomic<bool> cancelled_{false};
    std::atomic<WaitWord*> waiting_on_{nullptr};
};

/// Moves the word and wakes everyone waiting on it, in one step (no system
/// call when nobody sleeps).
inline void wake_all(WaitWord& w) noexcept { w.add(1); }

}  // namespace mproc::detail::mgr
