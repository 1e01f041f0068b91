// mproc::detail::arm_fault — for tests: arm the library's fault points in
// the calling process (see lib/os/fault.hpp for the points and the
// MPROC_FAULT variable that arms them at process start). Not a user API.
//
// Thread safety: call it before the threads that may hit the points start.
#pragma once

#include <string_view>

namespace mproc::detail {

/// "name:N[:stop],...": the Nth hit of point `name` in this process kills it
/// with SIGKILL (or stops it with SIGSTOP). Empty disarms every point.
void arm_fault(std::string_view spec);

}  // namespace mproc::detail
