// mproc::detail — the jobs the one submitter finishes (a single task, a
// whole map, a lazy imap), the one chunk encoder, and the progress line.
// Not a public API; see pool.hpp and futures.hpp.
//
// A chunk is encoded once, straight into its task message (header,
// function reference, items); the submitter copies it into the transport
// and the worker decodes the items from there.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "mproc/detail/pool_core.hpp"
#include "mproc/detail/pool_messages.hpp"

namespace mproc::detail {

template <class R>
using stored_t = std::conditional_t<std::is_void_v<R>, std::monostate, R>;

/// Draws the `{.progress = true}` line on stderr (lib/pool/progress.cpp): a
/// bar with rate and ETA on a terminal, a plain line every few seconds
/// otherwise. Thread safe.
class ProgressLine {
public:
    explicit ProgressLine(std::size_t total);  // 0: unknown (a lazy map)
    ~ProgressLine();
    ProgressLine(const ProgressLine&) = delete;
    ProgressLine& operator=(const ProgressLine&) = delete;
    void set_total(std::size_t total);
    void advance(std::size_t n);
    void finish();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// Completed and total counts of a map (AsyncResult::completed/total),
/// and the optional progress line.
struct Counts {
    std::atomic<std::size_t> completed{0};
    std::atomic<std::size_t> total{0};
    std::unique_ptr<ProgressLine> line;
    void advance(std::size_t n) {
        std::size_t c = completed.fetch_add(n) + n;
        if (line) {
            line->advance(n);
            if (c == total.load() && total.load() != 0) line->finish();
        }
    }
};

/// Which task a chunk runs: task_entry<F, Item, Spread> and F.
struct TaskSpec {
    TaskEntry entry;
    AnyFunction fn;
    RefMaker make_ref;
};
template <class F, class Item, bool Spread>
TaskSpec task_spec(const F& f) {
    return TaskSpec{&task_entry<F, Item, Spread>, task_function(f), &task_ref<F, Item, Spread>};
}

/// The one chunk encoder: up to `chunksize` items from [it, end) into one
/// task message. count 0 when the input was already at its end.
template <class Item, class It, class End>
Chunk encode_chunk(std::span<const std::byte> ref, It& it, const End& end, std::size_t chunksize,
                   std::shared_ptr<Job> job, std::uint64_t first, Timeout timeout) {
    const std::size_t hint = sizeof(TaskHeader) + ref.size() +
                             (is_bitwise_v<Item> ? chunksize * sizeof(Item) : 64 * chunksize);
    VectorOutBuf out(hint);
    TaskHeader h{0, 0, static_cast<std::uint32_t>(ref.size())};
    out.write(&h, sizeof h);
    out.write(ref.data(), ref.size());
    std::uint32_t n = 0;
    for (; n < chunksize && it != end; ++n, ++it) {
        if constexpr (std::is_same_v<std::decay_t<decltype(*it)>, Item>) put_item(out, *it);
        else put_item(out, Item(*it));
    }
    return Chunk{std::move(job), first, n, out.take(), timeout};
}

/// One task: apply_async, submit.
template <class R>
class SingleJob final : public Job {
public:
    explicit SingleJob(std::shared_ptr<ResultState<R>> s, bool future) : s_(std::move(s)), future_(future) {}
    void on_chunk(std::uint64_t, std::uint32_t, std::span<const std::byte> bytes) override {
        InBuf in(bytes);
        std::optional<stored_t<R>> v;
        std::exception_ptr e;
        if constexpr (std::is_void_v<R>) e = read_outcome<void>(in, nullptr), v.emplace();
        else e = read_outcome<R>(in, &v);
        if (e) s_->set_exception(e);
        else s_->set_value(std::move(*v));
    }
    void on_failure(std::uint64_t, std::uint32_t, std::exception_ptr e) override {
        if (is_cancelled(e) && s_->cancel(true)) return;
        s_->set_exception(e);
    }
    bool on_dispatch(std::uint64_t) override { return !future_ || s_->set_running(); }

private:
    static bool is_cancelled(std::exception_ptr e) {
        try {
            std::rethrow_exception(e);
        } catch (const CancelledError&) {
            return true;
        } catch (...) {
            return false;
        }
    }
    std::shared_ptr<ResultState<R>> s_;
    bool future_;
};

/// map / starmap / map_async: all items, in order; the first error wins.
template <class R>
class MapJob final : public Job {
public:
    MapJob(std::shared_ptr<ResultState<std::vector<stored_t<R>>>> s, std::size_t n, std::shared_ptr<Counts> counts)
        : s_(std::move(s)), counts_(std::move(counts)), values_(n), left_(n) {
        if (n == 0) s_->set_value({});
    }
    void on_chunk(std::uint64_t first, std::uint32_t count, std::span<const std::byte> bytes) override {
        InBuf in(bytes);
        for (std::uint32_t i = 0; i < count; ++i) {
            std::exception_ptr e;
            if constexpr (std::is_void_v<R>) e = read_outcome<void>(in, nullptr), values_[first + i].emplace();
            else e = read_outcome<R>(in, &values_[first + i]);
            if (e) return on_failure(first, count, e);
        }
        left_ -= count;
        counts_->advance(count);
        if (left_ == 0 && !failed_) {
            std::vector<stored_t<R>> out;
            out.reserve(values_.size());
            for (auto& v : values_) out.push_back(std::move(*v));
            values_.clear();
            s_->set_value(std::move(out));
        }
    }
    void on_failure(std::uint64_t, std::uint32_t, std::exception_ptr e) override {
        if (failed_) return;
        failed_ = true;
        if (counts_->line) counts_->line->finish();
        s_->set_exception(e);
    }

private:
    std::shared_ptr<ResultState<std::vector<stored_t<R>>>> s_;
    std::shared_ptr<Counts> counts_;
    std::vector<std::optional<stored_t<R>>> values_;
    std::size_t left_;
    bool failed_ = false;
};

/// imap / imap_unordered / executor map: items as they arrive; the
/// consumer takes them with next(), which also feeds more input (see
/// IMapIterator).
template <class R>
class IMapJob final : public Job {
public:
    IMapJob(bool ordered, std::size_t chunksize, std::shared_ptr<Counts> counts)
        : ordered_(ordered), chunksize_(chunksize), counts_(std::move(counts)) {}
    void on_chunk(std::uint64_t first, std::uint32_t count, std::span<const std::byte> bytes) override {
        InBuf in(bytes);
        std::vector<Entry> got;
        for (std::uint32_t i = 0; i < count; ++i) {
            std::optional<stored_t<R>> v;
            std::exception_ptr e;
            try {
                if constexpr (std::is_void_v<R>) e = read_outcome<void>(in, nullptr), v.emplace();
                else e = read_outcome<R>(in, &v);
            } catch (...) {
                for (; i < count; ++i) got.push_back(Entry{first + i, std::nullopt, std::current_exception()});
                break;
            }
            got.push_back(Entry{first + i, std::move(v), e});
        }
        add(std::move(got));
    }
    void on_failure(std::uint64_t first, std::uint32_t count, std::exception_ptr e) override {
        std::vector<Entry> got;
        for (std::uint32_t i = 0; i < count; ++i) got.push_back(Entry{first + i, std::nullopt, e});
        add(std::move(got));
    }
    /// The input ended after `n` items.
    void set_total(std::size_t n) {
        {
            std::lock_guard<std::mutex> g(mu_);
            total_ = n;
        }
        counts_->total = n;
        if (counts_->line) {
            counts_->line->set_total(n);
            if (counts_->completed.load() == n) counts_->line->finish();
        }
        cv_.notify_all();
    }
    /// Chunks whose every item the consumer has taken.
    std::size_t chunks_taken() const {
        std::lock_guard<std::mutex> g(mu_);
        return chunks_taken_;
    }
    /// Blocks for the next item until `deadline`; nullopt at the end.
    /// TimeoutError past the deadline; re-throws an item's error.
    std::optional<stored_t<R>> next(std::optional<std::chrono::steady_clock::time_point> deadline) {
        std::unique_lock<std::mutex> g(mu_);
        auto ready = [&] {
            if (total_ && taken_ == *total_) return true;
            return ordered_ ? ready_.count(taken_) != 0 : !ready_.empty();
        };
        if (!deadline) cv_.wait(g, ready);
        else if (!cv_.wait_until(g, *deadline, ready))
            throw TimeoutError("mproc: no result arrived in time (IMapIterator::next / the map's timeout)");
        if (total_ && taken_ == *total_) return std::nullopt;
        auto it = ordered_ ? ready_.find(taken_) : ready_.begin();
        Entry e = std::move(it->second);
        ready_.erase(it);
        ++taken_;
        const std::uint64_t c = e.index / chunksize_;
        if (++per_chunk_[c] == chunk_size(c)) {
            per_chunk_.erase(c);
            ++chunks_taken_;
        }
        g.unlock();
        if (e.error) std::rethrow_exception(e.error);
        return std::move(e.value);
    }

private:
    struct Entry {
        std::uint64_t index = 0;
        std::optional<stored_t<R>> value;
        std::exception_ptr error;
    };
    // Items in chunk c (the last one may be short). Under mu_.
    std::size_t chunk_size(std::uint64_t c) const {
        if (!total_) return chunksize_;
        return std::min(chunksize_, *total_ - static_cast<std::size_t>(c) * chunksize_);
    }
    void add(std::vector<Entry> got) {
        {
            std::lock_guard<std::mutex> g(mu_);
            for (auto& e : got) {
                auto key = ordered_ ? e.index : arrival_++;
                ready_.emplace(key, std::move(e));
            }
        }
        counts_->advance(got.size());
        cv_.notify_all();
    }
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::map<std::uint64_t, Entry> ready_;
    std::unordered_map<std::uint64_t, std::size_t> per_chunk_;
    std::optional<std::size_t> total_;
    std::size_t taken_ = 0;
    std::size_t chunks_taken_ = 0;
    std::uint64_t arrival_ = 0;
    bool ordered_;
    std::size_t chunksize_;
    std::shared_ptr<Counts> counts_;
};

}  // namespace mproc::detail
