// The remote manager's server: its request dispatch, exposed for the
// fuzzer (fuzz/fuzz_manager_wire.cpp) and the server process in
// server.cpp. Internal header (lib/manager/).
#pragma once

#include <cstddef>
#include <vector>

#include "manager/wire.hpp"
#include "mproc/detail/manager_core.hpp"

namespace mproc::detail::server {

/// Runs the request `body` (a frame's body) on `heap` and appends its reply
/// frame to `out`: the result, or an error reply for a malformed request,
/// an unknown operation, an object that does not exist or is of another
/// kind, or any error of the operation itself. Never touches memory the
/// request names except through the heap's directory. Throws only
/// mgr::WaitCancelled (the connection's client is gone).
/// A quiet request (wire.hpp) appends nothing when it succeeds, and its
/// error only if it is the first failure since the last answered request:
/// `quiet_failed` (the connection's, false at first) remembers that.
void serve_request(const SharedHeap& heap, mwire::Bytes body, std::vector<std::byte>& out,
                   mwire::DecodeScratch& scratch, bool& quiet_failed);

}  // namespace mproc::detail::server
