// mproc queues: Queue<T>, JoinableQueue<T> and SimpleQueue<T>, Python's
// multiprocessing queues for C++.
//
// A Queue is multi-producer multi-consumer across processes and threads,
// FIFO per producer. It is a handle: copies refer to the same queue, and a
// copy passed to a child process (fork or spawn, as a Process argument)
// lets the child put and get too. Items live in a byte ring in anonymous
// shared memory (8 MiB by default; QueueOptions::capacity changes it).
// Trivially copyable items are copied in and out with one memcpy; other
// types are serialized (mproc::dumps). Items too large for the ring travel
// in their own shared segment, so any size goes through.
//
// Blocking: put() waits while the queue is full (maxsize items, or no room
// in the ring); get() waits while it is empty. Both spin briefly, then sleep
// on a futex, and both take a Timeout: put throws Full, get throws Empty
// when it passes; try_put/try_get return false/nullopt instead.
//
// Crash safety: a producer or consumer killed at any instruction never
// corrupts the queue, loses a published item, or leaves another process
// asleep while an item (or room) is there for it. An item is published only
// once fully written and consumed only once fully read: a reader killed
// mid-copy leaves the item for the next reader; a put killed mid-way
// delivers its item once or not at all. A JoinableQueue counts an item
// unfinished from the moment it is published, so join() never waits for an
// item that never arrived. See detail/channel.hpp.
//
// close() marks this process's handle closed; further use of it throws
// ValueError. Other processes' handles are unaffected, as in Python.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <optional>

#include "mproc/detail/channel.hpp"
#include "mproc/detail/item_codec.hpp"
#include "mproc/duration.hpp"
#include "mproc/errors.hpp"

namespace mproc {

struct QueueOptions {
    /// Bytes of ring (rounded up to a power of two, at least 4 KiB, at most
    /// 1 GiB). Items over a quarter of it travel in their own segment.
    std::size_t capacity = detail::kDefaultRingCapacity;
};

template <class T>
class Queue {
public:
    /// maxsize 0: bounded only by the ring's capacity (and large items by
    /// memory); otherwise put() blocks while maxsize items are queued.
    explicit Queue(std::size_t maxsize = 0, QueueOptions opts = {})
        : Queue(maxsize, opts, false) {}

    /// Full if the timeout passes while the queue is full.
    void put(const T& item, Timeout timeout = std::nullopt) const {
        if (!try_put(item, timeout)) throw Full();
    }
    void put_nowait(const T& item) const { put(item, Duration(0)); }
    /// false instead of Full.
    bool try_put(const T& item, Timeout timeout = Duration(0)) const {
        return detail::put_item(core(), item, timeout);
    }

    /// Empty if the timeout passes while the queue is empty.
    T get(Timeout timeout = std::nullopt) const {
        detail::ReadReservation r = reserve(timeout);
        CommitAlways commit{r};
        return detail::decode_item<T>(r.bytes());
    }
    /// get() into an existing object: for large items, saves a copy.
    void get_into(T& out, Timeout timeout = std::nullopt) const {
        detail::ReadReservation r = reserve(timeout);
        CommitAlways commit{r};
        detail::decode_item_into<T>(r.bytes(), out);
    }
    T get_nowait() const { return get(Duration(0)); }
    /// nullopt instead of Empty. An item that cannot be decoded is consumed
    /// and reported as SerializationError.
    std::optional<T> try_get(Timeout timeout = Duration(0)) const {
        detail::ReadReservation r;
        if (!core().begin_get(r, timeout)) return std::nullopt;
        CommitAlways commit{r};
        return detail::decode_item<T>(r.bytes());
    }

    /// Receives one item and passes it to fn(T&&); the item leaves the queue
    /// only when fn returns. If fn throws, or this process dies inside fn
    /// (kill -9 included), the item stays for the next reader: processing
    /// that survives a crash. fn runs holding the queue's reader lock, so
    /// keep it short. False if the timeout passes with the queue empty.
    template <class F>
    bool consume(F&& fn, Timeout timeout = std::nullopt) const {
        detail::ReadReservation r;
        if (!core().begin_get(r, timeout)) return false;
        T item;
        try {
            item = detail::decode_item<T>(r.bytes());
        } catch (const SerializationError&) {
            r.commit();  // an undecodable item would block the queue forever
            throw;
        }
        fn(std::move(item));
        r.commit();
        return true;
    }

    /// Items queued now (exact at the moment it is read).
    std::size_t qsize() const { return core().qsize(); }
    bool empty() const { return qsize() == 0; }
    bool full() const { return core().maxsize() != 0 && qsize() >= core().maxsize(); }
    std::size_t maxsize() const { return core().maxsize(); }

    /// This process will use this queue no more (every copy of the handle in
    /// this process): later calls throw ValueError.
    void close() const { state_->closed.store(true, std::memory_order_release); }
    bool closed() const { return state_->closed.load(std::memory_order_acquire); }

    void mproc_export(detail::HandleWriter& w) const { core().mproc_export(w); }
    static Queue mproc_import(detail::HandleReader& r) {
        return Queue(detail::ChannelCore::mproc_import(r, nullptr));
    }

protected:
    Queue(std::size_t maxsize, QueueOptions opts, bool joinable)
        : state_(std::make_shared<State>(
              detail::ChannelCore(opts.capacity, maxsize, detail::ChannelCore::Wait::futex, nullptr, joinable,
                                  joinable ? "mproc-joinable-queue" : "mproc-queue"))) {}
    explicit Queue(detail::ChannelCore core) : state_(std::make_shared<State>(std::move(core))) {}

    // An item is consumed once decoded, or when decoding fails: a bad item
    // must not block the queue forever.
    struct CommitAlways {
        detail::ReadReservation& r;
        ~CommitAlways() { r.commit(); }
    };
    detail::ReadReservation reserve(Timeout timeout) const {
        detail::ReadReservation r;
        if (!core().begin_get(r, timeout)) throw Empty();
        return r;
    }

    detail::ChannelCore& core() const {
        if (state_->closed.load(std::memory_order_acquire)) throw ValueError("Queue is closed");
        return state_->core;
    }

private:
    struct State {
        explicit State(detail::ChannelCore c) : core(std::move(c)) {}
        detail::ChannelCore core;
        std::atomic<bool> closed{false};  // close() from one thread, read by all
    };
    std::shared_ptr<State> state_;
};

/// multiprocessing.JoinableQueue: a Queue that also counts unfinished
/// tasks. Every put() adds one; task_done() removes one; join() waits until
/// none are left.
template <class T>
class JoinableQueue : public Queue<T> {
public:
    explicit JoinableQueue(std::size_t maxsize = 0, QueueOptions opts = {})
        : Queue<T>(maxsize, opts, true) {}

    /// ValueError if called more times than items were put.
    void task_done() const { this->core().task_done(); }
    /// Blocks until every item put has been task_done()'d. False on timeout.
    bool join(Timeout timeout = std::nullopt) const { return this->core().join(timeout); }

    static JoinableQueue mproc_import(detail::HandleReader& r) {
        return JoinableQueue(detail::ChannelCore::mproc_import(r, nullptr));
    }

private:
    explicit JoinableQueue(detail::ChannelCore core) : Queue<T>(std::move(core)) {}
};

/// multiprocessing.SimpleQueue: put, get, empty, close.
template <class T>
class SimpleQueue {
public:
    SimpleQueue() = default;
    void put(const T& item) const { q_.put(item); }
    T get() const { return q_.get(); }
    bool empty() const { return q_.empty(); }
    void close() const { q_.close(); }

    void mproc_export(detail::HandleWriter& w) const { q_.mproc_export(w); }
    static SimpleQueue mproc_import(detail::HandleReader& r) {
        return SimpleQueue(Queue<T>::mproc_import(r));
    }

private:
    explicit SimpleQueue(Queue<T> q) : q_(std::move(q)) {}
    Queue<T> q_;
};

}  // namespace mproc
