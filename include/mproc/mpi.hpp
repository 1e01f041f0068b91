// mproc::mpi — the pool and executor past one machine: Python's
// mpi4py.futures.MPIPoolExecutor and a multiprocessing.Pool over MPI
// (component mproc::mpi: `find_package(mproc CONFIG REQUIRED COMPONENTS
// mpi)`, target mproc::mpi; built on Boost.MPI over an MPI library).
//
//   int main(int argc, char** argv) {
//       mproc::mpi::init(argc, argv);           // first statement of main
//       mproc::mpi::MPIPoolExecutor ex;         // mpirun -np N: the N-1 other ranks are the workers;
//                                               // one process: spawns cpu_count() (or .max_workers) workers
//       mproc::Future<long> f = ex.submit(fib, 30);
//       for (long r : ex.map(fib, inputs, {.chunksize = 8})) ...
//   }
//
// Switching mproc::ProcessPoolExecutor to mproc::mpi::MPIPoolExecutor (and
// mproc::Pool to mproc::mpi::Pool) is the only change a program needs: the
// same submitter, futures (mproc::wait, as_completed mix local and MPI
// futures), chunking and exception transport run over MPI messages instead
// of shared-memory rings. Tasks are functions or capture-less lambdas sent
// by reference (module, offset, build-id: every rank must run the same
// build of the program; another build is a SerializationError naming both
// build-ids); arguments and results use mproc's Boost.Serialization codec;
// a task's exception comes back as its own type as in local pools.
//
// Processes. Under `mpirun -np N ./app`, init() returns on rank 0 only;
// ranks 1..N-1 serve tasks inside init() and exit there when rank 0's
// program exits. Run as one process (or `mpirun -np 1`, the robust way),
// an executor spawns its workers (MPI_Comm_spawn of this executable with
// this program's arguments); they run their tasks inside init(), serve later
// executors of the same size too (spawning is slow, and now and then hangs
// in Open MPI 4.1's PMIx when repeated), and exit when the program exits. rank() is 0 in the main process and 1..N-1
// in workers (spawned workers count from 1 too).
//
// Scheduling is pull-based: an idle worker gets the next chunk when it
// returns a result (the worker idle last first, so a trickle of tasks keeps
// one worker hot), so a slow rank never holds up the others. With short
// tasks (under 2 ms) a busy worker may also get one chunk sent ahead, queued
// behind its current one, so it does not wait a round trip between chunks.
// Waiting polls MPI: back to back (yielding the CPU) for 2 ms after the
// last message, then sleeps of an eighth of the idle time so far (50 us to
// 1 ms); the main process does not poll at all while no task is out. An
// idle parent or worker does not spin at 100% CPU.
//
// Transports: in SPMD (mpirun -np N) ranks on one machine talk over shared
// memory; spawned workers reach a one-rank job over TCP (Open MPI 4.1's
// shared-memory BTL is off in a job of one rank), so SPMD has the lower
// per-task overhead on one machine.
//
// A worker's death: MPI cannot report one, so the MPI runtime ends the job
// (mpirun prints which rank died and exits non-zero) — nothing hangs. MPI
// cannot end one rank either: terminate(), kill_workers(), a per-task
// timeout and cancel(interrupt) fail the affected futures at once but let a
// running task finish in its worker (its result is dropped); that rank
// takes no more work from the executor, and one whose ranks are all retired
// this way is broken (BrokenProcessPool).
//
// Options: MPIPoolExecutor also takes mproc::ExecutorOptions and mpi::Pool
// mproc::PoolOptions, so switching the class is the only change a program
// needs; their initializer runs once per worker rank per executor (below).
//
// Thread safety: executors, pools and futures may be used from any thread;
// every MPI call mproc makes holds one lock, so MPI_THREAD_SERIALIZED
// suffices (init() requests MPI_THREAD_MULTIPLE and throws if the library
// gives less than SERIALIZED). Blocking: as ProcessPoolExecutor and Pool.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "mproc/futures.hpp"
#include "mproc/pool.hpp"

namespace mproc::mpi {

/// The first statement of main: mproc::init, and MPI's initialisation. In a
/// worker rank or a spawned worker it serves tasks and never returns.
/// (mproc::init does the same in a program that links mproc::mpi.)
void init(int argc, char** argv);

/// 0 in the main process; 1..N-1 in workers.
int rank() noexcept;

/// True in a worker (for code that runs before init returns, e.g. static
/// initialisers: false there).
bool is_worker() noexcept;

namespace detail {
/// The chunk id of an initializer's call (PoolInitializer::message): the
/// transport sends it to each worker before any task and reads its result
/// itself.
inline constexpr std::uint64_t kInitChunk = ~std::uint64_t{0};
/// The submitter's configuration for MPI workers (lib/mpi/executor.cpp):
/// `max_workers` as ExecutorOptions says; `executor`: a dead worker breaks
/// the pool (ProcessPoolExecutor's rule) rather than failing one task;
/// `init`: the initializer's call (empty: none).
mproc::detail::PoolConfig config(int max_workers, bool executor, std::vector<std::byte> init = {});
/// How many workers config(max_workers, ...) gets.
int worker_count(int max_workers);
/// Options that have no MPI meaning: Error naming them.
void reject_local_only(const char* who, bool maxtasks, bool start_method);
}  // namespace detail

/// MPIPoolExecutor's options (mpi4py's MPIPoolExecutor(max_workers,
/// initializer, initargs)). The initializer runs once in each worker rank
/// before its first task of this executor, with `initargs` (which must be
/// serializable: they travel as a task's arguments do). One that throws
/// breaks the executor (BrokenProcessPool naming the rank and the
/// exception), as a failing initializer does in ProcessPoolExecutor.
struct ExecutorOptions {
    /// SPMD (mpirun -np N, N > 1): ranks 1..max_workers (0: all N-1).
    /// One process: spawn max_workers workers (0: cpu_count()).
    int max_workers = 0;
    PoolInitializer initializer{};
    InitArgs initargs{};
};

/// mpi4py.futures.MPIPoolExecutor: ProcessPoolExecutor's interface (submit,
/// lazy map with chunksize / buffersize / timeout, shutdown, Futures that
/// mix with local ones) on MPI workers. worker_pids() gives the workers'
/// ranks. It also takes ProcessPoolExecutor's own options
/// (mproc::ExecutorOptions), so switching the class is the only change;
/// max_tasks_per_child and start_method have no MPI meaning there (Error).
class MPIPoolExecutor : public ProcessPoolExecutor {
public:
    explicit MPIPoolExecutor(int max_workers = 0) : MPIPoolExecutor(ExecutorOptions{.max_workers = max_workers}) {}
    explicit MPIPoolExecutor(ExecutorOptions opts)
        : ProcessPoolExecutor(detail::config(opts.max_workers, true,
                                             opts.initializer.message(opts.initargs, detail::kInitChunk))),
          workers_(detail::worker_count(opts.max_workers)) {}
    explicit MPIPoolExecutor(const mproc::ExecutorOptions& o)
        : MPIPoolExecutor((detail::reject_local_only("mproc::mpi::MPIPoolExecutor", o.max_tasks_per_child != 0,
                                                     o.start_method.has_value()),
                           ExecutorOptions{o.max_workers, o.initializer, o.initargs})) {}
    int num_workers() const noexcept { return workers_; }

private:
    int workers_;
};

/// multiprocessing.Pool's interface (map, imap, imap_unordered, starmap,
/// apply_async, ...) on MPI workers; Pool(n): n workers as
/// ExecutorOptions::max_workers says. PoolOptions' initializer and initargs
/// work as in MPIPoolExecutor, except that a worker whose initializer
/// throws only stops taking work (the pool is broken when none is left);
/// maxtasksperchild and start_method have no MPI meaning (Error).
class Pool : public mproc::Pool {
public:
    explicit Pool(int processes = 0) : mproc::Pool(detail::config(processes, false)) {}
    explicit Pool(const PoolOptions& o)
        : mproc::Pool((detail::reject_local_only("mproc::mpi::Pool", o.maxtasksperchild != 0, o.start_method.has_value()),
                       detail::config(o.processes, false, o.initializer.message(o.initargs, detail::kInitChunk)))) {}
    int num_workers() const noexcept { return processes(); }
};

}  // namespace mproc::mpi
