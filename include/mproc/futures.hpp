// mproc futures: Python's concurrent.futures — ProcessPoolExecutor and
// ThreadPoolExecutor with one interface, Future, as_completed and wait.
//
//   mproc::ProcessPoolExecutor ex(4);        // or mproc::ThreadPoolExecutor ex(4);
//   mproc::Future<long> f = ex.submit(fib, 34);
//   long v = f.result();
//   for (auto& g : mproc::as_completed(futures)) ...
//
// ProcessPoolExecutor runs tasks in worker processes (same rules as Pool:
// functions or capture-less lambdas, serializable arguments and results).
// A worker that dies (kill -9, abort, segfault) breaks the executor, as in
// Python: every pending Future fails with BrokenProcessPool naming the
// signal, and submit() throws BrokenProcessPool from then on.
// ThreadPoolExecutor runs the same calls on threads of this process (any
// callable works there).
//
// A Future is pending until a worker takes it; cancel() succeeds only
// then, and cancel(/*interrupt=*/true) also stops a running task.
// submit(TaskOptions{.timeout}, ...) bounds one task's running time;
// ex.map(f, inputs, {.buffersize}) is lazy and bounded (Python 3.14). Done callbacks run in this process, in the thread that finishes the
// Future (or at once if it is already done).
//
// Thread safety: executors and Futures may be used from any thread.
// Blocking: Future::result/exception, as_completed iteration, wait, map and
// shutdown(wait=true) (also the destructor) wait; the rest returns at once.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/pool.hpp"

namespace mproc {

template <class R>
class Future {
public:
    Future() = default;
    explicit Future(std::shared_ptr<detail::ResultState<R>> s) : s_(std::move(s)) {}

    /// The result; re-throws the task's exception; CancelledError if
    /// cancelled; TimeoutError if the timeout passes first.
    R result(Timeout timeout = std::nullopt) const {
        if (!s_->wait(timeout)) throw TimeoutError("mproc::Future::result: timed out");
        if (auto e = s_->error()) std::rethrow_exception(e);
        if constexpr (!std::is_void_v<R>) return s_->value();
    }
    /// The task's exception or nullptr; CancelledError / TimeoutError as result().
    std::exception_ptr exception(Timeout timeout = std::nullopt) const {
        if (!s_->wait(timeout)) throw TimeoutError("mproc::Future::exception: timed out");
        if (cancelled()) throw CancelledError("the future was cancelled");
        return s_->error();
    }
    bool done() const { return s_->ready(); }
    bool running() const { return s_->phase() == detail::ResultState<R>::Phase::running; }
    bool cancelled() const { return s_->phase() == detail::ResultState<R>::Phase::cancelled; }
    /// True if cancelled (now or before); false once running or done —
    /// unless `interrupt`: a running task is then stopped too (its worker
    /// is killed and replaced; ProcessPoolExecutor only) and the Future is
    /// cancelled.
    bool cancel(bool interrupt = false) const { return s_->cancel() || (interrupt && s_->interrupt()); }
    /// fn(future) once done.
    void add_done_callback(std::function<void(Future<R>)> fn) const {
        Future self = *this;
        s_->add_callback([self, fn = std::move(fn)] { fn(self); });
    }
    /// The same shared state (copies of one submitted task's Future).
    friend bool operator==(const Future& a, const Future& b) noexcept { return a.s_ == b.s_; }

private:
    friend struct std::hash<Future>;
    std::shared_ptr<detail::ResultState<R>> s_;
};

/// ProcessPoolExecutor's options (Python 3.11-3.14's keyword arguments).
struct ExecutorOptions {
    /// 0: cpu_count().
    int max_workers = 0;
    PoolInitializer initializer{};
    InitArgs initargs{};
    /// Tasks a worker runs before it is replaced; 0: no limit.
    std::uint64_t max_tasks_per_child = 0;
    /// nullopt: get_start_method().
    std::optional<StartMethod> start_method{};
};

/// concurrent.futures.ProcessPoolExecutor.
class ProcessPoolExecutor {
public:
    /// max_workers 0: cpu_count(). max_tasks_per_child 0: no limit.
    explicit ProcessPoolExecutor(int max_workers = 0, std::optional<StartMethod> start_method = std::nullopt,
                                 std::uint64_t max_tasks_per_child = 0)
        : ProcessPoolExecutor(ExecutorOptions{.max_workers = max_workers,
                                              .max_tasks_per_child = max_tasks_per_child,
                                              .start_method = start_method}) {}
    explicit ProcessPoolExecutor(const ExecutorOptions& o) : ProcessPoolExecutor(config_for(o)) {}
    /// An executor over another transport (MPIPoolExecutor); internal.
    explicit ProcessPoolExecutor(detail::PoolConfig cfg) : sub_((cfg.break_on_death = true, std::move(cfg))) {}
    ~ProcessPoolExecutor() {
        try {
            shutdown(true);
        } catch (...) {
        }
    }
    ProcessPoolExecutor(const ProcessPoolExecutor&) = delete;
    ProcessPoolExecutor& operator=(const ProcessPoolExecutor&) = delete;

    template <class F, class... A>
        requires(!detail::is_task_options_v<F>)
    auto submit(F f, A&&... args) {
        return submit(TaskOptions{}, f, std::forward<A>(args)...);
    }
    /// submit with a per-task timeout: result() throws TimeoutError once the
    /// task has run that long (its worker is killed and replaced; the
    /// executor stays usable).
    template <class F, class... A>
    auto submit(const TaskOptions& o, F f, A&&... args) {
        using R = std::decay_t<detail::task_result_t<F, std::tuple<std::decay_t<A>...>, true>>;
        return Future<R>(sub_.one(true, o, f, std::forward<A>(args)...));
    }

    /// Results of f over inputs, in input order, as a lazy range (Python
    /// 3.14): chunksize items per message (default 1), buffersize chunks in
    /// flight at most (0: all submitted now), timeout for the whole map.
    template <class F, class Range>
    auto map(F f, Range&& inputs, std::size_t chunksize = 1) {
        return map(f, std::forward<Range>(inputs), MapOptions{.chunksize = chunksize});
    }
    template <class F, class Range>
    auto map(F f, Range&& inputs, const MapOptions& o) {
        using Item = std::decay_t<std::ranges::range_value_t<Range>>;
        return sub_.lazy<F, Item, false>(f, std::forward<Range>(inputs), o, o.chunksize ? o.chunksize : 1, true);
    }

    /// No more submissions. wait: block until the work is done and the
    /// workers have exited. cancel_futures: cancel the Futures no worker
    /// has taken yet.
    void shutdown(bool wait = true, bool cancel_futures = false) { sub_.core().shutdown(wait, cancel_futures); }
    /// Python 3.14: shutdown(wait=false, cancel_futures=true) and SIGTERM /
    /// SIGKILL to every worker; running Futures fail with BrokenProcessPool.
    void terminate_workers() { sub_.core().end_workers(false); }
    void kill_workers() { sub_.core().end_workers(true); }

    /// The live workers' pids (for tests and monitoring).
    std::vector<int> worker_pids() const { return sub_.core().worker_pids(); }

private:
    static detail::PoolConfig config_for(const ExecutorOptions& o) {
        return detail::local_config(o.max_workers, o.initializer, o.initargs, o.max_tasks_per_child, o.start_method,
                                    true);
    }
    detail::Submitter sub_;
};

/// concurrent.futures.ThreadPoolExecutor: the same interface on threads.
class ThreadPoolExecutor {
public:
    explicit ThreadPoolExecutor(int max_workers = 0) {
        int n = max_workers > 0 ? max_workers : cpu_count() + 4;  // Python: min(32, cpu + 4)
        if (n > 32 && max_workers <= 0) n = 32;
        for (int i = 0; i < n; ++i) threads_.emplace_back([this] { run(); });
    }
    ~ThreadPoolExecutor() { shutdown(true); }
    ThreadPoolExecutor(const ThreadPoolExecutor&) = delete;
    ThreadPoolExecutor& operator=(const ThreadPoolExecutor&) = delete;

    template <class F, class... A>
    auto submit(F f, A&&... args) {
        using R = std::decay_t<std::invoke_result_t<F&, std::decay_t<A>&...>>;
        auto s = std::make_shared<detail::ResultState<R>>();
        auto task = [s, f = std::move(f), tup = std::make_tuple(std::forward<A>(args)...)]() mutable {
            if (!s->set_running()) return;
            try {
                if constexpr (std::is_void_v<R>) {
                    std::apply(f, tup);
                    s->set_value({});
                } else {
                    s->set_value(std::apply(f, tup));
                }
            } catch (...) {
                s->set_exception(std::current_exception());
            }
        };
        {
            std::lock_guard<std::mutex> g(mu_);
            if (shutdown_) throw ValueError("mproc::ThreadPoolExecutor: cannot submit after shutdown");
            queue_.push_back(Item{std::move(task), [s] { s->cancel(); }});
        }
        cv_.notify_one();
        return Future<R>(std::move(s));
    }

    template <class F, class Range>
    auto map(F f, const Range& inputs, std::size_t /*chunksize*/ = 1) {
        using Item = std::decay_t<std::ranges::range_value_t<Range>>;
        using R = std::decay_t<std::invoke_result_t<F&, Item&>>;
        std::vector<Future<R>> fs;
        for (const auto& x : inputs) fs.push_back(submit(f, x));
        std::vector<detail::stored_t<R>> out;
        out.reserve(fs.size());
        for (auto& fu : fs) {
            if constexpr (std::is_void_v<R>) fu.result(), out.emplace_back();
            else out.push_back(fu.result());
        }
        return out;
    }

    void shutdown(bool wait = true, bool cancel_futures = false) {
        std::deque<Item> dropped;
        {
            std::lock_guard<std::mutex> g(mu_);
            shutdown_ = true;
            if (cancel_futures) dropped.swap(queue_);
        }
        cv_.notify_all();
        for (auto& it : dropped) it.cancel();
        if (!wait) return;
        std::lock_guard<std::mutex> g(join_mu_);
        for (auto& t : threads_)
            if (t.joinable()) t.join();
    }

private:
    struct Item {
        std::function<void()> run;
        std::function<void()> cancel;
    };
    void run() {
        for (;;) {
            Item it;
            {
                std::unique_lock<std::mutex> g(mu_);
                cv_.wait(g, [&] { return shutdown_ || !queue_.empty(); });
                if (queue_.empty()) return;
                it = std::move(queue_.front());
                queue_.pop_front();
            }
            it.run();
        }
    }
    std::mutex mu_;
    std::mutex join_mu_;
    std::condition_variable cv_;
    std::deque<Item> queue_;
    bool shutdown_ = false;
    std::vector<std::thread> threads_;
};

/// Futures in completion order, each once, as they complete (a lazy range).
/// TimeoutError from the iteration if `timeout` passes first.
template <class R>
class AsCompleted {
public:
    AsCompleted(std::vector<Future<R>> fs, Timeout timeout)
        : st_(std::make_shared<State>()), deadline_(timeout) {
        st_->total = fs.size();
        st_->futures = fs;
        if (timeout) start_ = std::chrono::steady_clock::now();
        for (std::size_t i = 0; i < fs.size(); ++i) {
            auto st = st_;
            fs[i].add_done_callback([st, i](Future<R>) {
                {
                    std::lock_guard<std::mutex> g(st->mu);
                    st->ready.push_back(i);
                }
                st->cv.notify_all();
            });
        }
    }
    class iterator {
    public:
        using value_type = Future<R>;
        using difference_type = std::ptrdiff_t;
        iterator() = default;
        explicit iterator(AsCompleted* o) : o_(o) { ++*this; }
        const Future<R>& operator*() const { return cur_; }
        iterator& operator++() {
            auto next = o_->next();
            if (!next) o_ = nullptr;
            else cur_ = *next;
            return *this;
        }
        void operator++(int) { ++*this; }
        bool operator==(std::default_sentinel_t) const { return o_ == nullptr; }

    private:
        AsCompleted* o_ = nullptr;
        Future<R> cur_;
    };
    iterator begin() { return iterator(this); }
    std::default_sentinel_t end() { return {}; }

    std::optional<Future<R>> next() {
        std::unique_lock<std::mutex> g(st_->mu);
        if (st_->taken == st_->total) return std::nullopt;
        auto pred = [&] { return st_->ready.size() > st_->taken; };
        if (deadline_) {
            auto until = start_ + std::chrono::duration_cast<std::chrono::steady_clock::duration>(*deadline_);
            if (!st_->cv.wait_until(g, until, pred))
                throw TimeoutError("mproc::as_completed: " + std::to_string(st_->total - st_->taken) +
                                   " futures unfinished");
        } else {
            st_->cv.wait(g, pred);
        }
        return st_->futures[st_->ready[st_->taken++]];
    }

private:
    struct State {
        std::mutex mu;
        std::condition_variable cv;
        std::vector<std::size_t> ready;
        std::vector<Future<R>> futures;
        std::size_t total = 0;
        std::size_t taken = 0;
    };
    std::shared_ptr<State> st_;
    Timeout deadline_;
    std::chrono::steady_clock::time_point start_;
};

template <class R>
AsCompleted<R> as_completed(const std::vector<Future<R>>& fs, Timeout timeout = std::nullopt) {
    return AsCompleted<R>(fs, timeout);
}

enum ReturnWhen { FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED };

template <class R>
struct DoneAndNotDone {
    std::vector<Future<R>> done;
    std::vector<Future<R>> not_done;
};

/// concurrent.futures.wait: returns when `return_when` holds or the
/// timeout passes, with the futures split into done and not done.
template <class R>
DoneAndNotDone<R> wait(const std::vector<Future<R>>& fs, Timeout timeout = std::nullopt,
                       ReturnWhen return_when = ALL_COMPLETED) {
    struct State {
        std::mutex mu;
        std::condition_variable cv;
        std::size_t done = 0;
        bool failed = false;
    };
    auto st = std::make_shared<State>();
    for (auto& f : fs)
        f.add_done_callback([st](Future<R> g) {
            bool failed = !g.cancelled() && g.exception() != nullptr;
            {
                std::lock_guard<std::mutex> l(st->mu);
                ++st->done;
                st->failed = st->failed || failed;
            }
            st->cv.notify_all();
        });
    {
        std::unique_lock<std::mutex> l(st->mu);
        auto pred = [&] {
            if (st->done == fs.size()) return true;
            if (return_when == FIRST_COMPLETED) return st->done > 0;
            if (return_when == FIRST_EXCEPTION) return st->failed;
            return false;
        };
        if (timeout) st->cv.wait_for(l, *timeout, pred);
        else st->cv.wait(l, pred);
    }
    DoneAndNotDone<R> out;
    for (auto& f : fs) (f.done() ? out.done : out.not_done).push_back(f);
    return out;
}

}  // namespace mproc

/// Futures hash by their shared state (as == compares), so they can key an
/// unordered_map (Python's `{executor.submit(f, x): x for x in xs}`).
template <class R>
struct std::hash<mproc::Future<R>> {
    std::size_t operator()(const mproc::Future<R>& f) const noexcept {
        return std::hash<const void*>{}(f.s_.get());
    }
};
