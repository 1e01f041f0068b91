// mproc durations and timeouts.
//
// Every blocking call in mproc takes a `Timeout`: std::nullopt blocks for as
// long as it takes, a zero duration does not block at all, anything else is
// the longest the call waits. Durations are std::chrono durations in seconds
// of type double, so `std::chrono::milliseconds(5)`, `2s` and `0.5` (via
// Duration(0.5)) all convert. Timeouts are measured on CLOCK_MONOTONIC, so a
// change of the wall clock never shortens or lengthens a wait.
#pragma once

#include <chrono>
#include <optional>

namespace mproc {

using Duration = std::chrono::duration<double>;
using Timeout = std::optional<Duration>;

}  // namespace mproc
