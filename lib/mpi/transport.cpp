// The MPI worker transport, parent side (MpiTransport): task and result
// messages as Boost.MPI point-to-point messages between the main process
// and its worker ranks (the worker side: lib/mpi/worker.cpp).
//
// Scheduling is pull-based: try_send() hands a chunk to an idle worker
// first — the one that became idle last, so a trickle of tasks keeps one
// worker hot while the others back off to sleep — and a worker's result is
// its request for the next chunk (its slot is freed before the result goes
// to the submitter, whose dispatch then sends the next one). Sending ahead:
// when every worker is busy, a worker whose last chunk took under 2 ms
// (result to result) may get a second one queued behind it, so with short
// tasks a worker never waits a round trip between chunks; with longer ones
// nothing is sent ahead and a slow rank never holds a chunk another could
// run (the executor's window is two chunks a worker: executor.cpp).
// Tasks go out with MPI_Isend (try_send never blocks); the buffers are
// kept until MPI reports the send complete. Results are found with
// MPI_Iprobe on this executor's result tag.
//
// Waiting. With chunks out, wait_result polls with the runtime's back-off
// (runtime.hpp: back to back, yielding, for 2 ms, then sleeps); with none
// out no result can come, so it sleeps on a condition variable until
// try_send wakes it (and polls every 50 ms for a retired rank's late
// result or an ended session's stale one). No 100% CPU when idle.
//
// A dead rank. MPI (Open MPI 4 without ULFM) cannot report a dead peer:
// when a worker rank dies the runtime (mpirun / orted) ends the whole job
// with a message naming the rank and a non-zero exit status, so nothing is
// left waiting. MPI cannot end one rank either, so end_worker() (per-task
// timeout, cancel with interrupt) retires the slot instead: its chunk fails
// as the submitter decides, a chunk sent ahead to it goes to another
// worker (the submitter still counts it in flight), the slot takes no more
// work, and what the rank sends later is dropped; once every slot is
// retired the pool is broken (replace_failed). end_all() lets running tasks
// finish in the background (their results are dropped by whoever polls
// that communicator next, or at exit).
//
// An initializer (ExecutorOptions::initializer) is one task message of
// chunk kInitChunk, sent to every worker when the session opens, before any
// task: MPI keeps a sender's messages in order, so each worker runs it
// first. A slot takes no chunk until its initializer's result is back; that
// result goes to the submitter as a bare nudge (chunk 0: dispatch), or, if
// the initializer threw, the slot is retired and reported as a worker_died
// whose text names the rank and the exception (an executor is then broken;
// a Pool, once every slot is retired).
#include "mpi/transport.hpp"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <boost/mpi/communicator.hpp>
#include <boost/mpi/request.hpp>

#include "mpi/runtime.hpp"
#include "mproc/detail/exception_codec.hpp"
#include "mproc/detail/pool_task.hpp"
#include "mproc/errors.hpp"
#include "mproc/mpi.hpp"
#include "mproc/process.hpp"
#include "pool/messages.hpp"

namespace mproc::mpi::detail {

namespace {

namespace bm = boost::mpi;
using mproc::detail::ResultHeader;
using mproc::detail::ResultKind;
using mproc::detail::ResultSink;
using mproc::detail::SlotState;
using mproc::detail::TaskHeader;
using mproc::detail::TransportEvents;

std::uint64_t now_ns() {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                          std::chrono::steady_clock::now().time_since_epoch())
                                          .count());
}

constexpr std::uint64_t kSendAheadBelowNs = 2'000'000;  // a chunk this short may have one queued behind it
constexpr auto kIdlePoll = std::chrono::milliseconds(50);

class MpiTransport final : public mproc::detail::WorkerTransport {
public:
    MpiTransport(int max_workers, std::vector<std::byte> init) : spawned_(world_size() == 1), init_(std::move(init)) {
        const int n = worker_count(max_workers);
        slots_.resize(static_cast<std::size_t>(n));
        for (int i = 0; i < n; ++i) slots_[static_cast<std::size_t>(i)].peer = spawned_ ? i : i + 1;
    }
    ~MpiTransport() override {
        try {
            if (started_ && !ended_) end_all(false);
        } catch (...) {
        }
    }

    void start(TransportEvents& events) override {
        events_ = &events;
        comm_ = spawned_ ? acquire_workers(size()) : bm::communicator();
        session_ = open_session();
        started_ = true;
        if (init_.empty()) return;
        std::lock_guard<std::mutex> g(mu_);
        std::lock_guard<std::mutex> m(mpi_lock());
        for (auto& s : slots_) {
            s.initializing = true;
            isend_locked(s.peer, Kind::task, init_);
        }
    }

    int size() const noexcept override { return static_cast<int>(slots_.size()); }

    bool try_send(std::span<const std::byte> msg) override {
        TaskHeader h;
        if (msg.size() < sizeof h) return true;  // nothing a worker could run
        std::memcpy(&h, msg.data(), sizeof h);
        std::lock_guard<std::mutex> g(mu_);
        std::lock_guard<std::mutex> m(mpi_lock());
        place_orphans_locked();
        Slot* s = idle_slot_locked();
        if (s) {
            s->chunk = h.chunk;
            s->started_ns = now_ns();
        } else {
            // Every worker is busy: queue it behind the short chunk that
            // started first (it should be the first to finish).
            for (auto& t : slots_)
                if (!t.retired && !t.initializing && t.queued == 0 && t.last_ns < kSendAheadBelowNs &&
                    (!s || t.started_ns < s->started_ns))
                    s = &t;
            if (!s) return false;
            s->queued = h.chunk;
            s->queued_msg.assign(msg.begin(), msg.end());
        }
        isend_locked(s->peer, Kind::task, msg);
        if (idle_waiting_) cv_.notify_all();
        return true;
    }

    void send_stop() override {
        TaskHeader stop{};
        std::lock_guard<std::mutex> g(mu_);
        std::lock_guard<std::mutex> m(mpi_lock());
        for (auto& s : slots_) isend_locked(s.peer, Kind::task, std::as_bytes(std::span(&stop, 1)));
    }

    void wait_result(Timeout timeout) override {
        using Clock = std::chrono::steady_clock;
        const auto start = Clock::now();
        auto left = [&] {
            return std::max(std::chrono::nanoseconds(0),
                            std::chrono::duration_cast<std::chrono::nanoseconds>(*timeout - (Clock::now() - start)));
        };
        Backoff backoff = waiting_backoff();
        for (;;) {
            {
                std::unique_lock<std::mutex> g(mu_);
                if (!ready_.empty()) return;
                if (!busy_locked()) {
                    // Nothing out, so no result can come but a retired
                    // rank's or an ended session's: sleep until try_send.
                    std::chrono::nanoseconds d = kIdlePoll;
                    if (timeout) d = std::min(d, left());
                    idle_waiting_ = true;
                    cv_.wait_for(g, d, [&] { return !ready_.empty() || busy_locked(); });
                    idle_waiting_ = false;
                    if (!ready_.empty()) return;
                    if (!busy_locked()) {
                        g.unlock();
                        (void)poll();  // drops late and stale results
                        return;        // (a spurious return is allowed)
                    }
                    backoff = waiting_backoff_locked();
                    continue;
                }
            }
            if (poll()) return;
            if (timeout && left().count() == 0) return;
            const auto pause = backoff.next();
            if (pause.count() == 0) {
                std::this_thread::yield();
                continue;
            }
            std::unique_lock<std::mutex> g(mu_);
            cv_.wait_for(g, timeout ? std::min<std::chrono::nanoseconds>(pause, left()) : pause,
                         [&] { return !ready_.empty(); });
        }
    }

    bool take_result(ResultSink& sink) override {
        bool have;
        {
            std::lock_guard<std::mutex> g(mu_);
            have = !ready_.empty();
        }
        if (!have && !poll()) return false;
        std::vector<std::byte> msg;
        {
            std::lock_guard<std::mutex> g(mu_);
            if (ready_.empty()) return false;
            msg = std::move(ready_.front());
            ready_.pop_front();
        }
        if (!sink.handle(msg)) {
            std::lock_guard<std::mutex> g(mu_);
            ready_.push_front(std::move(msg));
            return false;
        }
        return true;
    }

    void post_result(std::span<const std::byte> msg) override {
        {
            std::lock_guard<std::mutex> g(mu_);
            ready_.emplace_back(msg.begin(), msg.end());
        }
        cv_.notify_all();
    }

    SlotState slot_state(std::uint32_t slot) const override {
        std::lock_guard<std::mutex> g(mu_);
        if (slot >= slots_.size()) return {};
        const Slot& s = slots_[slot];
        return SlotState{s.retired ? 0 : s.chunk, s.started_ns};
    }

    void end_worker(std::uint32_t slot, bool /*kill*/) override {
        ResultHeader h;
        bool any_left = false;
        {
            std::lock_guard<std::mutex> g(mu_);
            if (slot >= slots_.size() || slots_[slot].retired) return;
            Slot& s = slots_[slot];
            s.retired = true;
            h = ResultHeader{s.chunk, ResultKind::worker_died, -9, s.peer, slot};
            if (s.queued != 0) {
                // Sent ahead but not started: another worker runs it (what
                // this rank sends for it later is dropped).
                orphans_.push_back(std::move(s.queued_msg));
                s.queued = 0;
                s.queued_msg = {};
            }
            for (auto& t : slots_) any_left = any_left || !t.retired;
            std::lock_guard<std::mutex> m(mpi_lock());
            place_orphans_locked();
        }
        post_result(std::as_bytes(std::span(&h, 1)));
        if (!events_) return;
        (void)events_->replace(slot);  // an MPI rank cannot be replaced: the slot stays retired
        if (!any_left)
            events_->replace_failed(slot, std::make_exception_ptr(BrokenProcessPool(
                                              "every MPI worker rank of this pool was retired (a per-task timeout "
                                              "or an interrupting cancel retires the rank that ran the task)")));
    }

    std::vector<int> worker_ids() const override {
        std::lock_guard<std::mutex> g(mu_);
        std::vector<int> ids;
        for (auto& s : slots_)
            if (!s.retired) ids.push_back(spawned_ ? s.peer + 1 : s.peer);
        return ids;
    }

    void join_workers() override {
        // Every worker answers the stop with a bye once its last result is
        // sent: after all byes nothing of this session is in flight.
        int left = size();
        Backoff backoff;
        while (left > 0) {
            bool got = false;
            {
                std::lock_guard<std::mutex> g(mpi_lock());
                reap_sends();
                if (auto st = comm_.iprobe(bm::any_source, tag_of(session_, Kind::bye))) {
                    (void)receive(comm_, *st);
                    --left;
                    got = true;
                } else if (auto r = comm_.iprobe(bm::any_source, tag_of(session_, Kind::result))) {
                    (void)receive(comm_, *r);  // a retired slot's late result
                    got = true;
                }
            }
            if (got) backoff.reset();
            else backoff.pause();
        }
        finish();
    }

    void end_all(bool /*kill*/) override {
        if (ended_) return;
        send_stop();
        finish();
    }

    void stop() override {}

private:
    struct Slot {
        int peer = 0;
        std::uint64_t chunk = 0;       // running (or about to): 0 idle
        std::uint64_t started_ns = 0;  // sent, or its predecessor's result came
        std::uint64_t queued = 0;      // sent ahead behind `chunk`: 0 none
        std::vector<std::byte> queued_msg;  // its bytes, to re-route if the slot is retired
        std::uint64_t last_ns = UINT64_MAX;  // how long its last chunk took (unknown: MAX)
        std::uint64_t freed_ns = 0;          // when it last became idle
        bool initializing = false;           // its initializer's result is not back yet
        bool retired = false;
    };
    struct Send {
        bm::request req;
        std::vector<std::byte> buf;
    };

    // Under mu_ and mpi_lock().
    void isend_locked(int peer, Kind kind, std::span<const std::byte> msg) {
        sends_.push_back(Send{{}, std::vector<std::byte>(msg.begin(), msg.end())});
        Send& s = sends_.back();
        char dummy = 0;
        s.req = comm_.isend(peer, tag_of(session_, kind),
                            s.buf.empty() ? &dummy : reinterpret_cast<const char*>(s.buf.data()),
                            static_cast<int>(s.buf.size()));
        reap_sends();
    }

    // Under mpi_lock(): frees the buffers of completed sends.
    void reap_sends() {
        for (auto it = sends_.begin(); it != sends_.end();) {
            if (it->req.test()) it = sends_.erase(it);
            else ++it;
        }
    }

    // Under mu_: the idle slot that became idle last (null: none).
    Slot* idle_slot_locked() {
        Slot* best = nullptr;
        for (auto& s : slots_)
            if (!s.retired && !s.initializing && s.chunk == 0 && (!best || s.freed_ns > best->freed_ns)) best = &s;
        return best;
    }

    // How wait_result polls for results. Short chunks (the last ones took
    // under 2 ms): the runtime's back-off, which spins 2 ms first. Long
    // ones: no spin, and sleeps of at most 200 us, so a result is seen at
    // most 0.2 ms late and the main process leaves the cores to the
    // workers (on a small machine its spin slowed fib(34) x 8 by 10-30%).
    Backoff waiting_backoff() const {
        std::lock_guard<std::mutex> g(mu_);
        return waiting_backoff_locked();
    }
    Backoff waiting_backoff_locked() const {
        bool long_chunks = false, any = false;
        for (auto& s : slots_) {
            if (s.retired || s.chunk == 0 || s.last_ns == UINT64_MAX) continue;
            any = true;
            long_chunks = s.last_ns >= kSendAheadBelowNs;
            if (!long_chunks) break;
        }
        if (any && long_chunks) return Backoff(0, 200'000);
        return Backoff();
    }

    // Under mu_: a chunk is out (a result will come).
    bool busy_locked() const {
        if (!orphans_.empty()) return true;
        for (auto& s : slots_)
            if (!s.retired && (s.chunk != 0 || s.initializing)) return true;
        return false;
    }

    // Under mu_ and mpi_lock(): chunks of retired slots to idle workers.
    void place_orphans_locked() {
        while (!orphans_.empty()) {
            Slot* s = idle_slot_locked();
            if (!s) return;
            TaskHeader h;
            std::memcpy(&h, orphans_.front().data(), sizeof h);
            s->chunk = h.chunk;
            s->started_ns = now_ns();
            isend_locked(s->peer, Kind::task, orphans_.front());
            orphans_.pop_front();
        }
    }

    // Receives one result of this session, if any, into ready_ (freeing its
    // slot first). True if it did.
    bool poll() {
        std::vector<std::byte> msg;
        std::optional<std::uint32_t> init_failed;  // the slot whose initializer threw
        {
            std::lock_guard<std::mutex> g(mu_);  // sends_ and slots_ (try_send may run meanwhile)
            std::lock_guard<std::mutex> m(mpi_lock());
            reap_sends();
            auto st = comm_.iprobe(bm::any_source, tag_of(session_, Kind::result));
            if (!st) {
                drain_stale_locked();
                return false;
            }
            msg = receive(comm_, *st);
            ResultHeader h;
            if (msg.size() >= sizeof h) std::memcpy(&h, msg.data(), sizeof h);
            if (h.chunk == kInitChunk) {
                init_failed = initialized_locked(st->source(), h, msg);
                ready_.push_back(std::move(msg));
                // (the events below, outside the locks: they call back in)
            }
            for (auto& s : slots_) {
                if (h.chunk == kInitChunk) break;
                if (s.peer != st->source()) continue;
                if (s.retired) return false;  // a late result of a retired rank: dropped
                if (s.chunk == h.chunk && h.chunk != 0) {
                    const std::uint64_t now = now_ns();
                    s.last_ns = now - s.started_ns;
                    s.chunk = s.queued;
                    s.started_ns = now;
                    s.queued = 0;
                    s.queued_msg.clear();
                    if (s.chunk == 0) s.freed_ns = now;
                }
            }
            place_orphans_locked();
            if (h.chunk != kInitChunk) ready_.push_back(std::move(msg));
        }
        if (init_failed) retired_by_initializer(*init_failed);
        return true;
    }

    // Under mu_ and mpi_lock(): the initializer's result from `peer`. Turns
    // `msg` into what the submitter gets: a nudge (chunk 0) if it ran, or the
    // slot's worker_died with a text saying why. Returns the slot if it threw.
    std::optional<std::uint32_t> initialized_locked(int peer, const ResultHeader& h, std::vector<std::byte>& msg) {
        const auto body = std::span<const std::byte>(msg).subspan(std::min(msg.size(), sizeof h));
        const bool ran = h.kind == ResultKind::outcomes && !body.empty() &&
                         static_cast<std::uint8_t>(body[0]) == mproc::detail::kItemValue;
        std::string why;  // empty: a nudge
        std::optional<std::uint32_t> failed;
        for (std::uint32_t i = 0; i < slots_.size() && !failed; ++i) {
            Slot& s = slots_[i];
            if (s.peer != peer || !s.initializing) continue;
            s.initializing = false;
            s.freed_ns = now_ns();
            if (ran || s.retired) break;
            s.retired = true;
            why = "MPI worker rank " + std::to_string(spawned_ ? s.peer + 1 : s.peer) + "'s initializer " +
                  initializer_failure(h, body);
            failed = i;
        }
        // (A result no slot waits for, a retired one's, is a nudge too.)
        const ResultHeader out = failed ? ResultHeader{0, ResultKind::worker_died, 1, peer, *failed}
                                        : ResultHeader{0, ResultKind::outcomes};
        msg.assign(reinterpret_cast<const std::byte*>(&out), reinterpret_cast<const std::byte*>(&out + 1));
        msg.insert(msg.end(), reinterpret_cast<const std::byte*>(why.data()),
                   reinterpret_cast<const std::byte*>(why.data() + why.size()));
        return failed;
    }

    // What the initializer's failed result says, as "raised <type>: <what>".
    static std::string initializer_failure(const ResultHeader& h, std::span<const std::byte> body) {
        try {
            std::exception_ptr e;
            if (h.kind == ResultKind::chunk_error) {
                e = mproc::detail::exception_from_bytes(body);
            } else {
                if (body.empty()) return "sent no result";
                mproc::detail::InBuf in(body.subspan(1));
                e = mproc::detail::decode_exception(in);
            }
            const auto t = mproc::detail::describe_exception(e);
            return "raised " + t.type + ": " + t.what;
        } catch (const std::exception& e) {
            return std::string("failed, and its error could not be read: ") + e.what();
        }
    }

    // Outside the locks: the slot is retired like end_worker's.
    void retired_by_initializer(std::uint32_t slot) {
        bool any_left = false;
        {
            std::lock_guard<std::mutex> g(mu_);
            for (auto& t : slots_) any_left = any_left || !t.retired;
        }
        if (!events_) return;
        (void)events_->replace(slot);
        if (!any_left)
            events_->replace_failed(slot, std::make_exception_ptr(BrokenProcessPool(
                                              "the initializer failed in every MPI worker rank of this pool")));
    }

    // Under mpi_lock(): messages of ended sessions on this communicator.
    void drain_stale_locked() {
        while (auto st = comm_.iprobe(bm::any_source, bm::any_tag)) {
            const int s = session_of(st->tag());
            if (s == 0 || session_open(s)) break;
            (void)receive(comm_, *st);
        }
    }

    void finish() {
        {
            std::lock_guard<std::mutex> g(mu_);
            if (ended_) return;
            ended_ = true;
        }
        // Buffers of sends still in flight must outlive them.
        Backoff backoff;
        for (;;) {
            {
                std::lock_guard<std::mutex> g(mu_);
                std::lock_guard<std::mutex> m(mpi_lock());
                reap_sends();
                if (sends_.empty()) break;
            }
            backoff.pause();
        }
        if (spawned_) release_workers(comm_);
        close_session(session_);
    }

    TransportEvents* events_ = nullptr;
    bm::communicator comm_;
    const bool spawned_;
    bool started_ = false;
    int session_ = 0;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    bool idle_waiting_ = false;  // wait_result sleeps with nothing out (try_send wakes it)
    std::vector<Slot> slots_;
    std::list<Send> sends_;
    std::deque<std::vector<std::byte>> orphans_;
    std::deque<std::vector<std::byte>> ready_;
    std::vector<std::byte> init_;  // the initializer's task message (empty: none)
    bool ended_ = false;
};

}  // namespace

int worker_count(int max_workers) {
    const int world = world_size();
    if (world > 1) return max_workers > 0 ? std::min(max_workers, world - 1) : world - 1;
    return max_workers > 0 ? max_workers : cpu_count();
}

std::shared_ptr<mproc::detail::WorkerTransport> make_transport(int max_workers, std::vector<std::byte> init) {
    require_main("mproc::mpi::MPIPoolExecutor");
    return std::make_shared<MpiTransport>(max_workers, std::move(init));
}

}  // namespace mproc::mpi::detail
