// ListProxy: a Manager's lists. Included by <mproc/manager.hpp>, which
// documents their sharing, atomicity, blocking and crash behaviour.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <numeric>
#include <optional>
#include <ranges>
#include <vector>

#include "mproc/detail/manager_core.hpp"

namespace mproc {

class Manager;

/// A list in a Manager: ListProxy<T> from Manager::list<T>().
///
/// index(), count() and remove() compare items by their stored bytes (as
/// dict keys are compared): equal values of types whose encoding is
/// canonical (integers, strings, containers of them) match; 0.0 and -0.0
/// do not.
template <class T>
class ListProxy {
public:
    ListProxy() = default;

    void append(const T& v) const {
        detail::ScratchOutBuf b;
        const detail::Bytes one = detail::encode_stored(b, v);
        detail::invoke<detail::mop::op::list_extend>(obj_, detail::mop::BytesList(&one, 1));
    }
    /// Appends every element of `range` (any range whose elements convert
    /// to T); other processes see all or none of them.
    template <std::ranges::input_range Range>
    void extend(Range&& range) const {
        detail::StoredBatch<T> vs;
        for (auto&& v : range) vs.add(std::forward<decltype(v)>(v));
        const std::vector<detail::Bytes> b = vs.bytes();
        detail::invoke<detail::mop::op::list_extend>(obj_, detail::mop::BytesList(b));
    }
    void extend(std::initializer_list<T> values) const { extend<const std::initializer_list<T>&>(values); }
    /// l += range: extend().
    template <std::ranges::input_range Range>
    const ListProxy& operator+=(Range&& range) const {
        extend(std::forward<Range>(range));
        return *this;
    }
    const ListProxy& operator+=(std::initializer_list<T> values) const {
        extend(values);
        return *this;
    }
    const ListProxy& operator+=(const ListProxy& other) const {
        extend(other.snapshot());
        return *this;
    }
    /// l[i]; negative i counts from the end. IndexError if out of range.
    T at(std::int64_t i) const {
        std::optional<T> out;
        detail::Take<T> take{out};
        detail::invoke<detail::mop::op::list_get>(obj_, i, detail::mop::Sink(take));
        return std::move(*out);
    }
    T operator[](std::int64_t i) const { return at(i); }
    /// l[i] = v.
    void set(std::int64_t i, const T& v) const {
        detail::ScratchOutBuf b;
        detail::invoke<detail::mop::op::list_set>(obj_, i, detail::encode_stored(b, v));
    }
    /// l.insert(i, v): before index i (clamped, as Python does).
    void insert(std::int64_t i, const T& v) const {
        detail::ScratchOutBuf b;
        detail::invoke<detail::mop::op::list_insert>(obj_, i, detail::encode_stored(b, v));
    }
    /// l.pop(i): removes and returns item i (the last by default).
    T pop(std::int64_t i = -1) const {
        std::optional<T> out;
        detail::Take<T> take{out};
        detail::invoke<detail::mop::op::list_pop>(obj_, i, detail::mop::Sink(take));
        return std::move(*out);
    }
    /// l.remove(v): removes the first item equal to v; ValueError if none.
    void remove(const T& v) const {
        detail::ScratchOutBuf b;
        detail::invoke<detail::mop::op::list_remove>(obj_, detail::encode_stored(b, v));
    }
    /// l.index(v, start, stop): the first position of v in [start, stop)
    /// (Python's slice bounds); ValueError if it is not there.
    std::size_t index(const T& v, std::int64_t start = 0, std::int64_t stop = INT64_MAX) const {
        detail::ScratchOutBuf b;
        return detail::invoke<detail::mop::op::list_index>(obj_, detail::encode_stored(b, v), start, stop);
    }
    /// l.count(v).
    std::size_t count(const T& v) const {
        detail::ScratchOutBuf b;
        return detail::invoke<detail::mop::op::list_count>(obj_, detail::encode_stored(b, v));
    }
    /// l.reverse(), in place and atomically.
    void reverse() const { detail::invoke<detail::mop::op::list_reverse>(obj_); }
    /// l.sort(): stable, in place and atomically, by `less` (operator< by
    /// default). Locally `less` runs under the list's lock (do not touch
    /// the list from it); on a connected manager the order is computed here
    /// from a snapshot and applied only if the list has not changed since
    /// (else it starts again).
    template <class Less = std::less<>>
    void sort(Less less = Less{}) const {
        auto order = [&](std::span<const detail::Bytes> items, std::vector<std::uint64_t>& out) {
            std::vector<T> values;
            values.reserve(items.size());
            for (detail::Bytes b : items) values.push_back(detail::decode_item<T>(b));
            out.resize(values.size());
            std::iota(out.begin(), out.end(), std::uint64_t{0});
            std::stable_sort(out.begin(), out.end(),
                             [&](std::uint64_t a, std::uint64_t b) { return less(values[a], values[b]); });
        };
        obj_.backend().reorder(obj_, detail::Reorderer(order));
    }
    /// Atomically applies fn to item i; returns the new value.
    template <class F>
    T modify(std::int64_t i, F&& fn) const {
        T result;
        std::optional<detail::ScratchOutBuf> vb;
        auto rw = [&](const detail::Bytes* old) -> detail::Bytes {
            result = detail::decode_item<T>(*old);
            fn(result);
            return detail::encode_stored(vb.emplace(), result);
        };
        obj_.backend().modify(obj_, detail::ModifySlot{{}, i}, detail::Rewriter(rw));
        return result;
    }
    std::size_t size() const { return detail::invoke<detail::mop::op::list_size>(obj_); }
    bool empty() const { return size() == 0; }
    void clear() const { detail::invoke<detail::mop::op::list_clear>(obj_); }
    /// list(l): a consistent copy of every item.
    std::vector<T> snapshot() const {
        std::vector<T> out;
        detail::Collect<T> c{out};
        detail::invoke<detail::mop::op::list_items>(obj_, detail::mop::Sink(c));
        return out;
    }
    /// l.copy(): the same, as Python's.
    std::vector<T> copy() const { return snapshot(); }
    /// for (T x : l): over a snapshot taken when the loop starts.
    detail::SnapshotIterator<T> begin() const { return detail::SnapshotIterator<T>(snapshot()); }
    std::default_sentinel_t end() const noexcept { return {}; }

    void mproc_export(detail::HandleWriter& w) const { obj_.mproc_export(w); }
    static ListProxy mproc_import(detail::HandleReader& r) {
        return ListProxy(detail::ManagedObject::import(r, kind, tag()));
    }

private:
    friend class Manager;
    static constexpr detail::mop::Kind kind = detail::mop::Kind::list;
    static constexpr std::uint64_t tag() { return detail::proxy_type_tag<ListProxy>(); }
    explicit ListProxy(detail::ManagedObject obj) : obj_(std::move(obj)) { detail::check_storable<T>(); }
    detail::ManagedObject obj_;
};

}  // namespace mproc
