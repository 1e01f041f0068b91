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
// A task's exception is re-thrown by get() as its own type when that is an
// mproc or standard exception or one registered with
// MPROC_REGISTER_EXCEPTION, otherwise as RemoteError (<mproc/errors.hpp>);
// remote_origin(e) names the worker it came from. A worker that dies mid-task (kill -9, abort,
// segfault) fails the items it had taken with BrokenProcessPool naming the
// signal; the Pool starts a replacement and carries on. Nothing hangs.
// Callbacks run in the parent, on the pool's result thread: keep them short.
//
// Lazy and bounded: imap / imap_unordered read their input as results are
// taken when MapOptions::buffersize is set (at most that many chunks in
// flight: an endless input range works in constant memory); with
// buffersize 0 the input is encoded when the call is made, as Python
// consumes it up front. MapOptions::task_timeout and
// apply_async(TaskOptions{.timeout}, ...) fail a task that runs too long
// with TimeoutError and replace its worker; the other tasks are not
// disturbed. `{.progress = true}` draws a progress line on stderr.
// An IMapIterator must not outlive its Pool while it still reads input
// (it then reports BrokenProcessPool for the rest).
//
// Thread safety: a Pool may be used from several threads at once. Blocking:
// map, starmap, apply, join, AsyncResult::get/wait and imap iteration wait
// for results; everything else returns at once. The destructor is
// terminate(), as leaving Python's `with Pool() as pool:` block is: call
// close() and join() first to let queued work finish.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <ranges>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/async_result.hpp"
#include "mproc/detail/pool_core.hpp"
#include "mproc/detail/pool_jobs.hpp"
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
            std::shared_ptr<void> holder = args.value();
            auto* params = checked_params<Params>(args);
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
        message_ = [fp](const InitArgs& args, std::uint64_t chunk) -> std::vector<std::byte> {
            auto* params = checked_params<Params>(args);
            if constexpr (!sendable<Fp, Params>()) {
                throw Error("mproc pool: this initializer's initargs cannot be serialized, so they cannot reach "
                            "workers that are not started as mproc processes (MPI ranks); handles travel only "
                            "to local pools' workers");
            } else {
                const std::vector<std::byte> ref = detail::task_ref<Fp, Params, true>(detail::task_function(fp));
                detail::VectorOutBuf out(sizeof(detail::TaskHeader) + ref.size() + 64);
                const detail::TaskHeader h{chunk, 1, static_cast<std::uint32_t>(ref.size())};
                out.write(&h, sizeof h);
                out.write(ref.data(), ref.size());
                if constexpr (std::tuple_size_v<Params> == 0) detail::put_item(out, Params{});
                else detail::put_item(out, *params);
                return out.take();
            }
        };
    }

    /// The worker factory for these arguments (internal).
    detail::WorkerFactory factory(const InitArgs& args) const {
        if (make_) return make_(args);
        return [](const detail::PoolChannel& t, const detail::PoolChannel& r, const Array<std::uint64_t>& s,
                  std::uint32_t i, std::uint64_t m) {
            return Process(&detail::pool_worker_entry<void (*)()>, t, r, s, i, m, static_cast<void (*)()>(nullptr));
        };
    }

    /// The initializer's call as one task message of chunk `chunk` (internal):
    /// how it reaches workers that are not started as mproc processes (MPI
    /// ranks), where the worker loop runs it as a task of one item. Empty
    /// when there is no initializer.
    std::vector<std::byte> message(const InitArgs& args, std::uint64_t chunk) const {
        return message_ ? message_(args, chunk) : std::vector<std::byte>{};
    }

private:
    /// Whether the initializer's call can travel as a task (no static_assert:
    /// a local pool's initargs may be handles, which cannot).
    template <class Fp, class Params>
    static constexpr bool sendable() {
        using R = std::decay_t<detail::task_result_t<Fp, Params, true>>;
        return []<class... Ts>(std::type_identity<std::tuple<Ts...>>) {
            return (mproc::is_serializable_v<Ts> && ...);
        }(std::type_identity<Params>{}) && (std::is_void_v<R> || mproc::is_serializable_v<R>);
    }

    template <class Params>
    static Params* checked_params(const InitArgs& args) {
        if (args.type() != typeid(Params))
            throw Error("mproc::Pool: initargs do not match the initializer's parameters (give "
                        "exactly its parameter types, by value)");
        auto* params = static_cast<Params*>(args.value().get());
        if (!params && std::tuple_size_v<Params> != 0) throw Error("mproc::Pool: the initializer needs initargs");
        return params;
    }

    std::function<detail::WorkerFactory(const InitArgs&)> make_;
    std::function<std::vector<std::byte>(const InitArgs&, std::uint64_t)> message_;
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
/// The local transport's configuration, shared by Pool and
/// ProcessPoolExecutor (their options differ only in Python's names).
inline PoolConfig local_config(int processes, const PoolInitializer& init, const InitArgs& args,
                               std::uint64_t maxtasks, std::optional<StartMethod> method, bool break_on_death) {
    PoolConfig cfg;
    cfg.processes = processes > 0 ? processes : cpu_count();
    cfg.maxtasks = maxtasks;
    cfg.break_on_death = break_on_death;
    cfg.factory = daemon_factory(init.factory(args), method.value_or(get_start_method()));
    return cfg;
}
}  // namespace detail

namespace detail {

/// What Pool and the executors share: the submitter and the ways to put
/// work on it (one task, a whole map, a lazy map). Pool, ProcessPoolExecutor
/// and the MPI executor are thin faces over this.
class Submitter {
public:
    explicit Submitter(PoolConfig cfg) : core_(std::make_shared<PoolCore>(std::move(cfg))) {}

    PoolCore& core() const noexcept { return *core_; }

    /// One task f(args...): its state, finished by a SingleJob.
    template <class F, class... A>
    auto one(bool future, const TaskOptions& o, F f, A&&... args) {
        using Item = std::tuple<std::decay_t<A>...>;
        static_assert(task_types_ok<F, Item, true>(),
                      "mproc: this task cannot be sent to a worker process (see the first error)");
        check_pool_callable<F>();
        using R = std::decay_t<task_result_t<F, Item, true>>;
        auto s = std::make_shared<ResultState<R>>();
        s->set_pump(core_->pump());
        auto job = std::make_shared<SingleJob<R>>(s, future);
        s->set_job(job.get());
        const TaskSpec spec = task_spec<F, Item, true>(f);
        std::span<const std::byte> ref = core_->task_ref(spec.entry, spec.fn, spec.make_ref);
        std::array<Item, 1> one{Item(std::forward<A>(args)...)};
        auto it = one.begin();
        std::vector<Chunk> chunks;
        chunks.push_back(encode_chunk<Item>(ref, it, one.end(), 1, job, 0, o.timeout));
        core_->submit(std::move(chunks));
        return s;
    }

    /// A whole map: AsyncResult<vector<R>>.
    template <class F, class Item, bool Spread, class Range>
    auto all(F f, const Range& inputs, const MapOptions& o) {
        static_assert(task_types_ok<F, Item, Spread>(),
                      "mproc: this task cannot be sent to a worker process (see the first error)");
        check_pool_callable<F>();
        using R = std::decay_t<task_result_t<F, Item, Spread>>;
        using V = std::vector<stored_t<R>>;
        const auto n = static_cast<std::size_t>(std::ranges::distance(inputs));
        auto counts = make_counts(o, n);
        auto s = std::make_shared<ResultState<V>>();
        s->set_pump(core_->pump());
        auto job = std::make_shared<MapJob<R>>(s, n, counts);
        if (n > 0) {
            const std::size_t cs = default_chunksize(n, core_->processes(), o.chunksize);
            const TaskSpec spec = task_spec<F, Item, Spread>(f);
            std::span<const std::byte> ref = core_->task_ref(spec.entry, spec.fn, spec.make_ref);
            std::vector<Chunk> chunks;
            chunks.reserve(n / cs + 1);
            auto it = std::ranges::begin(inputs);
            auto end = std::ranges::end(inputs);
            for (std::size_t first = 0; it != end; first += cs)
                chunks.push_back(encode_chunk<Item>(ref, it, end, cs, job, first, o.task_timeout));
            core_->submit(std::move(chunks));
        }
        return AsyncResult<V>(std::move(s), std::move(counts));
    }

    /// A lazy map over `inputs` (kept: a view of an lvalue, the range itself
    /// when moved in).
    template <class F, class Item, bool Spread, class Range>
    auto lazy(F f, Range&& inputs, const MapOptions& o, std::size_t chunksize, bool ordered) {
        static_assert(task_types_ok<F, Item, Spread>(),
                      "mproc: this task cannot be sent to a worker process (see the first error)");
        check_pool_callable<F>();
        using R = std::decay_t<task_result_t<F, Item, Spread>>;
        using Out = stored_t<R>;
        std::size_t known = 0;
        if constexpr (std::ranges::sized_range<Range>) known = static_cast<std::size_t>(std::ranges::size(inputs));
        auto counts = make_counts(o, known);
        auto job = std::make_shared<IMapJob<R>>(ordered, chunksize, counts);
        const TaskSpec spec = task_spec<F, Item, Spread>(f);
        std::span<const std::byte> ref = core_->task_ref(spec.entry, spec.fn, spec.make_ref);
        using View = std::views::all_t<Range>;
        struct Input {
            View view;
            std::ranges::iterator_t<View> it;
            explicit Input(View v) : view(std::move(v)), it(std::ranges::begin(view)) {}
        };
        auto in = std::make_shared<Input>(std::views::all(std::forward<Range>(inputs)));
        std::weak_ptr<PoolCore> weak = core_;
        const Timeout task_timeout = o.task_timeout;
        auto feed = [weak, in, ref, job, chunksize, task_timeout](std::uint64_t first) -> std::pair<std::uint32_t, bool> {
            auto core = weak.lock();
            if (!core) throw BrokenProcessPool("mproc: the pool was destroyed while its imap still read input");
            Chunk c = encode_chunk<Item>(ref, in->it, std::ranges::end(in->view), chunksize, job, first, task_timeout);
            const std::uint32_t n = c.count;
            const bool last = n < chunksize || in->it == std::ranges::end(in->view);
            if (last) job->set_total(first + n);  // before the chunk can finish
            if (n) {
                std::vector<Chunk> chunks;
                chunks.push_back(std::move(c));
                core->submit(std::move(chunks), true);
            }
            return {n, last};
        };
        return IMapIterator<Out>(std::move(job), std::move(feed), o.buffersize, core_->keep_open(), std::move(counts),
                                 o.timeout);
    }

    std::shared_ptr<PoolCore> core_;

private:
    static std::shared_ptr<Counts> make_counts(const MapOptions& o, std::size_t total) {
        auto c = std::make_shared<Counts>();
        c->total = total;
        if (o.progress) c->line = std::make_unique<ProgressLine>(total);
        return c;
    }
};

template <class F>
inline constexpr bool is_task_options_v = std::is_same_v<std::decay_t<F>, TaskOptions>;

}  // namespace detail

class Pool {
public:
    /// Pool(processes): cpu_count() workers when 0.
    explicit Pool(int processes = 0) : Pool(options_for(processes)) {}
    explicit Pool(const PoolOptions& opts) : Pool(config_for(opts)) {}
    /// A Pool over another transport (mproc::mpi::Pool); internal.
    explicit Pool(detail::PoolConfig cfg) : sub_(std::move(cfg)) {}
    ~Pool() = default;  // PoolCore's destructor terminates
    Pool(const Pool&) = delete;
    Pool& operator=(const Pool&) = delete;

    /// Python's map: f applied to every item, in order.
    template <class F, class Range>
    auto map(F f, const Range& inputs, std::size_t chunksize = 0) {
        return map(f, inputs, MapOptions{.chunksize = chunksize});
    }
    template <class F, class Range>
    auto map(F f, const Range& inputs, const MapOptions& o) {
        return map_async(f, inputs, o).get(o.timeout);
    }
    template <class F, class Range>
    auto map_async(F f, const Range& inputs, std::size_t chunksize = 0) {
        return map_async(f, inputs, MapOptions{.chunksize = chunksize});
    }
    template <class F, class Range>
    auto map_async(F f, const Range& inputs, const MapOptions& o) {
        return sub_.all<F, item_t<Range>, false>(f, inputs, o);
    }
    /// Python's starmap: each item is a tuple of arguments.
    template <class F, class Range>
    auto starmap(F f, const Range& inputs, std::size_t chunksize = 0) {
        return starmap(f, inputs, MapOptions{.chunksize = chunksize});
    }
    template <class F, class Range>
    auto starmap(F f, const Range& inputs, const MapOptions& o) {
        return starmap_async(f, inputs, o).get(o.timeout);
    }
    template <class F, class Range>
    auto starmap_async(F f, const Range& inputs, std::size_t chunksize = 0) {
        return starmap_async(f, inputs, MapOptions{.chunksize = chunksize});
    }
    template <class F, class Range>
    auto starmap_async(F f, const Range& inputs, const MapOptions& o) {
        return sub_.all<F, item_t<Range>, true>(f, inputs, o);
    }
    /// Lazy, ordered. chunksize 0 means 1, as in Python.
    template <class F, class Range>
    auto imap(F f, Range&& inputs, std::size_t chunksize = 1) {
        return imap(f, std::forward<Range>(inputs), MapOptions{.chunksize = chunksize});
    }
    template <class F, class Range>
    auto imap(F f, Range&& inputs, const MapOptions& o) {
        return lazy<F>(f, std::forward<Range>(inputs), o, true);
    }
    /// Lazy, in completion order.
    template <class F, class Range>
    auto imap_unordered(F f, Range&& inputs, std::size_t chunksize = 1) {
        return imap_unordered(f, std::forward<Range>(inputs), MapOptions{.chunksize = chunksize});
    }
    template <class F, class Range>
    auto imap_unordered(F f, Range&& inputs, const MapOptions& o) {
        return lazy<F>(f, std::forward<Range>(inputs), o, false);
    }
    /// Python's apply: f(args...) in a worker; blocks.
    template <class F, class... A>
        requires(!detail::is_task_options_v<F>)
    auto apply(F f, A&&... args) {
        return apply_async(f, std::forward<A>(args)...).get();
    }
    template <class F, class... A>
        requires(!detail::is_task_options_v<F>)
    auto apply_async(F f, A&&... args) {
        return apply_async(TaskOptions{}, f, std::forward<A>(args)...);
    }
    /// apply_async with a per-task timeout: get() throws TimeoutError once
    /// the task has run that long (its worker is killed and replaced).
    template <class F, class... A>
    auto apply_async(const TaskOptions& o, F f, A&&... args) {
        using R = std::decay_t<detail::task_result_t<F, std::tuple<std::decay_t<A>...>, true>>;
        return AsyncResult<R>(sub_.one(false, o, f, std::forward<A>(args)...));
    }

    /// No more tasks; workers exit when the queued work is done.
    void close() { sub_.core().close(); }
    /// After close() or terminate(): waits for the workers to exit.
    void join() { sub_.core().join(); }
    /// Kills the workers now; unfinished results fail with BrokenProcessPool.
    void terminate() { sub_.core().terminate(); }

    int processes() const noexcept { return sub_.core().processes(); }
    /// The live workers' pids (for tests and monitoring).
    std::vector<int> worker_pids() const { return sub_.core().worker_pids(); }

private:
    template <class Range>
    using item_t = std::decay_t<std::ranges::range_value_t<Range>>;

    static PoolOptions options_for(int processes) {
        PoolOptions o;
        o.processes = processes;
        return o;
    }
    static detail::PoolConfig config_for(const PoolOptions& o) {
        return detail::local_config(o.processes, o.initializer, o.initargs, o.maxtasksperchild, o.start_method, false);
    }
    template <class F, class Range>
    auto lazy(F f, Range&& inputs, const MapOptions& o, bool ordered) {
        using Item = item_t<Range>;
        using R = std::decay_t<detail::task_result_t<F, Item, false>>;
        static_assert(!std::is_void_v<R>, "mproc::Pool::imap: the task must return a value");
        return sub_.lazy<F, Item, false>(f, std::forward<Range>(inputs), o, o.chunksize ? o.chunksize : 1, ordered);
    }

    detail::Submitter sub_;
};

}  // namespace mproc
