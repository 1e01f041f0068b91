// mproc::AsyncResult, mproc::IMapIterator and the options of pool work
// (MapOptions, TaskOptions): what Pool, ProcessPoolExecutor and the MPI
// executors hand back for work submitted to them (<mproc/pool.hpp>,
// <mproc/futures.hpp>, <mproc/mpi.hpp>).
//
// AsyncResult is Python's: get(timeout) re-throws the task's exception as
// its own type where it can (see <mproc/pool.hpp>), wait/ready/successful,
// then(callback, error_callback) — the callback has run by the time wait()
// or get() returns. IMapIterator is the lazy range imap, imap_unordered and
// executor map return; next(timeout) throws TimeoutError when nothing
// arrives in time. Both report completed() and total() counts.
//
// Thread safety: an AsyncResult may be waited on from several threads; an
// IMapIterator is consumed by one thread at a time. Blocking: get, wait,
// next and iteration wait for results (a worker's death ends the wait with
// BrokenProcessPool); everything else returns at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/detail/pool_core.hpp"
#include "mproc/detail/pool_jobs.hpp"
#include "mproc/errors.hpp"

namespace mproc {

/// Options of map, imap, imap_unordered, starmap and executor map.
struct MapOptions {
    /// Items per task message. 0: Python's default rule (executor map: 1).
    std::size_t chunksize = 0;
    /// 0: unbounded (inputs encoded at the call). Else at most this many
    /// chunks in flight (submitted, not yet all taken by the consumer);
    /// inputs are read lazily, as results are taken.
    std::size_t buffersize = 0;
    /// The whole map, from the call (Executor.map's timeout): TimeoutError
    /// from the iterator (from get() for map).
    Timeout timeout{};
    /// Beyond Python: a chunk that runs longer fails with TimeoutError and
    /// its worker is killed and replaced.
    Timeout task_timeout{};
    /// A progress line on stderr (a bar with rate and ETA on a terminal).
    bool progress = false;
};

/// Options of one task (apply_async, submit).
struct TaskOptions {
    /// Past this much running time the task fails with TimeoutError and its
    /// worker is killed and replaced.
    Timeout timeout{};
};

/// The result of apply_async / map_async: Python's AsyncResult.
template <class R>
class AsyncResult {
public:
    AsyncResult() = default;
    explicit AsyncResult(std::shared_ptr<detail::ResultState<R>> s,
                         std::shared_ptr<detail::Counts> counts = nullptr)
        : s_(std::move(s)), counts_(std::move(counts)) {
        s_->callbacks_first();
    }

    /// The result; re-throws the task's exception. TimeoutError if the
    /// timeout passes first.
    R get(Timeout timeout = std::nullopt) const {
        if (!s_->wait(timeout)) throw TimeoutError("mproc::AsyncResult::get: timed out");
        if (auto e = s_->error()) std::rethrow_exception(e);
        if constexpr (!std::is_void_v<R>) return s_->value();
    }
    /// False if the timeout passed first.
    bool wait(Timeout timeout = std::nullopt) const { return s_->wait(timeout); }
    bool ready() const { return s_->ready(); }
    /// ValueError if not ready.
    bool successful() const {
        if (!ready()) throw ValueError("mproc::AsyncResult::successful: the result is not ready");
        return !s_->error();
    }
    /// Progress: items finished so far, and in all (1 for a single task).
    std::size_t completed() const { return counts_ ? counts_->completed.load() : (ready() ? 1 : 0); }
    std::size_t total() const { return counts_ ? counts_->total.load() : 1; }
    /// Python's callback / error_callback: one of them runs in the parent
    /// when the result is ready (now, in this thread, if it already is).
    template <class Cb, class Eb = std::nullptr_t>
    const AsyncResult& then(Cb callback, Eb error_callback = nullptr) const {
        auto s = s_;
        s_->add_callback([s, callback = std::move(callback), error_callback = std::move(error_callback)]() mutable {
            (void)callback;  // either may go unused when it is nullptr
            (void)error_callback;
            if (auto e = s->error()) {
                if constexpr (!std::is_same_v<Eb, std::nullptr_t>) error_callback(e);
            } else if constexpr (std::is_void_v<R>) {
                if constexpr (!std::is_same_v<Cb, std::nullptr_t>) callback();
            } else {
                if constexpr (!std::is_same_v<Cb, std::nullptr_t>) callback(s->value());
            }
        });
        return *this;
    }

private:
    std::shared_ptr<detail::ResultState<R>> s_;
    std::shared_ptr<detail::Counts> counts_;
};

/// The lazy range imap / imap_unordered / executor map return: an input
/// range whose iteration blocks until the next result arrives, and
/// re-throws a failed item's exception when it is reached. Taking a result
/// feeds more input when the map is bounded (buffersize).
template <class R>
class IMapIterator {
public:
    using Clock = std::chrono::steady_clock;
    /// Encodes and submits the chunk starting at item `first`; returns its
    /// item count and whether the input ended with it (internal).
    using FeedOne = std::function<std::pair<std::uint32_t, bool>(std::uint64_t first)>;

    class iterator {
    public:
        using value_type = R;
        using difference_type = std::ptrdiff_t;
        iterator() = default;
        explicit iterator(IMapIterator* owner) : owner_(owner) { ++*this; }
        const R& operator*() const { return *cur_; }
        R& operator*() { return *cur_; }
        iterator& operator++() {
            cur_ = owner_->next(std::nullopt);
            if (!cur_) owner_ = nullptr;
            return *this;
        }
        void operator++(int) { ++*this; }
        bool operator==(std::default_sentinel_t) const { return owner_ == nullptr; }

    private:
        IMapIterator* owner_ = nullptr;
        std::optional<R> cur_;
    };

    IMapIterator(std::shared_ptr<detail::IMapJob<R>> job, FeedOne feed, std::size_t buffersize,
                 std::shared_ptr<void> keep_open, std::shared_ptr<detail::Counts> counts, Timeout timeout)
        : st_(std::make_shared<State>()) {
        st_->job = std::move(job);
        st_->feed = std::move(feed);
        st_->buffersize = buffersize;
        st_->keep_open = std::move(keep_open);
        st_->counts = std::move(counts);
        if (timeout) st_->deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(*timeout);
        top_up();
    }
    iterator begin() { return iterator(this); }
    std::default_sentinel_t end() { return {}; }
    /// Python's next(it): the next result, nullopt at the end; TimeoutError
    /// if none arrives within `timeout` (or the map's own timeout passes).
    std::optional<R> next(Timeout timeout = std::nullopt) {
        auto deadline = st_->deadline;
        if (timeout) {
            auto d = Clock::now() + std::chrono::duration_cast<Clock::duration>(*timeout);
            if (!deadline || d < *deadline) deadline = d;
        }
        std::optional<R> r;
        try {
            r = st_->job->next(deadline);
        } catch (...) {
            top_up();
            throw;
        }
        top_up();
        return r;
    }
    /// Progress: items finished so far, and in all (0 until a lazy input ends).
    std::size_t completed() const { return st_->counts->completed.load(); }
    std::size_t total() const { return st_->counts->total.load(); }
    /// All the remaining results, in this range's order.
    std::vector<R> to_vector() {
        std::vector<R> out;
        for (auto& x : *this) out.push_back(std::move(x));
        return out;
    }
    operator std::vector<R>() { return to_vector(); }  // NOLINT: `std::vector<R> v = ex.map(...)`

private:
    struct State {
        std::mutex mu;
        std::shared_ptr<detail::IMapJob<R>> job;
        FeedOne feed;
        std::size_t buffersize = 0;
        std::size_t chunks = 0;
        std::uint64_t items = 0;
        bool ended = false;
        std::shared_ptr<void> keep_open;
        std::shared_ptr<detail::Counts> counts;
        std::optional<Clock::time_point> deadline;
    };
    // Feeds chunks while fewer than buffersize are in flight (all of them
    // when unbounded).
    void top_up() {
        State& s = *st_;
        std::lock_guard<std::mutex> g(s.mu);
        while (!s.ended && (s.buffersize == 0 || s.chunks - s.job->chunks_taken() < s.buffersize)) {
            try {
                auto [n, last] = s.feed(s.items);
                s.items += n;
                if (n) ++s.chunks;
                if (last) s.ended = true;
            } catch (...) {
                // The pool is gone or was terminated: the rest fails.
                s.job->set_total(s.items + 1);
                s.job->on_failure(s.items, 1, std::current_exception());
                s.ended = true;
            }
        }
        if (s.ended) {
            s.feed = nullptr;  // drops the input (and its view)
            s.keep_open.reset();
        }
    }
    std::shared_ptr<State> st_;
};

}  // namespace mproc
