// mproc::Manager — multiprocessing.Manager(): containers shared by processes.
//
//   mproc::Manager mgr;
//   auto counts = mgr.dict<std::string, int>();
//   auto log    = mgr.list<std::string>();
//   auto ns     = mgr.Namespace();
//   mproc::Process p([](auto counts, auto log) {
//       counts.modify("apples", [](int& n) { n += 1; });   // atomic
//       log.append("counted");
//   }, counts, log);
//
// Python's Manager runs a server process and every proxy call is a round
// trip to it. Here the containers live in shared memory that every process
// maps, so an operation is a lock plus a few memory accesses: no server, no
// round trip, no process to start. Keys and values may be any serializable
// type (<mproc/serialization.hpp>); they are stored encoded (trivially
// copyable ones as their raw bytes), and dict keys compare by those bytes —
// give a struct key no padding, and note that 0.0 and -0.0 are two keys.
//
// The manager's heap is one anonymous memfd (never a /dev/shm name),
// reserved at ManagerOptions::max_bytes of address space and backed with
// memory only as containers grow; a heap that cannot grow throws
// mproc::Error. It is freed when the manager, its proxies, and every
// process holding them are gone. Containers live as long as the manager
// (clear() gives a container's entries back).
//
// Proxies (DictProxy, ListProxy, ValueProxy, NamespaceProxy, QueueProxy)
// are handles: cheap to copy, a copy refers to the same container; pass
// them to Process targets (fork or spawn), as pool task arguments, or
// through queues, to processes started before the manager too (they reopen
// its memory through /proc while the sender lives). Lock(), Event() and the
// other sync factories return the ordinary mproc objects, which are handles
// already.
//
// Atomicity and crashes: each operation takes its container's robust lock,
// so each is atomic with respect to every other operation on that
// container, in any thread or process; modify() makes read-modify-write
// atomic. A process killed at any instruction, even inside an operation,
// leaves the container whole and unlocked (it may lose the heap block it
// was writing). See detail/manager_core.hpp.
//
// Serving: mgr.serve("host:port", authkey) answers Manager::connect(address,
// authkey) from other processes or machines over TCP; their proxies send
// each operation to the server (see Manager below).
//
// Blocking: operations block only while another holds the container's lock
// (a few memory accesses, or the length of a modify() function); on a
// connected manager, for a network round trip (EOFError if the server is
// gone). After shutdown() every operation throws mproc::ValueError, in
// every process.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mproc/detail/item_codec.hpp"
#include "mproc/detail/manager_core.hpp"
#include "mproc/errors.hpp"
#include "mproc/process.hpp"
#include "mproc/queue.hpp"
#include "mproc/serialization.hpp"
#include "mproc/shared_memory.hpp"
#include "mproc/sync.hpp"

namespace mproc {

namespace detail {

/// The bytes a container stores for `v`: raw items are their own bytes
/// (no copy), others are encoded into `out`.
template <class T>
Bytes encode_stored(ScratchOutBuf& out, const T& v) {
    if constexpr (is_raw_item<T>) {
        return std::as_bytes(std::span<const T, 1>(&v, 1));
    } else {
        dump_to(out, v);
        return out.bytes();
    }
}

template <class T>
void check_storable() {
    static_assert(is_serializable_v<T>, "manager containers hold serializable types only");
    static_assert(!exports_handle<T>,
                  "manager containers cannot hold mproc handles (Queue, Lock, proxies): a container "
                  "outlives the processes that would hold the handle's memory");
}

}  // namespace detail

/// A dict in a Manager: DictProxy<K, V> from Manager::dict<K, V>().
template <class K, class V>
class DictProxy {
public:
    DictProxy() = default;

    /// d[key] = value.
    void set(const K& key, const V& value) const {
        detail::ScratchOutBuf kb, vb;
        obj_.dict_set(detail::encode_stored(kb, key), detail::encode_stored(vb, value));
    }
    /// d.get(key): the value, or nullopt.
    std::optional<V> get(const K& key) const {
        std::optional<V> out;
        auto sink = [&](detail::Bytes b) { out = detail::decode_item<V>(b); };
        detail::ScratchOutBuf kb;
        obj_.dict_get(detail::encode_stored(kb, key), detail::BytesSink(sink));
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
        return obj_.dict_contains(detail::encode_stored(kb, key));
    }
    /// del d[key]; false if it was absent (Python would raise KeyError).
    bool erase(const K& key) const {
        detail::ScratchOutBuf kb;
        return obj_.dict_erase(detail::encode_stored(kb, key));
    }
    /// d.pop(key): removes and returns the value, or nullopt.
    std::optional<V> pop(const K& key) const {
        std::optional<V> out;
        auto f = [&](detail::Bytes b) { out = detail::decode_item<V>(b); };
        detail::BytesSink sink(f);
        detail::ScratchOutBuf kb;
        obj_.dict_erase(detail::encode_stored(kb, key), &sink);
        return out;
    }
    /// d.setdefault(key, value): the value now stored for key.
    V setdefault(const K& key, const V& value) const {
        return modify(key, [](V&) {}, value);
    }
    /// Atomically: v = d.get(key, init); fn(v); d[key] = v; returns v.
    /// `fn` runs under the dict's lock: keep it short, and do not touch
    /// this dict from it. If it throws, the dict is unchanged.
    template <class F>
    V modify(const K& key, F&& fn, const V& init = V{}) const {
        V result;
        detail::ScratchOutBuf kb;
        const detail::Bytes kbytes = detail::encode_stored(kb, key);
        std::optional<detail::ScratchOutBuf> vb;
        auto rw = [&](const detail::Bytes* old) -> detail::Bytes {
            result = old ? detail::decode_item<V>(*old) : init;
            fn(result);
            return detail::encode_stored(vb.emplace(), result);
        };
        obj_.dict_rewrite(kbytes, detail::Rewriter(rw));
        return result;
    }
    /// d.update(pairs): any range of pair-likes (std::map, vector<pair>),
    /// applied under one lock hold.
    template <class Range>
    void update(const Range& pairs) const {
        std::vector<detail::ScratchOutBuf> bufs(2 * std::size(pairs));
        std::vector<detail::Bytes> ks, vs;
        std::size_t i = 0;
        for (const auto& [k, v] : pairs) {
            ks.push_back(detail::encode_stored(bufs[i++], static_cast<const K&>(k)));
            vs.push_back(detail::encode_stored(bufs[i++], static_cast<const V&>(v)));
        }
        obj_.dict_set_many(ks, vs);
    }
    void update(std::initializer_list<std::pair<K, V>> pairs) const {
        update<std::initializer_list<std::pair<K, V>>>(pairs);
    }

    std::vector<K> keys() const {
        std::vector<K> out;
        auto f = [&](detail::Bytes k, detail::Bytes) { out.push_back(detail::decode_item<K>(k)); };
        obj_.dict_items(detail::PairSink(f));
        return out;
    }
    std::vector<V> values() const {
        std::vector<V> out;
        auto f = [&](detail::Bytes, detail::Bytes v) { out.push_back(detail::decode_item<V>(v)); };
        obj_.dict_items(detail::PairSink(f));
        return out;
    }
    /// A consistent snapshot of every (key, value), in no particular order.
    std::vector<std::pair<K, V>> items() const {
        std::vector<std::pair<K, V>> out;
        auto f = [&](detail::Bytes k, detail::Bytes v) {
            out.emplace_back(detail::decode_item<K>(k), detail::decode_item<V>(v));
        };
        obj_.dict_items(detail::PairSink(f));
        return out;
    }
    std::size_t size() const { return obj_.size(); }
    bool empty() const { return size() == 0; }
    void clear() const { obj_.clear(); }

    /// d[key] as an expression: read it (KeyError if absent), assign it, or
    /// `d[key] += x` (atomic; an absent key starts from V{}, as std::map).
    class Item {
    public:
        operator V() const { return d_.at(key_); }
        Item& operator=(const V& v) { d_.set(key_, v); return *this; }
        template <class U>
        Item& operator+=(const U& x) { d_.modify(key_, [&](V& v) { v += x; }); return *this; }
        template <class U>
        Item& operator-=(const U& x) { d_.modify(key_, [&](V& v) { v -= x; }); return *this; }

    private:
        friend class DictProxy;
        Item(const DictProxy& d, const K& key) : d_(d), key_(key) {}
        DictProxy d_;
        K key_;
    };
    Item operator[](const K& key) const { return Item(*this, key); }

    void mproc_export(detail::HandleWriter& w) const { obj_.mproc_export(w); }
    static DictProxy mproc_import(detail::HandleReader& r) {
        return DictProxy(detail::SharedObject::import(r, detail::ObjectKind::dict, tag()));
    }

private:
    friend class Manager;
    static constexpr detail::ObjectKind kind = detail::ObjectKind::dict;
    static constexpr std::uint64_t tag() { return detail::proxy_type_tag<K, V>(); }
    explicit DictProxy(detail::SharedObject obj) : obj_(std::move(obj)) {
        detail::check_storable<K>();
        detail::check_storable<V>();
    }
    detail::SharedObject obj_;
};

/// A list in a Manager: ListProxy<T> from Manager::list<T>().
template <class T>
class ListProxy {
public:
    ListProxy() = default;

    void append(const T& v) const {
        detail::ScratchOutBuf b;
        obj_.list_append(detail::encode_stored(b, v));
    }
    /// Appends every element of `range`; other processes see all or none.
    template <class Range>
    void extend(const Range& range) const {
        std::vector<detail::ScratchOutBuf> bufs(std::size(range));
        std::vector<detail::Bytes> vs;
        std::size_t i = 0;
        for (const auto& v : range) vs.push_back(detail::encode_stored(bufs[i++], static_cast<const T&>(v)));
        obj_.list_extend(vs);
    }
    void extend(std::initializer_list<T> values) const { extend<std::initializer_list<T>>(values); }
    /// l[i]; negative i counts from the end. IndexError if out of range.
    T at(std::int64_t i) const {
        std::optional<T> out;
        auto f = [&](detail::Bytes b) { out = detail::decode_item<T>(b); };
        obj_.list_at(i, detail::BytesSink(f));
        return std::move(*out);
    }
    T operator[](std::int64_t i) const { return at(i); }
    /// l[i] = v.
    void set(std::int64_t i, const T& v) const {
        detail::ScratchOutBuf b;
        obj_.list_set(i, detail::encode_stored(b, v));
    }
    /// l.insert(i, v): before index i (clamped, as Python does).
    void insert(std::int64_t i, const T& v) const {
        detail::ScratchOutBuf b;
        obj_.list_insert(i, detail::encode_stored(b, v));
    }
    /// l.pop(i): removes and returns item i (the last by default).
    T pop(std::int64_t i = -1) const {
        std::optional<T> out;
        auto f = [&](detail::Bytes b) { out = detail::decode_item<T>(b); };
        obj_.list_pop(i, detail::BytesSink(f));
        return std::move(*out);
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
        obj_.list_rewrite(i, detail::Rewriter(rw));
        return result;
    }
    std::size_t size() const { return obj_.size(); }
    bool empty() const { return size() == 0; }
    void clear() const { obj_.clear(); }
    /// list(l): a consistent copy of every item.
    std::vector<T> snapshot() const {
        std::vector<T> out;
        auto f = [&](detail::Bytes b) { out.push_back(detail::decode_item<T>(b)); };
        obj_.list_items(detail::BytesSink(f));
        return out;
    }

    void mproc_export(detail::HandleWriter& w) const { obj_.mproc_export(w); }
    static ListProxy mproc_import(detail::HandleReader& r) {
        return ListProxy(detail::SharedObject::import(r, detail::ObjectKind::list, tag()));
    }

private:
    friend class Manager;
    static constexpr detail::ObjectKind kind = detail::ObjectKind::list;
    static constexpr std::uint64_t tag() { return detail::proxy_type_tag<ListProxy>(); }
    explicit ListProxy(detail::SharedObject obj) : obj_(std::move(obj)) { detail::check_storable<T>(); }
    detail::SharedObject obj_;
};

/// A single value in a Manager: Manager::Value<T>(init) (Python's
/// manager.Value; `.value` is get() / set()).
template <class T>
class ValueProxy {
public:
    ValueProxy() = default;
    T get() const {
        std::optional<T> out;
        auto f = [&](detail::Bytes b) { out = detail::decode_item<T>(b); };
        obj_.value_get(detail::BytesSink(f));
        return std::move(*out);
    }
    void set(const T& v) const {
        detail::ScratchOutBuf b;
        obj_.value_set(detail::encode_stored(b, v));
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
        obj_.value_rewrite(detail::Rewriter(rw));
        return result;
    }

    void mproc_export(detail::HandleWriter& w) const { obj_.mproc_export(w); }
    static ValueProxy mproc_import(detail::HandleReader& r) {
        return ValueProxy(detail::SharedObject::import(r, detail::ObjectKind::value, tag()));
    }

private:
    friend class Manager;
    static constexpr detail::ObjectKind kind = detail::ObjectKind::value;
    static constexpr std::uint64_t tag() { return detail::proxy_type_tag<ValueProxy>(); }
    explicit ValueProxy(detail::SharedObject obj) : obj_(std::move(obj)) { detail::check_storable<T>(); }
    detail::SharedObject obj_;
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
        const std::uint64_t tag = detail::proxy_type_tag<T>();
        vb.write(&tag, sizeof tag);
        if constexpr (detail::is_raw_item<T>) vb.write(&value, sizeof(T));
        else detail::dump_to(vb, value);
        obj_.dict_set(detail::encode_stored(kb, name), vb.bytes());
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
        return obj_.dict_contains(detail::encode_stored(kb, name));
    }
    /// del ns.name; false if there was none.
    bool erase(const std::string& name) const {
        detail::ScratchOutBuf kb;
        return obj_.dict_erase(detail::encode_stored(kb, name));
    }
    std::vector<std::string> names() const {
        std::vector<std::string> out;
        auto f = [&](detail::Bytes k, detail::Bytes) { out.push_back(detail::decode_item<std::string>(k)); };
        obj_.dict_items(detail::PairSink(f));
        return out;
    }

    void mproc_export(detail::HandleWriter& w) const { obj_.mproc_export(w); }
    static NamespaceProxy mproc_import(detail::HandleReader& r) {
        return NamespaceProxy(detail::SharedObject::import(r, detail::ObjectKind::dict, tag()));
    }

private:
    friend class Manager;
    static constexpr detail::ObjectKind kind = detail::ObjectKind::dict;
    static constexpr std::uint64_t tag() { return detail::proxy_type_tag<NamespaceProxy>(); }
    explicit NamespaceProxy(detail::SharedObject obj) : obj_(std::move(obj)) {}

    template <class T>
    std::optional<T> find(const std::string& name) const {
        std::optional<T> out;
        auto f = [&](detail::Bytes b) {
            std::uint64_t tag = 0;
            if (b.size() >= sizeof tag) std::memcpy(&tag, b.data(), sizeof tag);
            if (b.size() < sizeof tag || tag != detail::proxy_type_tag<T>())
                throw SerializationError("mproc Namespace attribute '" + name +
                                         "' holds another type than get<" + std::string(detail::type_name<T>()) +
                                         "> asked for");
            out = detail::decode_item<T>(b.subspan(sizeof tag));
        };
        detail::ScratchOutBuf kb;
        obj_.dict_get(detail::encode_stored(kb, name), detail::BytesSink(f));
        return out;
    }
    detail::SharedObject obj_;
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
        if (!obj_.queue_put(detail::encode_stored(b, item), timeout)) throw Full();
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
    std::size_t qsize() const { return obj_.size(); }
    bool empty() const { return qsize() == 0; }
    bool full() const {
        const std::size_t m = obj_.queue_maxsize();
        return m != 0 && qsize() >= m;
    }
    /// JoinableQueue: marks one item taken by get() as processed.
    void task_done() const { obj_.queue_task_done(); }
    /// JoinableQueue: waits until every item put has been task_done();
    /// false on timeout.
    bool join(Timeout timeout = std::nullopt) const { return obj_.queue_join(timeout); }

    void mproc_export(detail::HandleWriter& w) const { obj_.mproc_export(w); }
    static QueueProxy mproc_import(detail::HandleReader& r) {
        return QueueProxy(detail::SharedObject::import(r, kind, tag()));
    }

private:
    friend class Manager;
    static constexpr detail::ObjectKind kind = detail::ObjectKind::queue;
    static constexpr std::uint64_t tag() { return detail::proxy_type_tag<QueueProxy>(); }
    explicit QueueProxy(detail::SharedObject obj) : obj_(std::move(obj)) { detail::check_storable<T>(); }
    std::optional<T> take(Timeout timeout) const {
        std::optional<T> out;
        auto f = [&](detail::Bytes b) { out = detail::decode_item<T>(b); };
        obj_.queue_get(detail::BytesSink(f), timeout);
        return out;
    }
    detail::SharedObject obj_;
};

struct ManagerOptions {
    /// Address space the manager's heap may grow to. Only what containers
    /// use is backed by memory; past this, operations throw mproc::Error.
    /// Under an address-space limit (ulimit -v) the manager reserves less:
    /// Manager::max_bytes() says what it got.
    std::size_t max_bytes = std::size_t{32} << 30;
};

/// multiprocessing.Manager(). Not copyable; movable.
///
/// Serving (Python's BaseManager(address, authkey) + serve_forever): a
/// manager can serve() its containers on a TCP address; another process or
/// machine then calls Manager::connect(address, authkey) and gets a Manager
/// whose proxies send each operation to the server (a round trip per
/// operation, as in Python). Containers are found by name: publish(name,
/// proxy) on either side, lookup<Proxy>(name) on either side. Both ends
/// prove they know the authkey (HMAC-SHA256 challenge, both ways); the
/// traffic itself is not encrypted. A connected Manager shares dicts,
/// lists, Values, Namespaces and Queues; its Lock/Event/... factories throw. On a
/// connected manager modify() is a compare-and-swap loop: the function may
/// run more than once.
class Manager {
public:
    Manager() : Manager(ManagerOptions{}) {}
    explicit Manager(ManagerOptions opts)
        : heap_(detail::SharedHeap::create(opts.max_bytes)), owner_(detail::current_pid()) {}
    /// Shuts the manager down if this process created it (a forked child's
    /// copy going out of scope leaves the parent's containers alone).
    ~Manager() {
        if (owner_ == detail::current_pid()) shutdown();
    }
    Manager(Manager&& o) noexcept
        : heap_(std::exchange(o.heap_, {})), link_(std::move(o.link_)), server_(std::move(o.server_)),
          owner_(o.owner_) {}
    Manager& operator=(Manager&& o) noexcept {
        if (this != &o) {
            if (owner_ == detail::current_pid()) shutdown();
            heap_ = std::exchange(o.heap_, {});
            link_ = std::move(o.link_);
            server_ = std::move(o.server_);
            owner_ = o.owner_;
        }
        return *this;
    }
    Manager(const Manager&) = delete;
    Manager& operator=(const Manager&) = delete;

    /// Manager::connect: a Manager whose proxies reach the one served at
    /// `address` ("host:port"). AuthenticationError if the authkeys differ,
    /// OSError if nothing listens there, TimeoutError after `timeout`.
    static Manager connect(const std::string& address, const std::string& authkey = current_process().authkey(),
                           Duration timeout = Duration(10)) {
        Manager m(detail::remote_connect(address, authkey, timeout));
        return m;
    }

    /// Serves this manager's containers on `address` ("host:port"; port 0
    /// picks a free one; "0.0.0.0:port" for every interface) from a server
    /// process, until shutdown(). Returns the bound "host:port".
    std::string serve(const std::string& address = "127.0.0.1:0",
                      const std::string& authkey = current_process().authkey()) {
        heap();
        if (server_) throw ValueError("mproc::Manager::serve: already serving on " + server_->address());
        server_ = std::make_unique<detail::ManagerServer>(heap_, address, authkey);
        return server_->address();
    }
    /// The address serve() bound, or "" when not serving.
    std::string address() const { return server_ ? server_->address() : std::string(); }

    template <class K, class V>
    DictProxy<K, V> dict() const { return DictProxy<K, V>(make(DictProxy<K, V>::kind, DictProxy<K, V>::tag())); }
    /// dict(pairs): a new dict holding `pairs`.
    template <class K, class V, class Range>
    DictProxy<K, V> dict(const Range& pairs) const {
        auto d = dict<K, V>();
        d.update(pairs);
        return d;
    }
    template <class T>
    ListProxy<T> list() const { return ListProxy<T>(make(ListProxy<T>::kind, ListProxy<T>::tag())); }
    /// list(range): a new list holding the elements of `range`.
    template <class T, class Range>
    ListProxy<T> list(const Range& init) const {
        auto l = list<T>();
        l.extend(init);
        return l;
    }
    template <class T>
    ValueProxy<T> Value(const T& init = T{}) const {
        ValueProxy<T> v(make(ValueProxy<T>::kind, ValueProxy<T>::tag()));
        v.set(init);
        return v;
    }
    NamespaceProxy Namespace() const { return NamespaceProxy(make(NamespaceProxy::kind, NamespaceProxy::tag())); }

    /// Names a container so that lookup<Proxy>(name) finds it, here, in
    /// other processes, and on connected managers. Replaces an older one.
    template <class Proxy>
    void publish(const std::string& name, const Proxy& proxy) const {
        check_running();
        proxy.obj_.publish_as(name);
    }
    /// The container published as `name`: KeyError if there is none,
    /// SerializationError if it is not a Proxy (another container or type).
    template <class Proxy>
    Proxy lookup(const std::string& name) const {
        if (link_) return Proxy(detail::SharedObject::lookup(link_, name, Proxy::kind, Proxy::tag()));
        return Proxy(heap().lookup(name, Proxy::kind, Proxy::tag()));
    }

    /// manager.Queue(maxsize): a queue in the manager (0 = unbounded).
    template <class T>
    QueueProxy<T> Queue(std::size_t maxsize = 0) const {
        return QueueProxy<T>(make(QueueProxy<T>::kind, QueueProxy<T>::tag(), maxsize));
    }
    /// manager.JoinableQueue(maxsize): the same queue; task_done() and
    /// join() work on every QueueProxy.
    template <class T>
    QueueProxy<T> JoinableQueue(std::size_t maxsize = 0) const { return Queue<T>(maxsize); }

    /// The sync factories return mproc's own shared objects (handles).
    template <class T>
    mproc::Array<T> Array(std::size_t n) const { local("Array"); return mproc::Array<T>(n); }
    mproc::Lock Lock() const { local("Lock"); return mproc::Lock(); }
    mproc::RLock RLock() const { local("RLock"); return mproc::RLock(); }
    mproc::Event Event() const { local("Event"); return mproc::Event(); }
    mproc::Condition Condition() const { local("Condition"); return mproc::Condition(); }
    mproc::Semaphore Semaphore(unsigned value = 1) const { local("Semaphore"); return mproc::Semaphore(value); }
    mproc::BoundedSemaphore BoundedSemaphore(unsigned value = 1) const {
        local("BoundedSemaphore");
        return mproc::BoundedSemaphore(value);
    }
    mproc::Barrier Barrier(unsigned parties) const { local("Barrier"); return mproc::Barrier(parties); }

    /// Ends the manager: stops serving, and every proxy operation, in every
    /// process, then throws ValueError; the heap is freed once the last
    /// process holding a proxy lets go. On a connected manager, only drops
    /// the connection. Idempotent.
    void shutdown() {
        server_.reset();
        link_.reset();
        if (!heap_) return;
        heap_.shut_down();
        heap_ = {};
    }
    bool running() const noexcept { return heap_ || link_; }
    bool is_connected() const noexcept { return static_cast<bool>(link_); }

    /// Bytes the containers use now, and the heap's backed high-water mark
    /// (local managers).
    std::size_t used_bytes() const { return heap().used_bytes(); }
    std::size_t committed_bytes() const { return heap().committed_bytes(); }
    std::size_t max_bytes() const { return heap().max_bytes(); }

private:
    explicit Manager(detail::RemoteLinkPtr link) : link_(std::move(link)), owner_(detail::current_pid()) {}

    void check_running() const {
        if (!heap_ && !link_) throw ValueError("mproc::Manager has been shut down");
    }
    const detail::SharedHeap& heap() const {
        if (!heap_) {
            check_running();
            throw ValueError("mproc::Manager: a connected manager has no local heap");
        }
        return heap_;
    }
    void local(const char* what) const {
        check_running();
        if (link_)
            throw ValueError(std::string("mproc::Manager::") + what +
                             ": a connected Manager shares dicts, lists, Values, Namespaces and Queues; "
                             "create locks and events on the machine whose processes use them");
    }
    detail::SharedObject make(detail::ObjectKind kind, std::uint64_t tag, std::uint64_t maxsize = 0) const {
        if (link_) return detail::SharedObject::create(link_, kind, tag, maxsize);
        return detail::SharedObject::create(heap(), kind, tag, maxsize);
    }

    detail::SharedHeap heap_;
    detail::RemoteLinkPtr link_;
    std::unique_ptr<detail::ManagerServer> server_;
    long owner_ = 0;
};

}  // namespace mproc
