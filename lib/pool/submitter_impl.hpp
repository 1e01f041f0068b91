// PoolCore::Impl — the one submitter's state and its result side (see
// submitter.cpp for the threads, include/mproc/detail/pool_core.hpp for the
// design in short). Internal to lib/pool.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <map>
#include <set>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>

#include "mproc/detail/exception_codec.hpp"
#include "mproc/detail/pool_core.hpp"
#include "os/os.hpp"
#include "os/process.hpp"
#include "pool/messages.hpp"
#include "pool/worker_transport.hpp"

namespace mproc::detail {

// A sanity bound, far above any core count: each local worker costs an fd
// (its sentinel) in the watcher's poll set and a process.
inline constexpr int kMaxWorkers = 4096;
// How often the timer looks again for a doomed or timed chunk that no
// worker has claimed yet (it is still in the ring): the most a per-task
// timeout can be late by, beyond the scheduler's own lateness.
inline constexpr std::uint64_t kRecheckNs = 5'000'000;

/// Names how a worker ended: "a worker process (pid N) was killed by signal 9 (SIGKILL)".
std::string death_message(int pid, int code);

/// True while this thread holds ResultPump::mu (handles results).
bool& handling_results() noexcept;

struct HandlingResults {
    bool prev = handling_results();
    HandlingResults() { handling_results() = true; }
    ~HandlingResults() { handling_results() = prev; }
};

/// See pool_core.hpp. `ctx` is the pool's Impl while it lives.
struct ResultPump {
    std::mutex mu;       // one result handled at a time
    // Guards ctx against the pool's destruction (exclusive there, shared by
    // pumping waiters and interrupting cancels: a cancel from a callback,
    // which runs under mu, must not wait for a waiter that waits for mu).
    std::shared_mutex live_mu;
    void* ctx = nullptr;
    bool (*pump_one)(void*) = nullptr;
    bool (*interrupt)(void*, const Job*, std::exception_ptr) = nullptr;
    void (*feeder_done)(void*) = nullptr;
};

struct PoolCore::Impl final : TransportEvents {
    struct InFlight {
        std::shared_ptr<Job> job;
        std::uint64_t first = 0;
        std::uint32_t count = 0;
        Timeout timeout;
        std::vector<std::byte> msg;  // kept to re-queue it (see on worker_died)
        bool doomed = false;         // already failed; its worker is to be ended
        bool ended = false;          // ... and was
    };
    struct Queued {
        std::uint64_t id = 0;
        std::shared_ptr<Job> job;
        std::uint64_t first = 0;
        std::uint32_t count = 0;
        std::vector<std::byte> msg;
        Timeout timeout;
    };
    struct Failure {
        std::shared_ptr<Job> job;
        std::uint64_t first;
        std::uint32_t count;
        std::exception_ptr e;
    };
    enum class State { running, closed, stopping, terminated };

    PoolConfig cfg;
    std::shared_ptr<WorkerTransport> transport;
    std::size_t window = 0;

    mutable std::mutex mu;
    std::condition_variable idle_cv;
    std::deque<Queued> backlog;
    std::unordered_map<std::uint64_t, InFlight> inflight;
    std::size_t watched = 0;  // in-flight chunks with a timeout or doomed
    std::set<std::uint32_t> ending;  // slots whose worker we ended ourselves
    std::size_t feeders = 0;         // keep_open() tokens alive
    std::uint64_t next_chunk = 1;
    std::map<std::pair<TaskEntry, AnyFunction>, std::vector<std::byte>> refs;
    State state = State::running;
    bool broken = false;
    std::string broken_reason;

    std::condition_variable timer_cv;
    bool timer_stop = false;
    bool timer_parked = false;  // the timer waits with no deadline
    std::thread result_thread, timer_thread;
    std::shared_ptr<ResultPump> pump = std::make_shared<ResultPump>();
    bool threads_running = false;

    explicit Impl(PoolConfig c) : cfg(std::move(c)) {}

    // ---- transport events (the transport's thread) -------------------------

    bool replace(std::uint32_t) override {
        std::lock_guard<std::mutex> g(mu);
        return !broken && (state == State::running || state == State::closed);
    }
    void replace_failed(std::uint32_t, std::exception_ptr e) override {
        std::vector<Failure> fs;
        {
            std::lock_guard<std::mutex> g(mu);
            if (!transport->worker_ids().empty() || broken) return;
            const auto why = describe_exception(e);
            break_locked("the pool could not start a worker process" + (why.what.empty() ? "" : ": " + why.what), fs);
        }
        deliver(fs);
    }

    // ---- dispatch ----------------------------------------------------------

    // Moves chunks from the backlog to the transport while the window has
    // room. Under mu.
    void dispatch_locked() {
        // The timer looks again within kRecheckNs while it watches a chunk
        // that no worker has claimed yet, so wake it only when it is parked
        // (a notify per task cost a context switch per task).
        const std::size_t watched_before = watched;
        while (!backlog.empty() && inflight.size() < window) {
            Queued& q = backlog.front();
            if (!q.job->on_dispatch(q.first)) {
                backlog.pop_front();
                continue;
            }
            if (!transport->try_send(q.msg)) break;  // no room: the next result retries
            if (q.timeout) ++watched;
            inflight.emplace(q.id, InFlight{std::move(q.job), q.first, q.count, q.timeout, std::move(q.msg)});
            backlog.pop_front();
        }
        if (timer_parked && watched != watched_before) timer_cv.notify_all();
        if (backlog.empty() && inflight.empty()) idle_cv.notify_all();
    }

    // Takes every unfinished chunk out of the bookkeeping. Under mu.
    void take_all_locked(std::vector<Failure>& out, std::exception_ptr e) {
        for (auto& [id, f] : inflight)
            if (!f.doomed) out.push_back({std::move(f.job), f.first, f.count, e});
        inflight.clear();
        watched = 0;
        for (auto& q : backlog) out.push_back({std::move(q.job), q.first, q.count, e});
        backlog.clear();
        idle_cv.notify_all();
    }

    void break_locked(const std::string& reason, std::vector<Failure>& fs) {
        broken = true;
        broken_reason = reason;
        take_all_locked(fs, std::make_exception_ptr(BrokenProcessPool(reason)));
    }

    // Runs the jobs' failure callbacks, one handler at a time.
    void deliver(std::vector<Failure>& fs) {
        if (fs.empty()) return;
        const bool nested = handling_results();  // this thread already holds pump->mu
        std::unique_lock<std::mutex> one(pump->mu, std::defer_lock);
        if (!nested) one.lock();
        handling_results() = true;
        for (auto& f : fs) {
            try {
                f.job->on_failure(f.first, f.count, f.e);
            } catch (...) {
            }
        }
        fs.clear();
        handling_results() = nested;
    }

    // ---- results -----------------------------------------------------------

    struct Sink final : ResultSink {
        Impl& m;
        bool leave_stop;
        bool stopped = false;
        Sink(Impl& i, bool leave) : m(i), leave_stop(leave) {}
        bool handle(std::span<const std::byte> b) override {
            ResultHeader h;
            if (b.size() < sizeof h) return true;
            std::memcpy(&h, b.data(), sizeof h);
            if (h.kind == ResultKind::stop) {
                stopped = true;
                return !leave_stop;
            }
            m.handle_result(h, b.subspan(sizeof h));
            return true;
        }
    };

    void result_loop() {
        for (;;) {
            // Wait without taking the result, so a thread waiting for its
            // result can take results meanwhile (pump_one).
            transport->wait_result(std::nullopt);
            std::lock_guard<std::mutex> one_at_a_time(pump->mu);
            HandlingResults h;
            Sink sink(*this, false);
            transport->take_result(sink);
            if (sink.stopped) return;
        }
    }

    /// Handles one result if no one else is and one is there (a waiter's
    /// spin). False if it did not.
    bool pump_one() {
        std::unique_lock<std::mutex> g(pump->mu, std::try_to_lock);
        if (!g) return false;
        HandlingResults h;
        Sink sink(*this, true);
        return transport->take_result(sink) && !sink.stopped;
    }

    void handle_result(const ResultHeader& h, std::span<const std::byte> body) {
        std::vector<Failure> failures;
        std::optional<InFlight> done;
        bool end_all = false;
        // A worker_died may say why in a text of the transport's (MPI:
        // its initializer threw); otherwise its exit status does.
        const std::string died =
            h.kind != ResultKind::worker_died ? std::string()
            : body.empty()                    ? death_message(h.pid, h.code)
                                              : std::string(reinterpret_cast<const char*>(body.data()), body.size());
        {
            std::lock_guard<std::mutex> g(mu);
            if (h.chunk != 0) {
                auto it = inflight.find(h.chunk);
                if (it != inflight.end()) {
                    done = std::move(it->second);
                    inflight.erase(it);
                    if (done->timeout || done->doomed) --watched;
                }
            }
            if (done && done->doomed) done.reset();  // failed already
            if (h.kind == ResultKind::worker_died) {
                const bool ours = ending.erase(h.slot) > 0;
                if (ours) {
                    // We ended this worker for another chunk, which it had
                    // just finished: this one had barely started. Again.
                    if (done) {
                        backlog.push_front(Queued{h.chunk, std::move(done->job), done->first, done->count,
                                                  std::move(done->msg), done->timeout});
                        done.reset();
                    }
                } else if (cfg.break_on_death && !broken && state != State::terminated && (done || h.code != 0)) {
                    // (Python's words for a death; a transport's own text says
                    // what happened instead.)
                    std::string reason =
                        body.empty() ? "A process in the process pool was terminated abruptly while the future "
                                       "was running or pending: " + died
                                     : "The process pool is broken: " + died;
                    auto e = std::make_exception_ptr(BrokenProcessPool(reason));
                    if (done) failures.push_back({std::move(done->job), done->first, done->count, e});
                    done.reset();
                    break_locked(reason, failures);
                    end_all = true;
                }
            }
            if (!broken && state != State::terminated) dispatch_locked();
        }
        if (end_all)
            for (int i = 0; i < transport->size(); ++i) transport->end_worker(static_cast<std::uint32_t>(i), true);
        if (done) {
            try {
                if (h.kind == ResultKind::outcomes) {
                    done->job->on_chunk(done->first, done->count, body);
                } else if (h.kind == ResultKind::chunk_error) {
                    InBuf in(body);
                    done->job->on_failure(done->first, done->count, decode_exception(in));
                } else {
                    done->job->on_failure(done->first, done->count,
                                          std::make_exception_ptr(BrokenProcessPool(
                                              died + " while running this task; the pool replaced it")));
                }
            } catch (...) {
                try {
                    done->job->on_failure(done->first, done->count, std::current_exception());
                } catch (...) {
                }
            }
        }
        deliver(failures);
    }

    void post_stop() {
        ResultHeader h{0, ResultKind::stop};
        transport->post_result(std::as_bytes(std::span(&h, 1)));
    }

    // ---- timer: per-task timeouts, interrupting cancels (submitter_timer.cpp)

    void timer_loop();
    bool interrupt(const Job* job, std::exception_ptr e);

    // Stops the submitter's threads (not from one of them).
    void stop_threads() {
        if (!threads_running) return;
        threads_running = false;
        {
            std::lock_guard<std::mutex> g(mu);
            timer_stop = true;
        }
        timer_cv.notify_all();
        timer_thread.join();
        post_stop();
        result_thread.join();
    }

    void teardown(bool kill, const char* reason) {
        std::vector<Failure> fs;
        {
            std::lock_guard<std::mutex> g(mu);
            state = State::terminated;
        }
        transport->end_all(kill);
        stop_threads();
        {
            std::lock_guard<std::mutex> g(mu);
            take_all_locked(fs, std::make_exception_ptr(BrokenProcessPool(reason)));
        }
        deliver(fs);
    }
};


}  // namespace mproc::detail
