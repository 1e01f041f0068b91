// The manager's waits on the sync layer's WaitWord. See waiter.hpp.
#include "manager/waiter.hpp"

namespace mproc::detail::mgr {

namespace {
thread_local WaitContext* t_context = nullptr;

bool wait_moved(WaitWord& w, std::uint32_t seen, const os::Deadline& deadline, const WaitContext* ctx) {
    auto moved = [&](std::uint32_t state) { return state != seen || (ctx && ctx->cancelled()); };
    // Replies and items usually follow within microseconds: spin a
    // wake-up's worth of time before sleeping.
    if (os::spin_until([&] { return moved(w.state()); }, os::spin_budget_ns())) return true;
    return w.wait(moved, deadline, Net::none, "manager.woken");
}
}  // namespace

void WaitContext::install(WaitContext* ctx) noexcept { t_context = ctx; }

// The canceller sets the flag, then moves the word the owner waits on; the
// owner publishes the word, then checks the flag (both seq_cst): either the
// owner sees the flag, or the canceller sees the word and moves it, which
// wakes the owner (its futex compare fails or its sleep is woken).
void WaitContext::cancel() noexcept {
    cancelled_.store(true, std::memory_order_seq_cst);
    if (WaitWord* w = waiting_on_.load(std::memory_order_seq_cst)) w->add(1);
}

bool wait(WaitWord& w, std::uint32_t seen, const os::Deadline& deadline) {
    WaitContext* ctx = t_context;
    if (!ctx) return wait_moved(w, seen, deadline, nullptr);
    ctx->waiting_on_.store(&w, std::memory_order_seq_cst);
    struct Clear {
        WaitContext* c;
        ~Clear() { c->waiting_on_.store(nullptr, std::memory_order_relaxed); }
    } clear{ctx};
    if (ctx->cancelled()) throw WaitCancelled{};
    const bool ok = wait_moved(w, seen, deadline, ctx);
    if (ctx->cancelled()) throw WaitCancelled{};
    return ok;
}

}  // namespace mproc::detail::mgr
