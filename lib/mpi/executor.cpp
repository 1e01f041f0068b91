// MPIPoolExecutor's and mpi::Pool's configuration of the pool's one
// submitter: the MPI worker transport instead of the local rings.
#include <string>

#include "mpi/runtime.hpp"
#include "mpi/transport.hpp"
#include "mproc/errors.hpp"
#include "mproc/mpi.hpp"

namespace mproc::mpi::detail {

mproc::detail::PoolConfig config(int max_workers, bool executor, std::vector<std::byte> init) {
    require_main(executor ? "mproc::mpi::MPIPoolExecutor" : "mproc::mpi::Pool");
    mproc::detail::PoolConfig cfg;
    cfg.transport = make_transport(max_workers, std::move(init));
    cfg.processes = worker_count(max_workers);
    cfg.break_on_death = executor;
    // Two chunks a worker: the transport sends a second one ahead to a
    // worker of short tasks (transport.cpp). (A Pool's window is larger.)
    if (executor) cfg.window = 2 * static_cast<std::size_t>(cfg.processes);
    return cfg;
}

void reject_local_only(const char* who, bool maxtasks, bool start_method) {
    if (!maxtasks && !start_method) return;
    throw Error(std::string(who) + ": " + (maxtasks ? "max_tasks_per_child (maxtasksperchild)" : "start_method") +
                " has no meaning for MPI workers, which are MPI ranks rather than processes this program "
                "starts; leave it unset");
}

}  // namespace mproc::mpi::detail
