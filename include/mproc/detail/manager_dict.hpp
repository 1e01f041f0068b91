// DictProxy and NamespaceProxy: a Manager's dicts. Included by
// <mproc/manager.hpp>, which documents their sharing, atomicity, blocking
// and crash behaviour.
#pragma once

#include <cstring>
#include <initializer_list>
#include <map>
#include <optional>
#include <ranges>
#include <string>
#include <utility>
#include <vector>

#include "mproc/detail/manager_core.hpp"
#include "mproc/detail/type_name.hpp"

namespace mproc {

class Manager;

/// A dict in a Manager: DictProxy<K, V> from Manager::dict<K, V>(). Keeps
/// insertion order, as Python's dict: iteration, keys(), items() and
/// popitem() see keys in the order they were first inserted (replacing a
/// value keeps its place).
template <class K, class V>
class DictProxy {
public:
    DictProxy() = default;

    /// d[key] = value.
    void set(const K& key, const V& value) const {
        detail::ScratchOutBuf kb, vb;
        detail::invoke<detail::mop::op::dict_set>(obj_, detail::encode_stored(kb, key), detail::encode_stored(vb, value));
    }
    /// d.get(key): the value, or nullopt.
    std::optional<V> get(const K& key) const {
        std::optional<V> out;
        detail::Take<V> take{out};
        detail::ScratchOutBuf kb;
        detail::invoke<detail::mop::op::dict_get>(obj_, detail::encode_stored(kb, key), detail::mop::Sink(take));
        return out;
    }
    /// d.get(key, default).
    V get(const K& key, const V& fallback) const {
        std::optional<V> v = get(key);
        return v ? std::move(*v) : fallback;
    }
    /// d[key]: the value, or KeyError.
    V at(const K& key) const {
        std::optional<V> v = get(key);
        if (!v) throw KeyError("mproc dict: no such key");
        return std::move(*v);
    }
    bool contains(const K& key) const {
        detail::ScratchOutBuf kb;
        return detail::invoke<detail::mop::op::dict_contains>(obj_, detail::encode_stored(kb, key));
    }
    /// del d[key]; false if it was absent (Python would raise KeyError).
    bool erase(const K& key) const {
        detail::ScratchOutBuf kb;
        return detail::invoke<detail::mop::op::dict_erase>(obj_, detail::encode_stored(kb, key));
    }
    /// d.pop(key): removes and returns the value, or nullopt.
    std::optional<V> pop(const K& key) const {
        std::optional<V> out;
        detail::Take<V> take{out};
        detail::ScratchOutBuf kb;
        detail::invoke<detail::mop::op::dict_pop>(obj_, detail::encode_stored(kb, key), detail::mop::Sink(take));
        return out;
    }
    /// d.pop(key, default).
    V pop(const K& key, const V& fallback) const {
        std::optional<V> v = pop(key);
        return v ? std::move(*v) : fallback;
    }
    /// d.popitem(): removes and returns the pair inserted last (LIFO, as
    /// Python); KeyError if the dict is empty.
    std::pair<K, V> popitem() const {
        std::optional<K> k;
        std::optional<V> v;
        auto both = [&](detail::Bytes b) {
            if (!k) k = detail::decode_item<K>(b);
            else v = detail::decode_item<V>(b);
        };
        detail::invoke<detail::mop::op::dict_popitem>(obj_, detail::mop::Sink(both));
        return {std::move(*k), std::move(*v)};
    }
    /// d.setdefault(key, value): the value now stored for key (inserting
    /// `value` if there was none), atomically.
    V setdefault(const K& key, const V& value) const {
        std::optional<V> out;
        detail::Take<V> take{out};
        detail::ScratchOutBuf kb, vb;
        detail::invoke<detail::mop::op::dict_setdefault>(obj_, detail::encode_stored(kb, key),
                                                         detail::encode_stored(vb, value), detail::mop::Sink(take));
        return std::move(*out);
    }
    /// Atomically: v = d.get(key, init); fn(v); d[key] = v; returns v.
    /// `fn` runs under the dict's lock: keep it short, and do not touch
    /// this dict from it. If it throws, the dict is unchanged. On a
    /// connected manager it may run more than once (compare-and-swap).
    template <class F>
    V modify(const K& key, F&& fn, const V& init = V{}) const {
        V result;
        detail::ScratchOutBuf kb;
        std::optional<detail::ScratchOutBuf> vb;
        auto rw = [&](const detail::Bytes* old) -> detail::Bytes {
            result = old ? detail::decode_item<V>(*old) : init;
            fn(result);
            return detail::encode_stored(vb.emplace(), result);
        };
        obj_.backend().modify(obj_, detail::ModifySlot{detail::encode_stored(kb, key)}, detail::Rewriter(rw));
        return result;
    }
    /// d.update(pairs): any range of pair-likes whose parts convert to K and
    /// V (std::map, vector<pair>, a view), applied under one lock hold.
    template <std::ranges::input_range Range>
    void update(Range&& pairs) const {
        detail::StoredBatch<K> ks;
        detail::StoredBatch<V> vs;
        for (auto&& kv : pairs) {
            auto&& [k, v] = kv;
            ks.add(k);
            vs.add(v);
        }
        const std::vector<detail::Bytes> kb = ks.bytes(), vb = vs.bytes();
        detail::invoke<detail::mop::op::dict_update>(obj_, detail::mop::BytesList(kb), detail::mop::BytesList(vb));
    }
    void update(std::initializer_list<std::pair<K, V>> pairs) const {
        update<const std::initializer_list<std::pair<K, V>>&>(pairs);
    }
    /// d |= pairs (Python 3.9): update().
    template <std::ranges::input_range Range>
    const DictProxy& operator|=(Range&& pairs) const {
        update(std::forward<Range>(pairs));
        return *this;
    }
    const DictProxy& operator|=(std::initializer_list<std::pair<K, V>> pairs) const {
        update(pairs);
        return *this;
    }
    const DictProxy& operator|=(const DictProxy& other) const {
        update(other.items());
        return *this;
    }
    /// dict.fromkeys(keys, value), as a new dict in the same manager (use
    /// copy() for a plain one): every key of the range, mapped to `value`.
    template <std::ranges::input_range Range>
    DictProxy fromkeys(Range&& keys, const V& value = V{}) const {
        return fromkeys_of(keys, value);
    }
    template <class T>
    DictProxy fromkeys(std::initializer_list<T> keys, const V& value = V{}) const {
        return fromkeys_of(keys, value);
    }

    /// Snapshots, in insertion order.
    std::vector<K> keys() const {
        std::vector<K> out;
        detail::Collect<K> c{out};
        detail::invoke<detail::mop::op::dict_keys>(obj_, detail::mop::Sink(c));
        return out;
    }
    std::vector<V> values() const {
        std::vector<V> out;
        detail::Collect<V> c{out};
        detail::invoke<detail::mop::op::dict_values>(obj_, detail::mop::Sink(c));
        return out;
    }
    /// Every (key, value), consistently (under one lock hold).
    std::vector<std::pair<K, V>> items() const {
        std::vector<std::pair<K, V>> out;
        std::optional<K> k;
        auto both = [&](detail::Bytes b) {
            if (!k) {
                k = detail::decode_item<K>(b);
            } else {
                out.emplace_back(std::move(*k), detail::decode_item<V>(b));
                k.reset();
            }
        };
        detail::invoke<detail::mop::op::dict_items>(obj_, detail::mop::Sink(both));
        return out;
    }
    /// d.copy(): a plain copy (std::map by default; any map type, or a
    /// vector of pairs for insertion order, constructible from items()).
    template <class Map = std::map<K, V>>
    Map copy() const {
        auto all = items();
        return Map(std::make_move_iterator(all.begin()), std::make_move_iterator(all.end()));
    }
    /// for (auto& [k, v] : d): over a snapshot of items(), in insertion order.
    detail::SnapshotIterator<std::pair<K, V>> begin() const {
        return detail::SnapshotIterator<std::pair<K, V>>(items());
    }
    std::default_sentinel_t end() const noexcept { return {}; }

    std::size_t size() const { return detail::invoke<detail::mop::op::dict_size>(obj_); }
    bool empty() const { return size() == 0; }
    void clear() const { detail::invoke<detail::mop::op::dict_clear>(obj_); }

    /// d[key] as an expression: read it (KeyError if absent), assign it, or
    /// `d[key] += x` (atomic; an absent key starts from V{}, as std::map).
    class Item {
    public:
        operator V() const { return d_.at(key_); }
        Item& operator=(const V& v) {
            d_.set(key_, v);
            return *this;
        }
        template <class U>
        Item& operator+=(const U& x) {
            d_.modify(key_, [&](V& v) { v += x; });
            return *this;
        }
        template <class U>
        Item& operator-=(const U& x) {
            d_.modify(key_, [&](V& v) { v -= x; });
            return *this;
        }

    private:
        friend class DictProxy;
        Item(const DictProxy& d, const K& key) : d_(d), key_(key) {}
        DictProxy d_;
        K key_;
    };
    Item operator[](const K& key) const { return Item(*this, key); }

    void mproc_export(detail::HandleWriter& w) const { obj_.mproc_export(w); }
    static DictProxy mproc_import(detail::HandleReader& r) {
        return DictProxy(detail::ManagedObject::import(r, kind, tag()));
    }

private:
    friend class Manager;
    static constexpr detail::mop::Kind kind = detail::mop::Kind::dict;
    static constexpr std::uint64_t tag() { return detail::proxy_type_tag<K, V>(); }
    template <class Range>
    DictProxy fromkeys_of(Range& keys, const V& value) const {
        DictProxy d(detail::ManagedObject(
            obj_.backend_ptr(),
            detail::invoke<detail::mop::op::create>(detail::manager_of(obj_), kind, tag()), kind, tag()));
        detail::StoredBatch<K> ks;
        for (auto&& k : keys) ks.add(std::forward<decltype(k)>(k));
        detail::ScratchOutBuf one;
        const detail::Bytes vbytes = detail::encode_stored(one, value);
        const std::vector<detail::Bytes> kb = ks.bytes(), vb(kb.size(), vbytes);
        detail::invoke<detail::mop::op::dict_update>(d.obj_, detail::mop::BytesList(kb), detail::mop::BytesList(vb));
        return d;
    }
    explicit DictProxy(detail::ManagedObject obj) : obj_(std::move(obj)) {
        detail::check_storable<K>();
        detail::check_storable<V>();
    }
    detail::ManagedObject obj_;
};

/// Python's manager.Namespace(): named attributes of any serializable
/// types. get<T> of an attribute stored as another type is a
/// SerializationError; of a missing one, KeyError.
class NamespaceProxy {
public:
    NamespaceProxy() = default;

    template <class T>
    void set(const std::string& name, const T& value) const {
        detail::check_storable<T>();
        detail::ScratchOutBuf kb, vb;
        const std::uint64_t t = detail::proxy_type_tag<T>();
        vb.write(&t, sizeof t);
        if constexpr (detail::is_raw_item<T>) vb.write(&value, sizeof(T));
        else detail::dump_to(vb, value);
        detail::invoke<detail::mop::op::dict_set>(obj_, detail::encode_stored(kb, name), vb.bytes());
    }
    template <class T>
    T get(const std::string& name) const {
        std::optional<T> v = find<T>(name);
        if (!v) throw KeyError("mproc Namespace has no attribute '" + name + "'");
        return std::move(*v);
    }
    template <class T>
    T get(const std::string& name, const T& fallback) const {
        std::optional<T> v = find<T>(name);
        return v ? std::move(*v) : fallback;
    }
    bool has(const std::string& name) const {
        detail::ScratchOutBuf kb;
        return detail::invoke<detail::mop::op::dict_contains>(obj_, detail::encode_stored(kb, name));
    }
    /// del ns.name; false if there was none.
    bool erase(const std::string& name) const {
        detail::ScratchOutBuf kb;
        return detail::invoke<detail::mop::op::dict_erase>(obj_, detail::encode_stored(kb, name));
    }
    /// The attributes' names, in the order they were first set.
    std::vector<std::string> names() const {
        std::vector<std::string> out;
        detail::Collect<std::string> c{out};
        detail::invoke<detail::mop::op::dict_keys>(obj_, detail::mop::Sink(c));
        return out;
    }

    void mproc_export(detail::HandleWriter& w) const { obj_.mproc_export(w); }
    static NamespaceProxy mproc_import(detail::HandleReader& r) {
        return NamespaceProxy(detail::ManagedObject::import(r, kind, tag()));
    }

private:
    friend class Manager;
    static constexpr detail::mop::Kind kind = detail::mop::Kind::dict;
    static constexpr std::uint64_t tag() { return detail::proxy_type_tag<NamespaceProxy>(); }
    explicit NamespaceProxy(detail::ManagedObject obj) : obj_(std::move(obj)) {}

    template <class T>
    std::optional<T> find(const std::string& name) const {
        std::optional<T> out;
        auto f = [&](detail::Bytes b) {
            std::uint64_t t = 0;
            if (b.size() >= sizeof t) std::memcpy(&t, b.data(), sizeof t);
            if (b.size() < sizeof t || t != detail::proxy_type_tag<T>())
                throw SerializationError("mproc Namespace attribute '" + name + "' holds another type than get<" +
                                         std::string(detail::type_name<T>()) + "> asked for");
            out = detail::decode_item<T>(b.subspan(sizeof t));
        };
        detail::ScratchOutBuf kb;
        detail::invoke<detail::mop::op::dict_get>(obj_, detail::encode_stored(kb, name), detail::mop::Sink(f));
        return out;
    }
    detail::ManagedObject obj_;
};

}  // namespace mproc
