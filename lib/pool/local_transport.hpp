// The local worker transport: shared-memory rings and worker processes on
// this machine (see worker_transport.hpp). Internal.
#pragma once

#include <memory>

#include "mproc/detail/pool_core.hpp"
#include "pool/worker_transport.hpp"

namespace mproc::detail {

/// `processes` workers made by cfg.factory, each running at most
/// cfg.maxtasks chunks (0: no limit) before it exits and is replaced.
std::shared_ptr<WorkerTransport> make_local_transport(const PoolConfig& cfg);

}  // namespace mproc::detail
