// mproc::detail::PoolCore — the one submitter under Pool,
// ProcessPoolExecutor and the MPI executor — and the worker-process entry
// of the local transport. Not a public API; see pool.hpp and futures.hpp.
//
// The submitter keeps the bookkeeping: submitted chunks wait in a backlog;
// at most a few per worker are with the transport at once (enough that a
// worker finishing a chunk finds the next one without a wake-up, few enough
// that cancel() and shutdown(cancel_futures) can still withdraw the rest).
// A result thread takes result messages from the transport, hands each
// chunk's bytes to its Job (which decodes them and runs callbacks, in the
// parent) and tops the transport up; a waiting caller may take results
// itself (ResultPump). A timer thread enforces per-task timeouts and
// interrupting cancels by ending the worker that holds the chunk. When a
// worker exits, the transport reports which chunk it held; the submitter
// fails that chunk (BrokenProcessPool naming the signal, or TimeoutError /
// CancelledError when it ended the worker itself) and has the transport
// start a replacement (Pool) or breaks the pool (ProcessPoolExecutor).
//
// Transports (lib/pool/worker_transport.hpp): the local one (shared-memory
// rings, worker processes started by PoolConfig::factory) unless
// PoolConfig::transport names another (MPI).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <variant>
#include <vector>

#include "mproc/detail/channel.hpp"
#include "mproc/detail/pool_task.hpp"
#include "mproc/detail/result_state.hpp"
#include "mproc/duration.hpp"
#include "mproc/errors.hpp"
#include "mproc/process.hpp"
#include "mproc/shared_memory.hpp"

namespace mproc::detail {

/// A raw-bytes channel handle (no per-item serialization header).
class PoolChannel {
public:
    PoolChannel() = default;
    /// `name` names the ring's memfd for mproc-top: "mproc-pool-tasks" or
    /// "mproc-pool-results".
    PoolChannel(std::size_t capacity, const char* name)
        : core_(std::make_shared<ChannelCore>(capacity, 0, ChannelCore::Wait::futex, nullptr, false, name,
                                             ChannelCore::Pace::prompt)) {}
    ChannelCore& core() const noexcept { return *core_; }
    void mproc_export(HandleWriter& w) const { core_->mproc_export(w); }
    static PoolChannel mproc_import(HandleReader& r) {
        PoolChannel c;
        c.core_ = std::make_shared<ChannelCore>(ChannelCore::mproc_import(r, nullptr));
        return c;
    }

private:
    std::shared_ptr<ChannelCore> core_;
};

/// The worker's loop (lib/pool/worker.cpp). `init` runs first.
void pool_worker_loop(const PoolChannel& tasks, const PoolChannel& results,
                      const Array<std::uint64_t>& slots, std::uint32_t index,
                      std::uint64_t maxtasks, const std::function<void()>& init);

/// A worker process's target: the initializer's function and arguments
/// travel as ordinary Process arguments (so handles among them reach
/// spawned workers). Like every Process, a worker logs through its
/// parent's writer (the log's child-setup piece, <mproc/log.hpp>).
template <class Init, class... P>
void pool_worker_entry(PoolChannel tasks, PoolChannel results, Array<std::uint64_t> slots,
                       std::uint32_t index, std::uint64_t maxtasks, Init init, P... params) {
    pool_worker_loop(tasks, results, slots, index, maxtasks, [&] {
        if constexpr (std::is_pointer_v<Init>) {
            if (init) init(std::move(params)...);
        } else {
            init(std::move(params)...);
        }
    });
}

/// Makes (does not start) worker process number `index`.
using WorkerFactory = std::function<Process(const PoolChannel& tasks, const PoolChannel& results,
                                            const Array<std::uint64_t>& slots, std::uint32_t index,
                                            std::uint64_t maxtasks)>;

/// A submitted task or map: receives its chunks' outcomes on the result
/// thread (or a waiting caller's thread that pumps results).
class Job {
public:
    virtual ~Job() = default;
    /// `bytes`: `count` outcomes of items first..first+count-1.
    virtual void on_chunk(std::uint64_t first, std::uint32_t count, std::span<const std::byte> bytes) = 0;
    /// Every item of the chunk failed with `e` (worker died, timed out,
    /// interrupted, pool torn down).
    virtual void on_failure(std::uint64_t first, std::uint32_t count, std::exception_ptr e) = 0;
    /// The chunk went to the workers; false if it was cancelled meanwhile
    /// (it is then dropped).
    virtual bool on_dispatch(std::uint64_t /*first*/) { return true; }
};

/// One encoded chunk. `msg` is the whole task message, encoded once by
/// ChunkEncoder (pool_jobs.hpp): a TaskHeader whose chunk id the submitter
/// fills in, the function reference, the items. It is copied once more,
/// into the transport (the ring), and the worker decodes from there.
struct Chunk {
    std::shared_ptr<Job> job;
    std::uint64_t first = 0;
    std::uint32_t count = 0;
    std::vector<std::byte> msg;
    /// Per-task timeout, counted from the moment a worker takes the chunk:
    /// past it the chunk fails with TimeoutError and its worker is killed
    /// and replaced (TaskOptions::timeout, MapOptions::task_timeout).
    Timeout timeout{};
};

/// Encodes a task's entry and function pointer (task_ref<F, Item, Spread>).
using RefMaker = std::vector<std::byte> (*)(AnyFunction fn);

class WorkerTransport;  // lib/pool/worker_transport.hpp (internal)

struct PoolConfig {
    /// Local transport: worker processes made by `factory`.
    int processes = 1;
    std::uint64_t maxtasks = 0;
    WorkerFactory factory;
    /// ProcessPoolExecutor: a worker's abnormal exit breaks the pool.
    bool break_on_death = false;
    /// Chunks in flight at most (0: processes+1 for an executor, as
    /// Python's; 4*processes+4 for a Pool). A transport that sends ahead
    /// (MPI: a second chunk to a worker of short tasks) asks for more.
    std::size_t window = 0;
    /// Another transport (MPI). Null: the local shared-memory rings built
    /// from processes / factory / maxtasks.
    std::shared_ptr<WorkerTransport> transport;
};

struct ResultPump;  // see below

/// The one submitter under Pool, ProcessPoolExecutor and the MPI executor.
class PoolCore {
public:
    explicit PoolCore(PoolConfig cfg);
    ~PoolCore();  // terminate()
    PoolCore(const PoolCore&) = delete;
    PoolCore& operator=(const PoolCore&) = delete;

    /// The function reference for (entry, fn), encoded once per pool; the
    /// bytes stay valid while the pool lives.
    std::span<const std::byte> task_ref(TaskEntry entry, AnyFunction fn, RefMaker make_ref);
    /// Queues encoded chunks. ValueError once closed (unless `continuation`:
    /// a lazy map feeding more of what it began before close());
    /// BrokenProcessPool once broken.
    void submit(std::vector<Chunk> chunks, bool continuation = false);
    /// No more submissions; workers exit once the work is done.
    void close();
    /// After close(): waits for the work (lazy maps included) and the workers.
    void join();
    /// Kills the workers now; unfinished work fails with `reason`.
    void terminate(const char* reason = "the pool was terminated before this task finished");
    /// Executor's shutdown: close, optionally withdraw queued chunks
    /// (their jobs get CancelledError through on_failure), optionally join.
    void shutdown(bool wait, bool cancel_queued);
    /// Python 3.14's terminate_workers / kill_workers: shutdown without
    /// waiting, queued work cancelled, every worker signalled (SIGTERM /
    /// SIGKILL); what was running fails with BrokenProcessPool.
    void end_workers(bool kill);
    /// Withdraws a job's chunks that have not gone to a worker yet.
    bool withdraw(const Job* job);
    /// withdraw(), and every chunk of `job` already with a worker fails with
    /// `e` and its worker is killed and replaced. True if anything was
    /// withdrawn or interrupted.
    bool interrupt(const Job* job, std::exception_ptr e);
    /// A lazy map still feeding chunks: join() waits until the token is
    /// dropped.
    std::shared_ptr<void> keep_open();

    int processes() const noexcept;
    /// Ids (pids) of the live workers.
    std::vector<int> worker_pids() const;
    bool broken() const;
    /// For ResultState::set_pump.
    std::weak_ptr<ResultPump> pump() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// How many items per chunk: Python's rule when `chunksize` is 0
/// (ceil(n / (4 * processes))), at least 1.
std::size_t default_chunksize(std::size_t n, int processes, std::size_t chunksize);

}  // namespace mproc::detail
