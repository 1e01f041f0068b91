// mproc::detail::wait_for_predicate — Condition::wait_for's loop, shared
// by mproc::Condition and the manager's ConditionProxy: wait until a
// predicate holds or the timeout passes.
#pragma once

#include <chrono>

#include "mproc/duration.hpp"

namespace mproc::detail {

/// Calls wait(time left) until pred() holds or `timeout` has passed (nullopt:
/// forever); returns pred()'s last value. The caller holds the lock pred
/// reads under; wait(left) releases and retakes it.
template <class Wait, class Pred>
bool wait_for_predicate(Wait&& wait, Pred&& pred, Timeout timeout) {
    using Clock = std::chrono::steady_clock;
    const auto start = Clock::now();
    bool ok = pred();
    while (!ok) {
        Timeout left = timeout;
        if (timeout) {
            left = *timeout - std::chrono::duration_cast<Duration>(Clock::now() - start);
            if (left->count() <= 0) break;
        }
        wait(left);
        ok = pred();
    }
    return ok;
}

}  // namespace mproc::detail
