// The MPI worker's side (MpiEndpoint + serve_as_worker): the pool's one
// worker loop (run_worker_loop) over an endpoint that probes for the next
// message from the main process, with the runtime's back-off (runtime.hpp:
// back-to-back polls for 2 ms after the last message, yielding the CPU,
// then sleeps). A stop message (chunk 0) ends the executor's session: the
// worker answers "bye" and waits for the next executor (spawned workers
// too: the runtime keeps them for later executors), until the main process
// exits (the runtime's exit message).
//
// The main process may send a second chunk before this one's result (it
// does for short tasks, so a worker does not wait a round trip between
// them): MPI keeps it queued in order, and it is taken after this result
// is sent. A result is the only answer to a chunk (no acknowledgement).
#include <cstdio>
#include <cstring>

#include <boost/mpi/communicator.hpp>

#include "mpi/runtime.hpp"
#include "mpi/transport.hpp"
#include "pool/messages.hpp"

namespace mproc::mpi::detail {

namespace {

namespace bm = boost::mpi;
using mproc::detail::TaskHeader;

/// The worker's side of one communicator with the main process (rank 0 of
/// it: in SPMD, world rank 0; spawned, the parent).
class MpiEndpoint final : public mproc::detail::WorkerEndpoint {
public:
    explicit MpiEndpoint(bm::communicator comm) : comm_(std::move(comm)) {}

    std::span<const std::byte> receive_task() override {
        Backoff backoff;
        for (;;) {
            auto st = comm_.iprobe(0, bm::any_tag);
            if (!st) {
                backoff.pause();
                continue;
            }
            buf_ = receive(comm_, *st);
            if (kind_of(st->tag()) == Kind::exit) {
                exit_ = true;
                send_bytes(comm_, 0, tag_of(0, Kind::bye));
                return {};
            }
            if (kind_of(st->tag()) != Kind::task) continue;
            session_ = session_of(st->tag());
            TaskHeader h;
            if (buf_.size() >= sizeof h) {
                std::memcpy(&h, buf_.data(), sizeof h);
                if (h.chunk == 0) send_bytes(comm_, 0, tag_of(session_, Kind::bye));
            }
            return buf_;
        }
    }
    void claim(std::uint64_t) override {}
    void release_task() override {}
    void send_result(std::span<const std::byte> msg) override {
        send_bytes(comm_, 0, tag_of(session_, Kind::result), msg);
    }
    void unclaim() override {}

    bool exit_requested() const noexcept { return exit_; }

private:
    bm::communicator comm_;
    std::vector<std::byte> buf_;
    int session_ = 0;
    bool exit_ = false;
};

}  // namespace

void serve_as_worker(bm::communicator comm, bool spawned) {
    // A worker is single-threaded: its MPI calls need no lock.
    MpiEndpoint ep(comm);
    try {
        while (!ep.exit_requested()) mproc::detail::run_worker_loop(ep, 0);
        if (spawned) disconnect(comm);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "mproc::mpi: worker rank %d: %s\n", mproc::mpi::rank(), e.what());
        std::fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    finish_worker();
}

}  // namespace mproc::mpi::detail
