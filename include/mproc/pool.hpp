// mproc::Pool — Python's multiprocessing.Pool: a fixed set of worker
// processes that run tasks.
//
//   mproc::Pool pool(4);
//   std::vector<int> r = pool.map(square, std::vector<int>{0, 1, 2, 3});
//   for (int x : pool.imap_unordered(square, inputs)) ...
//   auto ar = pool.apply_async(square, 7);  ar.get(std::chrono::seconds(1));
//
// Tasks are functions or capture-less lambdas (sent to workers by
// reference, as pickle sends functions by name; anything else is a
// compile-time error) with serializable arguments and results. Handles
// (Queue, Lock, Array, ...) may be arguments when the workers already hold
// them: with fork, handles made before the Pool; with spawn or forkserver,
// handles passed in `initargs` (as Python shares synchronized objects with
// pool workers by inheritance). Inputs are encoded when submitted; each
// worker takes `chunksize` items at a time.
//
// A task's exception is re-thrown by get() (standard types as themselves,
// others as RemoteError). A worker that dies mid-task (kill -9, abort,
// segfault) fails the items it had taken with BrokenProcessPool naming the
// signal; the Pool starts a replacement and carries on. Nothing hangs.
// Callbacks run in the parent, on the pool's result thread: keep them short.
//
// Thread safety: a Pool may be used from several threads at once. Blocking:
// map, starmap, apply, join, AsyncResult::get/wait and imap iteration wait
// for results; everything else returns at once. The destructor is
// terminate(), as leaving Python's `with Pool() as pool:` block is: call
// close() and join() first to let queued work finish.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/detail/pool_core.hpp"
#include "mproc/errors.hpp"
#include "mproc/process.hpp"

namespace mproc {

namespace detail {
template <class F>
struct fn_params;
template <class R, class... A>
struct fn_params<R (*)(A...)> {
    using type = std::tuple<std::decay_t<A>...>;
};
template <class R, class... A>
struct fn_params<R (*)(A...) noexcept> {
    using type = std::tuple<std::decay_t<A>...>;
};
template <class F>
auto as_function_pointer(const F& f) {
    if constexpr (std::is_pointer_v<F>) return f;
    else return +f;
}
}  // namespace detail

/// Python's initargs: the initializer's arguments, by value. Their types
/// must be the initializer's parameter types (after decay).
class InitArgs {
public:
    InitArgs() = default;
    template <class... A>
    explicit InitArgs(A&&... a)
        : value_(std::make_shared<std::tuple<std::decay_t<A>...>>(std::forward<A>(a)...)),
          type_(&typeid(std::tuple<std::decay_t<A>...>)) {}

    const std::shared_ptr<void>& value() const noexcept { return value_; }
    const std::type_info& type() const noexcept { return type_ ? *type_ : typeid(std::tuple<>); }

private:
    std::shared_ptr<void> value_;
    const std::type_info* type_ = nullptr;
};

/// Python's initializer: a function or capture-less lambda each worker
/// calls once, with `initargs`, before its first task.
class PoolInitializer {
public:
    PoolInitializer() = default;
    template <class F>
        requires(!std::is_same_v<std::decay_t<F>, PoolInitializer> && !std::is_same_v<std::decay_t<F>, std::nullptr_t>)
    PoolInitializer(F f) {  // NOLINT: implicit, as `.initializer = init_fn` reads
        detail::check_pool_callable<std::decay_t<F>>();
        using Fp = decltype(detail::as_function_pointer(f));
        using Params = typename detail::fn_params<Fp>::type;
        Fp fp = detail::as_function_pointer(f);
        make_ = [fp](const InitArgs& args) -> detail::WorkerFactory {
            if (args.type() != typeid(Params))
                throw Error("mproc::Pool: initargs do not match the initializer's parameters (give "
                            "exactly its parameter types, by value)");
            std::shared_ptr<void> holder = args.value();
            auto* params = static_cast<Params*>(holder.get());
            if (!params && std::tuple_size_v<Params> != 0)
                throw Error("mproc::Pool: the initializer needs initargs");
            return [fp, holder, params](const detail::PoolChannel& t, const detail::PoolChannel& r,
                                        const Array<std::uint64_t>& s, std::uint32_t i, std::uint64_t m) {
                auto make = [&](const auto&... p) {
                    return Process(&detail::pool_worker_entry<Fp, std::decay_t<decltype(p)>...>, t, r, s,
                                   i, m, fp, p...);
                };
                if constexpr (std::tuple_size_v<Params> == 0) return make();
                else return std::apply(make, *params);
            };
        };
    }

    /// The worker factory for these arguments (internal).
    detail::WorkerFactory factory(const InitArgs& args) const {
        if (make_) return make_(args);
        return [](const detail::PoolChannel& t, const detail::PoolChannel& r, const Array<std::uint64_t>& s,
                  std::uint32_t i, std::uint64_t m) {
            return Process(&detail::pool_worker_entry<void (*)()>, t, r, s, i, m,
                           static_cast<void (*)()>(nullptr));
        };
    }

private:
    std::function<detail::WorkerFactory(const InitArgs&)> make_;
};

struct PoolOptions {
    /// 0: cpu_count().
    int processes = 0;
    PoolInitializer initializer{};
    InitArgs initargs{};
    /// Chunks (Python: tasks) a worker runs before it is replaced; 0: no limit.
    std::uint64_t maxtasksperchild = 0;
    /// nullopt: get_start_method().
    std::optional<StartMethod> start_method{};
};

namespace detail {
inline WorkerFactory daemon_factory(WorkerFactory f, StartMethod m) {
    return [f = std::move(f), m](const PoolChannel& t, const PoolChannel& r, const Array<std::uint64_t>& s,
                                 std::uint32_t i, std::uint64_t mt) {
        Process p = f(t, r, s, i, mt);
        p.daemon(true).start_method(m).name("PoolWorker-" + std::to_string(i + 1));
        return p;
    };
}
}  // namespace detail

/// The result of apply_async / map_async: Python's AsyncResult.
template <class R>
class AsyncResult {
public:
    AsyncResult() = default;
    explicit AsyncResult(std::shared_ptr<detail::ResultState<R>> s) : s_(std::move(s)) {}

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
    /// Python's callback / error_callback: one of them runs in the parent
    /// when the result is ready (now, in this thread, if it already is).
    template <class Cb, class Eb = std::nullptr_t>
    const AsyncResult& then(Cb callback, Eb error_callback = nullptr) const {
        auto s = s_;
        s_->add_callback([s, callback = std::move(callback), error_callback = std::move(error_callback)]() mutable {
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
};

namespace detail {

template <class R>
using stored_t = std::conditional_t<std::is_void_v<R>, std::monostate, R>;

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
        if (future_ && is_cancelled(e)) s_->cancel();
        else s_->set_exception(e);
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
    MapJob(std::shared_ptr<ResultState<std::vector<stored_t<R>>>> s, std::size_t n)
        : s_(std::move(s)), values_(n), left_(n) {
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
        s_->set_exception(e);
    }

private:
    std::shared_ptr<ResultState<std::vector<stored_t<R>>>> s_;
    std::vector<std::optional<stored_t<R>>> values_;
    std::size_t left_;
    bool failed_ = false;
};

/// imap / imap_unordered: items as they arrive.
template <class R>
class IMapJob final : public Job {
public:
    IMapJob(std::size_t n, bool ordered) : n_(n), ordered_(ordered) {}
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
    /// Blocks for the next item; nullopt at the end. Re-throws an item's error.
    std::optional<stored_t<R>> next() {
        std::unique_lock<std::mutex> g(mu_);
        if (taken_ == n_) return std::nullopt;
        Entry e;
        if (ordered_) {
            cv_.wait(g, [&] { return ready_.count(taken_) != 0; });
            auto it = ready_.find(taken_);
            e = std::move(it->second);
            ready_.erase(it);
        } else {
            cv_.wait(g, [&] { return !ready_.empty(); });
            auto it = ready_.begin();
            e = std::move(it->second);
            ready_.erase(it);
        }
        ++taken_;
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
    void add(std::vector<Entry> got) {
        {
            std::lock_guard<std::mutex> g(mu_);
            for (auto& e : got) {
                auto key = ordered_ ? e.index : arrival_++;
                ready_.emplace(key, std::move(e));
            }
        }
        cv_.notify_all();
    }
    std::mutex mu_;
    std::condition_variable cv_;
    std::map<std::uint64_t, Entry> ready_;
    std::size_t n_;
    std::size_t taken_ = 0;
    std::uint64_t arrival_ = 0;
    bool ordered_;
};

}  // namespace detail

/// The lazy range imap / imap_unordered return: an input range whose
/// iteration blocks until the next result arrives, and re-throws a failed
/// item's exception when it is reached.
template <class R>
class IMapIterator {
public:
    class iterator {
    public:
        using value_type = R;
        using difference_type = std::ptrdiff_t;
        iterator() = default;
        explicit iterator(IMapIterator* owner) : owner_(owner) { ++*this; }
        const R& operator*() const { return *cur_; }
        R& operator*() { return *cur_; }
        iterator& operator++() {
            cur_ = owner_->job_->next();
            if (!cur_) owner_ = nullptr;
            return *this;
        }
        void operator++(int) { ++*this; }
        bool operator==(std::default_sentinel_t) const { return owner_ == nullptr; }

    private:
        IMapIterator* owner_ = nullptr;
        std::optional<R> cur_;
    };
    explicit IMapIterator(std::shared_ptr<detail::IMapJob<R>> job) : job_(std::move(job)) {}
    iterator begin() { return iterator(this); }
    std::default_sentinel_t end() { return {}; }
    /// Python's next(it, timeout)-less form: the next result, nullopt at the end.
    std::optional<R> next() { return job_->next(); }

private:
    std::shared_ptr<detail::IMapJob<R>> job_;
};

class Pool {
public:
    /// Pool(processes): cpu_count() workers when 0.
    explicit Pool(int processes = 0) : Pool(options_for(processes)) {}
    explicit Pool(PoolOptions opts) {
        int n = opts.processes > 0 ? opts.processes : cpu_count();
        detail::PoolConfig cfg;
        cfg.processes = n;
        cfg.maxtasks = opts.maxtasksperchild;
        cfg.factory = detail::daemon_factory(opts.initializer.factory(opts.initargs),
                                             opts.start_method.value_or(get_start_method()));
        core_ = std::make_unique<detail::PoolCore>(std::move(cfg));
    }
    ~Pool() = default;  // PoolCore's destructor terminates
    Pool(const Pool&) = delete;
    Pool& operator=(const Pool&) = delete;

    /// Python's map: f applied to every item, in order.
    template <class F, class Range>
    auto map(F f, const Range& inputs, std::size_t chunksize = 0) {
        return map_async(f, inputs, chunksize).get();
    }
    template <class F, class Range>
    auto map_async(F f, const Range& inputs, std::size_t chunksize = 0) {
        using Item = std::decay_t<std::ranges::range_value_t<Range>>;
        return submit_map<F, Item, false>(f, inputs, chunksize);
    }
    /// Python's starmap: each item is a tuple of arguments.
    template <class F, class Range>
    auto starmap(F f, const Range& inputs, std::size_t chunksize = 0) {
        return starmap_async(f, inputs, chunksize).get();
    }
    template <class F, class Range>
    auto starmap_async(F f, const Range& inputs, std::size_t chunksize = 0) {
        using Item = std::decay_t<std::ranges::range_value_t<Range>>;
        return submit_map<F, Item, true>(f, inputs, chunksize);
    }
    /// Lazy, ordered. chunksize 0 means 1, as in Python.
    template <class F, class Range>
    auto imap(F f, const Range& inputs, std::size_t chunksize = 1) {
        return submit_imap<F>(f, inputs, chunksize ? chunksize : 1, true);
    }
    /// Lazy, in completion order.
    template <class F, class Range>
    auto imap_unordered(F f, const Range& inputs, std::size_t chunksize = 1) {
        return submit_imap<F>(f, inputs, chunksize ? chunksize : 1, false);
    }
    /// Python's apply: f(args...) in a worker; blocks.
    template <class F, class... A>
    auto apply(F f, A&&... args) {
        return apply_async(f, std::forward<A>(args)...).get();
    }
    template <class F, class... A>
    auto apply_async(F f, A&&... args) {
        using Item = std::tuple<std::decay_t<A>...>;
        using R = std::decay_t<detail::task_result_t<F, Item, true>>;
        detail::check_pool_callable<F>();
        auto s = std::make_shared<detail::ResultState<R>>();
        s->set_pump(core_->pump());
        detail::VectorOutBuf out(64);
        detail::put_item(out, Item(std::forward<A>(args)...));
        std::vector<detail::Chunk> chunks;
        chunks.push_back(detail::Chunk{std::make_shared<detail::SingleJob<R>>(s, false), 0, 1, out.take()});
        core_->submit(&detail::task_entry<F, Item, true>, detail::task_function(f),
                      &detail::task_ref<F, Item, true>, std::move(chunks));
        return AsyncResult<R>(std::move(s));
    }

    /// No more tasks; workers exit when the queued work is done.
    void close() { core_->close(); }
    /// After close() or terminate(): waits for the workers to exit.
    void join() { core_->join(); }
    /// Kills the workers now; unfinished results fail with BrokenProcessPool.
    void terminate() { core_->terminate(); }

    int processes() const noexcept { return core_->processes(); }
    /// The live workers' pids (for tests and monitoring).
    std::vector<int> worker_pids() const { return core_->worker_pids(); }

private:
    static PoolOptions options_for(int processes) {
        PoolOptions o;
        o.processes = processes;
        return o;
    }

    template <class F, class Item, bool Spread, class Range>
    std::vector<detail::Chunk> encode_chunks(const Range& inputs, std::size_t chunksize,
                                             const std::shared_ptr<detail::Job>& job, std::size_t n) {
        std::vector<detail::Chunk> chunks;
        chunks.reserve(n / chunksize + 1);
        std::size_t i = 0;
        auto it = std::ranges::begin(inputs);
        auto end = std::ranges::end(inputs);
        while (it != end) {
            std::size_t first = i;
            std::size_t size_hint = detail::is_bitwise_v<Item> ? chunksize * sizeof(Item) : 64 * chunksize;
            detail::VectorOutBuf out(size_hint);
            for (std::size_t k = 0; k < chunksize && it != end; ++k, ++it, ++i) {
                if constexpr (std::is_same_v<std::decay_t<decltype(*it)>, Item>) detail::put_item(out, *it);
                else detail::put_item(out, Item(*it));
            }
            chunks.push_back(detail::Chunk{job, first, static_cast<std::uint32_t>(i - first), out.take()});
        }
        return chunks;
    }

    template <class F, class Item, bool Spread, class Range>
    auto submit_map(F f, const Range& inputs, std::size_t chunksize) {
        detail::check_pool_callable<F>();
        using R = std::decay_t<detail::task_result_t<F, Item, Spread>>;
        using V = std::vector<detail::stored_t<R>>;
        std::size_t n = static_cast<std::size_t>(std::ranges::distance(inputs));
        auto s = std::make_shared<detail::ResultState<V>>();
        s->set_pump(core_->pump());
        auto job = std::make_shared<detail::MapJob<R>>(s, n);
        if (n > 0) {
            auto chunks = encode_chunks<F, Item, Spread>(inputs, detail::default_chunksize(n, processes(), chunksize), job, n);
            core_->submit(&detail::task_entry<F, Item, Spread>, detail::task_function(f),
                          &detail::task_ref<F, Item, Spread>, std::move(chunks));
        }
        return AsyncResult<V>(std::move(s));
    }

    template <class F, class Range>
    auto submit_imap(F f, const Range& inputs, std::size_t chunksize, bool ordered) {
        detail::check_pool_callable<F>();
        using Item = std::decay_t<std::ranges::range_value_t<Range>>;
        using R = std::decay_t<detail::task_result_t<F, Item, false>>;
        static_assert(!std::is_void_v<R>, "mproc::Pool::imap: the task must return a value");
        std::size_t n = static_cast<std::size_t>(std::ranges::distance(inputs));
        auto job = std::make_shared<detail::IMapJob<R>>(n, ordered);
        if (n > 0) {
            auto chunks = encode_chunks<F, Item, false>(inputs, chunksize, job, n);
            core_->submit(&detail::task_entry<F, Item, false>, detail::task_function(f),
                          &detail::task_ref<F, Item, false>, std::move(chunks));
        }
        return IMapIterator<R>(std::move(job));
    }

    std::unique_ptr<detail::PoolCore> core_;
};

}  // namespace mproc
