// MPIPoolExecutor's and mpi::Pool's configuration of the pool's one
// submitter: the MPI worker transport instead of the local rings.
#include "mpi/runtime.hpp"
#include "mpi/transport.hpp"
#include "mproc/mpi.hpp"

namespace mproc::mpi::detail {

mproc::detail::PoolConfig config(int max_workers, bool executor) {
    require_main(executor ? "mproc::mpi::MPIPoolExecutor" : "mproc::mpi::Pool");
    mproc::detail::PoolConfig cfg;
    cfg.transport = make_transport(max_workers);
    cfg.processes = worker_count(max_workers);
    cfg.break_on_death = executor;
    // Two chunks a worker: the transport sends a second one ahead to a
    // worker of short tasks (transport.cpp). (A Pool's window is larger.)
    if (executor) cfg.window = 2 * static_cast<std::size_t>(cfg.processes);
    return cfg;
}

}  // namespace mproc::mpi::detail
