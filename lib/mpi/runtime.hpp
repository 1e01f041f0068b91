// The MPI runtime under mproc::mpi (internal): initialisation and roles,
// the lock around MPI calls, tags, spawning workers, the idle back-off, and
// what happens at exit.
//
// Roles. mproc::mpi::init() decides what this process is:
//  - main: rank 0 of a job started by mpirun (SPMD: the other ranks of
//    MPI_COMM_WORLD are its workers), or the only rank (its executors spawn
//    their workers with MPI_Comm_spawn);
//  - worker: any other rank of an SPMD job, or a process spawned for an
//    executor (MPI_Comm_get_parent is set). A worker serves tasks inside
//    init(), executor after executor, and exits there when the main process
//    exits; it never returns into main.
//
// Tags. One communicator carries many executors' messages (in SPMD every
// executor talks over MPI_COMM_WORLD; spawned workers serve one executor
// after another), so each executor opens a session and
// its messages carry tag = 4 * session + kind. Session 0 is the runtime's
// own (exit). Results of a session that has ended (an executor terminated
// with tasks running) are received and dropped by whoever polls next, so a
// worker blocked sending a large stale result is always released.
//
// Thread level: MPI_THREAD_MULTIPLE is requested; MPI_THREAD_SERIALIZED is
// enough, because every MPI call mproc makes holds mpi_lock().
//
// Waiting: Open MPI's blocking calls spin at 100% CPU (mpi4py #419), and MPI
// has no kernel-blocking wait. mproc polls instead (MPI_Iprobe): for 2 ms
// after the last message it polls back to back, yielding the CPU between
// polls (so on an oversubscribed machine a poller gives way to the rank
// doing the work), then sleeps between polls for an eighth of the time idle
// so far (50 us to 1 ms). A busy pool stays in the spin phase, so a message
// is seen within a poll of its arrival; after a pause it is seen at most
// ~12% of the pause (and never more than 1 ms) late; a long-idle process
// wakes ~1000 times a second. (The main process's result thread does not
// poll at all while no task is out: transport.cpp.)
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <boost/mpi/communicator.hpp>
#include <boost/mpi/status.hpp>

namespace mproc::mpi::detail {

/// Initialises MPI and decides the role (see above); in a worker, serves
/// and exits. Idempotent. (mproc::mpi::init and mproc::init's hook.)
void start(int argc, char** argv);

/// Held around every MPI call mproc makes.
std::mutex& mpi_lock();

enum class Role { uninitialized, main, worker };
Role role() noexcept;

/// Error (saying to call mproc::mpi::init) unless this is the main process.
void require_main(const char* who);

/// Ranks of MPI_COMM_WORLD.
int world_size();

enum class Kind : int { task = 0, result = 1, bye = 2, exit = 3 };
constexpr int kMaxSession = 8000;  // 4 * kMaxSession + 3 < 32767 (MPI's least MPI_TAG_UB)
inline int tag_of(int session, Kind k) { return 4 * session + static_cast<int>(k); }
inline int session_of(int tag) { return tag / 4; }
inline Kind kind_of(int tag) { return static_cast<Kind>(tag % 4); }

/// A new session number (1..kMaxSession), and its end: later messages with
/// its tags are dropped by drain_stale().
int open_session();
void close_session(int session);
bool session_open(int session);

/// Spawns `n` workers running this executable with this program's
/// arguments; returns the intercommunicator (remote ranks 0..n-1). Error
/// naming MPI's complaint if it fails. Under mpi_lock().
boost::mpi::communicator spawn_workers(int n);

/// Spawned workers for an executor: an idle group of `n` spawned earlier,
/// or a new one (spawn_workers). Spawned workers serve executor after
/// executor (each its own session) and exit only at the main process's
/// exit, as SPMD ranks do: repeated MPI_Comm_spawn calls are slow and, with
/// Open MPI 4.1's PMIx, now and then hang in connect/accept.
boost::mpi::communicator acquire_workers(int n);
/// The executor is done with them (stale results are drained by the next).
void release_workers(const boost::mpi::communicator& comm);

/// Idle back-off (see the top of this file).
class Backoff {
public:
    Backoff() = default;
    /// Another policy: poll back to back for `spin_ns`, then sleep an eighth
    /// of the idle time, capped at `max_ns`. (The main process waiting for
    /// long tasks: no spin, sleeps of at most 200 us: transport.cpp.)
    Backoff(std::uint64_t spin_ns, std::uint64_t max_ns) noexcept : spin_ns_(spin_ns), max_ns_(max_ns) {}
    void reset() noexcept;
    /// How long to sleep before the next poll (zero: the spin phase; yield,
    /// then poll again).
    std::chrono::nanoseconds next() noexcept;
    /// Yields or sleeps as next() says.
    void pause();

private:
    std::uint64_t idle_since_ = 0;
    std::uint64_t spin_ns_ = 2'000'000;  // ns of polling without sleeping
    std::uint64_t max_ns_ = 1'000'000;   // longest sleep
};

/// Received bytes of a probed message (under mpi_lock()).
std::vector<std::byte> receive(const boost::mpi::communicator& comm, const boost::mpi::status& st);

/// Sends `msg` (possibly empty: Boost.MPI reads the first element to pick the
/// datatype, so an empty message must still point somewhere).
void send_bytes(const boost::mpi::communicator& comm, int dest, int tag, std::span<const std::byte> msg = {});

/// The worker side: serves tasks until told to exit, finalises MPI and
/// exits the process (lib/mpi/transport.cpp).
[[noreturn]] void serve_as_worker(boost::mpi::communicator comm, bool spawned);

/// A worker's end: MPI_Finalize, then exit(0).
[[noreturn]] void finish_worker();

/// Disconnects an intercommunicator (MPI_Comm_disconnect; under mpi_lock()).
void disconnect(boost::mpi::communicator& comm);

}  // namespace mproc::mpi::detail
