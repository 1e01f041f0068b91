// ValueProxy and QueueProxy: a Manager's Values and Queues. Included by
// <mproc/manager.hpp>, which documents their sharing, atomicity, blocking
// and crash behaviour.
#pragma once

#include <optional>

#include "mproc/detail/manager_core.hpp"

namespace mproc {

class Manager;

/// A single value in a Manager: Manager::Value<T>(init) (Python's
/// manager.Value; `.value` is get() / set()).
template <class T>
class ValueProxy {
public:
    ValueProxy() = default;
    T get() const {
        std::optional<T> out;
        detail::Take<T> take{out};
        detail::invoke<detail::mop::op::value_get>(obj_, detail::mop::Sink(take));
        return std::move(*out);
    }
    void set(const T& v) const {
        detail::ScratchOutBuf b;
        detail::invoke<detail::mop::op::value_set>(obj_, detail::encode_stored(b, v));
    }
    /// Atomically applies fn to the value; returns the new value.
    template <class F>
    T modify(F&& fn) const {
        T result;
        std::optional<detail::ScratchOutBuf> vb;
        auto rw = [&](const detail::Bytes* old) -> detail::Bytes {
            result = old ? detail::decode_item<T>(*old) : T{};
            fn(result);
            return detail::encode_stored(vb.emplace(), result);
        };
        obj_.backend().modify(obj_, detail::ModifySlot{}, detail::Rewriter(rw));
        return result;
    }

    void mproc_export(detail::HandleWriter& w) const { obj_.mproc_export(w); }
    static ValueProxy mproc_import(detail::HandleReader& r) {
        return ValueProxy(detail::ManagedObject::import(r, kind, tag()));
    }

private:
    friend class Manager;
    static constexpr detail::mop::Kind kind = detail::mop::Kind::value;
    static constexpr std::uint64_t tag() { return detail::proxy_type_tag<ValueProxy>(); }
    explicit ValueProxy(detail::ManagedObject obj) : obj_(std::move(obj)) { detail::check_storable<T>(); }
    detail::ManagedObject obj_;
};

/// A queue in a Manager: QueueProxy<T> from Manager::Queue<T>() or
/// JoinableQueue<T>() (Python's manager.Queue(), a queue.Queue proxy). It
/// lives in the manager's heap, so it goes wherever proxies go: into pool
/// tasks, through other queues, to connected managers on other machines.
/// For the fastest queue between local processes, use mproc::Queue.
template <class T>
class QueueProxy {
public:
    QueueProxy() = default;

    /// Waits for room in a bounded queue; Full after `timeout`.
    void put(const T& item, Timeout timeout = std::nullopt) const {
        detail::ScratchOutBuf b;
        if (!detail::invoke<detail::mop::op::queue_put>(obj_, detail::encode_stored(b, item), timeout)) throw Full();
    }
    void put_nowait(const T& item) const { put(item, Duration(0)); }
    /// Waits for an item; Empty after `timeout`.
    T get(Timeout timeout = std::nullopt) const {
        std::optional<T> out = take(timeout);
        if (!out) throw Empty();
        return std::move(*out);
    }
    T get_nowait() const { return get(Duration(0)); }
    /// An item if one comes within `timeout` (default: now), else nullopt.
    std::optional<T> try_get(Timeout timeout = Duration(0)) const { return take(timeout); }
    std::size_t qsize() const { return detail::invoke<detail::mop::op::queue_size>(obj_); }
    bool empty() const { return qsize() == 0; }
    bool full() const {
        const std::size_t m = detail::invoke<detail::mop::op::queue_maxsize>(obj_);
        return m != 0 && qsize() >= m;
    }
    /// JoinableQueue: marks one item taken by get() as processed.
    void task_done() const { detail::invoke<detail::mop::op::queue_task_done>(obj_); }
    /// JoinableQueue: waits until every item put has been task_done();
    /// false on timeout.
    bool join(Timeout timeout = std::nullopt) const { return detail::invoke<detail::mop::op::queue_join>(obj_, timeout); }

    void mproc_export(detail::HandleWriter& w) const { obj_.mproc_export(w); }
    static QueueProxy mproc_import(detail::HandleReader& r) {
        return QueueProxy(detail::ManagedObject::import(r, kind, tag()));
    }

private:
    friend class Manager;
    static constexpr detail::mop::Kind kind = detail::mop::Kind::queue;
    static constexpr std::uint64_t tag() { return detail::proxy_type_tag<QueueProxy>(); }
    explicit QueueProxy(detail::ManagedObject obj) : obj_(std::move(obj)) { detail::check_storable<T>(); }
    std::optional<T> take(Timeout timeout) const {
        std::optional<T> out;
        detail::Take<T> t{out};
        detail::invoke<detail::mop::op::queue_get>(obj_, detail::mop::Sink(t), timeout);
        return out;
    }
    detail::ManagedObject obj_;
};

}  // namespace mproc
