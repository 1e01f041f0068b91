// mproc::detail::WorkerTransport and WorkerEndpoint — how the pool's one
// submitter (lib/pool/submitter.hpp) reaches its workers. Internal.
//
// The submitter (PoolCore) owns the pool's bookkeeping: the backlog of
// encoded chunks, which chunks are in flight, futures, timeouts, cancel,
// progress, shutdown. A transport only moves bytes and runs workers:
//
//   parent side   WorkerTransport  — task messages out, result messages in,
//                                    worker processes (or ranks) started,
//                                    watched, ended.
//   worker side   WorkerEndpoint   — what run_worker_loop() (worker_loop.hpp)
//                                    drives: receive a task, claim it, send
//                                    its result.
//
// Two implementations: LocalTransport (local_transport.cpp: one shared
// memory task ring all workers read, one result ring, a slot per worker in
// shared memory naming the chunk it holds, a watcher thread on the workers'
// pidfds), and the MPI one (lib/mpi/, Boost.MPI point-to-point messages).
//
// ## Plugging in another transport
// 1. Implement WorkerTransport (parent) and WorkerEndpoint (worker).
// 2. Give PoolConfig::transport an instance and build the faces on it:
//      mproc::Pool(detail::PoolConfig{.transport = t})   (mpi::Pool)
//      mproc::ProcessPoolExecutor(detail::PoolConfig{.transport = t})
//    (both constructors are public; the executor sets break_on_death).
//    The submitter (PoolCore, include/mproc/detail/pool_core.hpp; state in
//    lib/pool/submitter_impl.hpp) then calls:
//      start(events)           once, from the constructor (caller's thread);
//      try_send(msg)           under the submitter's mutex, so never two at
//                              once; must not block (false = no room now;
//                              the submitter retries after the next result);
//      wait_result/take_result from the submitter's result thread or from a
//                              waiting caller, never two at once (the
//                              submitter serializes them);
//      post_result(msg)        any thread, any time before stop();
//      slot_state/end_worker   from the submitter's timer thread (per-task
//                              timeout, cancel(interrupt=true)) and from
//                              terminate_workers()/kill_workers();
//      send_stop, join_workers, end_all, stop
//                              from close/join/terminate/shutdown, in the
//                              caller's thread, never under the mutex.
// 3. A message is bytes: a task is TaskHeader + function reference + items
//    (include/mproc/detail/pool_messages.hpp); a result is ResultHeader +
//    outcomes. size() sets the window: processes+1 chunks in flight for an
//    executor, 4*processes+4 for a Pool (PoolConfig::window overrides it).
//    The transport never looks past the headers.
// 4. In the worker, build a WorkerEndpoint and call run_worker_loop(ep,
//    maxtasks): it resolves the task's function, decodes the items from the
//    message while receive_task()'s bytes are valid, runs them, and sends the
//    outcomes.
//
// ## What a dead worker looks like
// When a worker exits (killed, crashed, std::exit, max_tasks_per_child, or
// after a stop message) the transport posts ONE result message
// ResultHeader{kind = worker_died, chunk = the chunk it had claimed or 0,
// code = exit code or -signal, pid = its id, slot}. It must be ordered after
// every result that worker sent (so a result written just before death is
// not failed twice). A text after the header, if any, says why the worker
// ended, in place of its exit status (MPI: a rank whose initializer threw).
// Then it asks events.replace(slot): if true, it starts a
// new worker in that slot (a transport that cannot — MPI ranks — returns
// and the slot stays empty; the submitter breaks the pool when no worker
// is left). A clean exit with no chunk after a stop may post nothing.
#pragma once

#include <cstdint>
#include <exception>
#include <span>
#include <vector>

#include "mproc/duration.hpp"

namespace mproc::detail {

/// What a worker slot holds, as the transport knows it.
struct SlotState {
    std::uint64_t chunk = 0;       // 0: idle (or no worker)
    std::uint64_t started_ns = 0;  // os::monotonic_ns() when it claimed the chunk
};

/// Called by the transport (from its own watcher thread).
class TransportEvents {
public:
    virtual ~TransportEvents() = default;
    /// A worker in `slot` exited (its worker_died message is already
    /// posted). True: start a replacement in that slot.
    virtual bool replace(std::uint32_t slot) = 0;
    /// The replacement could not start: `e` says why.
    virtual void replace_failed(std::uint32_t slot, std::exception_ptr e) = 0;
};

/// Handles one result message; false leaves it in place (not consumed).
class ResultSink {
public:
    virtual ~ResultSink() = default;
    virtual bool handle(std::span<const std::byte> msg) = 0;
};

class WorkerTransport {
public:
    virtual ~WorkerTransport() = default;

    /// Starts the workers and the transport's watching. Throws if no worker
    /// could start (nothing is left running then).
    virtual void start(TransportEvents& events) = 0;
    /// Number of worker slots.
    virtual int size() const noexcept = 0;

    /// Offers one task message to the workers (any free one takes it).
    /// Never blocks: false when there is no room now.
    virtual bool try_send(std::span<const std::byte> msg) = 0;
    /// Asks every worker to exit once it has no task (may block for room).
    virtual void send_stop() = 0;

    /// Returns when a result may be ready or the timeout passed (spurious
    /// returns allowed).
    virtual void wait_result(Timeout timeout) = 0;
    /// Takes one ready result: sink.handle(bytes), then consumes it unless
    /// handle returned false. False if none was ready.
    virtual bool take_result(ResultSink& sink) = 0;
    /// Appends a message of the submitter's own to the result stream.
    virtual void post_result(std::span<const std::byte> msg) = 0;

    /// What `slot` is running (for timeouts and interrupting cancel).
    virtual SlotState slot_state(std::uint32_t slot) const = 0;
    /// Ends the worker in `slot` (kill: SIGKILL, else SIGTERM); its exit is
    /// then reported as any other. No-op if the slot is empty.
    virtual void end_worker(std::uint32_t slot, bool kill) = 0;
    /// Live workers' ids (pids locally).
    virtual std::vector<int> worker_ids() const = 0;

    /// After send_stop(): waits for every worker to exit.
    virtual void join_workers() = 0;
    /// Stops watching (no events after it returns), ends every worker
    /// (kill or terminate) and waits for them.
    virtual void end_all(bool kill) = 0;
    /// Stops watching without ending workers (after join_workers()).
    virtual void stop() = 0;
};

/// The worker's side of a transport. Used by one thread of the worker.
class WorkerEndpoint {
public:
    virtual ~WorkerEndpoint() = default;
    /// Blocks for the next task message; its bytes stay valid until
    /// release_task(). Empty: the transport is gone (the worker exits).
    virtual std::span<const std::byte> receive_task() = 0;
    /// This worker now holds `chunk` (recorded before release_task, so a
    /// worker that dies after this point is known to have held it).
    virtual void claim(std::uint64_t chunk) = 0;
    /// The message's bytes are no longer needed.
    virtual void release_task() = 0;
    virtual void send_result(std::span<const std::byte> msg) = 0;
    /// After send_result: this worker holds no chunk.
    virtual void unclaim() = 0;
};

/// The one worker loop (worker_loop.cpp): runs tasks from `ep` until a stop
/// message, a closed transport, or `maxtasks` chunks (0: no limit).
void run_worker_loop(WorkerEndpoint& ep, std::uint64_t maxtasks);

}  // namespace mproc::detail
