// The MPI worker transport (internal): the pool's one submitter (PoolCore)
// reaches MPI workers through it, as it reaches local worker processes
// through the shared-memory rings. See lib/pool/worker_transport.hpp for
// the contract and lib/mpi/transport.cpp for how MPI meets it.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "mproc/mpi.hpp"
#include "pool/worker_transport.hpp"

namespace mproc::mpi::detail {

/// Workers for one executor: in an SPMD job the ranks 1..max_workers of
/// MPI_COMM_WORLD (0: all of them); run as one process, max_workers (0:
/// cpu_count()) workers spawned with MPI_Comm_spawn. `init`: the
/// initializer's call (chunk kInitChunk), sent to each worker first.
std::shared_ptr<mproc::detail::WorkerTransport> make_transport(int max_workers, std::vector<std::byte> init);
/// (worker_count(max_workers), declared in <mproc/mpi.hpp>, says how many.)

}  // namespace mproc::mpi::detail
