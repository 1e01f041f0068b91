// mproc contexts: Python's multiprocessing.get_context(method) — an object
// whose factories make Processes, Pools and executors bound to one start
// method, whatever the process-wide default (set_start_method) is.
//
//   auto ctx = mproc::get_context(mproc::StartMethod::spawn);
//   auto q = ctx.Queue<int>();
//   auto p = ctx.Process(worker, q);        // p.start_method() == spawn
//   p.start();
//   auto pool = ctx.Pool(4);                // workers started with spawn
//
// Queues, Pipes, locks, shared values and Managers work the same with every
// start method (they are handles any child re-attaches to); their factories
// are here so that code written against a context reads as in Python.
// A Manager's containers live in shared memory of this process, so
// ctx.Manager() is a plain Manager. To subclass a Process for a context,
// derive from mproc::Process and call start_method(ctx.get_start_method()).
//
// Thread/process safety: a Context is a plain value (it holds only the
// method); its factories are as safe as the constructors they call. Nothing
// here blocks beyond what those constructors do (Pool starts its workers).
#pragma once

#include <cstddef>
#include <optional>
#include <utility>

#include "mproc/futures.hpp"
#include "mproc/manager.hpp"
#include "mproc/pipe.hpp"
#include "mproc/pool.hpp"
#include "mproc/process.hpp"
#include "mproc/queue.hpp"
#include "mproc/shared_memory.hpp"
#include "mproc/sync.hpp"

namespace mproc {

/// multiprocessing's context object (the result of get_context).
class Context {
public:
    explicit Context(StartMethod method) noexcept : method_(method) {}

    /// The method this context starts processes with.
    StartMethod get_start_method() const noexcept { return method_; }

    /// ctx.Process(target, args...): a Process started with this method.
    template <class F, class... Args>
    mproc::Process Process(F&& target, Args&&... args) const {
        mproc::Process p(std::forward<F>(target), std::forward<Args>(args)...);
        p.start_method(method_);
        return p;
    }

    /// ctx.Pool(processes) / ctx.Pool(options): workers started with this
    /// method (an options' own start_method is replaced).
    mproc::Pool Pool(int processes = 0) const {
        PoolOptions opts;
        opts.processes = processes;
        return Pool(std::move(opts));
    }
    mproc::Pool Pool(PoolOptions opts) const {
        opts.start_method = method_;
        return mproc::Pool(std::move(opts));
    }
    /// Python's ProcessPoolExecutor(max_workers, mp_context=ctx).
    mproc::ProcessPoolExecutor ProcessPoolExecutor(int max_workers = 0, std::uint64_t max_tasks_per_child = 0) const {
        return mproc::ProcessPoolExecutor(max_workers, method_, max_tasks_per_child);
    }
    mproc::Manager Manager() const { return mproc::Manager(); }

    template <class T>
    mproc::Queue<T> Queue(std::size_t maxsize = 0, QueueOptions opts = {}) const {
        return mproc::Queue<T>(maxsize, opts);
    }
    template <class T>
    mproc::JoinableQueue<T> JoinableQueue(std::size_t maxsize = 0, QueueOptions opts = {}) const {
        return mproc::JoinableQueue<T>(maxsize, opts);
    }
    template <class T>
    mproc::SimpleQueue<T> SimpleQueue() const {
        return mproc::SimpleQueue<T>();
    }
    template <class T>
    std::pair<Connection<T>, Connection<T>> Pipe(bool duplex = true) const {
        return mproc::Pipe<T>(duplex);
    }
    mproc::Lock Lock() const { return mproc::Lock(); }
    mproc::RLock RLock() const { return mproc::RLock(); }
    mproc::Semaphore Semaphore(unsigned value = 1) const { return mproc::Semaphore(value); }
    mproc::BoundedSemaphore BoundedSemaphore(unsigned value = 1) const { return mproc::BoundedSemaphore(value); }
    mproc::Event Event() const { return mproc::Event(); }
    mproc::Barrier Barrier(unsigned parties) const { return mproc::Barrier(parties); }
    template <class T>
    mproc::Value<T> Value(const T& init = T{}) const {
        return mproc::Value<T>(init);
    }
    template <class T>
    mproc::Array<T> Array(std::size_t n) const {
        return mproc::Array<T>(n);
    }

private:
    StartMethod method_;
};

/// multiprocessing.get_context(method); with no method, the process-wide
/// default (get_start_method()) at the time of the call.
inline Context get_context(std::optional<StartMethod> method = std::nullopt) {
    return Context(method.value_or(get_start_method()));
}

}  // namespace mproc
