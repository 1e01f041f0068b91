// mproc::detail — the type-erased core under manager proxies.
//
// A proxy (DictProxy, ListProxy, ...) holds a ManagedObject: which object
// (its id in the manager, its kind and type tag) and the Backend that runs
// operations on it. Two backends implement the one interface:
//   - local (lib/manager/local_backend.cpp): the object lives in the
//     manager's shared heap, which this process maps; an operation is a
//     robust lock and a few memory accesses (see lib/manager/heap.hpp for
//     the heap, object.hpp for the crash-safety rules);
//   - remote (lib/manager/client.cpp): the object lives in a served
//     manager; an operation is one request and one reply over TCP, and the
//     server runs the same local implementation in the thread serving this
//     connection.
// Proxies never ask which one they have. Every operation is a row of the
// table in manager_ops.hpp, called as invoke<mop::op::name>(object, args...).
//
// Thread safety: a ManagedObject is a handle (shared_ptr semantics); its
// operations may be called from any thread and process at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/detail/item_codec.hpp"
#include "mproc/detail/manager_ops.hpp"
#include "mproc/detail/segment.hpp"
#include "mproc/detail/serialize_buffers.hpp"
#include "mproc/duration.hpp"
#include "mproc/errors.hpp"

namespace mproc::detail {

using Bytes = mop::Bytes;

/// Read-modify-write under the object's lock: gets the current value's
/// bytes (nullptr if absent) and returns the new value's bytes, which must
/// stay valid until the call returns.
class Rewriter {
public:
    template <class F>
    explicit Rewriter(F& f) noexcept
        : ctx_(&f), call_([](void* c, const Bytes* old) { return (*static_cast<F*>(c))(old); }) {}
    Bytes operator()(const Bytes* old) const { return call_(ctx_, old); }

private:
    void* ctx_;
    Bytes (*call_)(void*, const Bytes*);
};

/// A list's new order: sees every item's bytes and fills `order` with a
/// permutation of their positions (order[i] = the old position of item i).
class Reorderer {
public:
    template <class F>
    explicit Reorderer(F& f) noexcept
        : ctx_(&f), call_([](void* c, std::span<const Bytes> items, std::vector<std::uint64_t>& order) {
              (*static_cast<F*>(c))(items, order);
          }) {}
    void operator()(std::span<const Bytes> items, std::vector<std::uint64_t>& order) const {
        call_(ctx_, items, order);
    }

private:
    void* ctx_;
    void (*call_)(void*, std::span<const Bytes>, std::vector<std::uint64_t>&);
};

/// Which stored value modify() rewrites: a dict's key, a list's index, or a
/// Value's value (by the object's kind).
struct ModifySlot {
    Bytes key;               // dict
    std::int64_t index = 0;  // list
};

class ManagedObject;

/// Runs operations on a manager's objects: the local heap, or a server.
class Backend {
public:
    virtual ~Backend() = default;
    /// Runs operation `id` on `obj`. `args` points at the row's Args tuple,
    /// `result` at its Result (nullptr for void).
    virtual void invoke(mop::OpId id, const ManagedObject& obj, void* args, void* result) const = 0;
    /// Replaces one stored value by rewrite(old), atomically. Locally the
    /// function runs once under the object's lock; remotely it is a
    /// compare-and-swap loop and may run more than once.
    virtual void modify(const ManagedObject& obj, const ModifySlot& slot, Rewriter rewrite) const = 0;
    /// Reorders a list atomically (sort): locally under its lock, remotely
    /// a snapshot, then a reorder that applies only if nothing changed.
    virtual void reorder(const ManagedObject& obj, Reorderer order) const = 0;
    /// Where object `id` is in this process's mapping (0 for a remote
    /// backend), after checking that it is a `kind` made with `type_tag`
    /// (SerializationError otherwise).
    virtual std::uint64_t bind(mop::ObjectId id, mop::Kind kind, std::uint64_t type_tag) const = 0;
    /// Writes `obj` as a handle another process can import (a remote
    /// backend refuses: connect from that process instead).
    virtual void export_handle(const ManagedObject& obj, HandleWriter& w) const = 0;
};

using BackendPtr = std::shared_ptr<const Backend>;

/// One object of a manager, as proxies hold it.
class ManagedObject {
public:
    ManagedObject() = default;
    /// Binds object `id` of `backend` (checked to be a `kind` of `type_tag`).
    ManagedObject(BackendPtr backend, mop::ObjectId id, mop::Kind kind, std::uint64_t type_tag)
        : be_(std::move(backend)), id_(id), kind_(kind), tag_(type_tag) {
        off_ = be_->bind(id_, kind_, tag_);
    }

    const Backend& backend() const {
        if (!be_) throw ValueError("mproc::Manager: using an empty (default-constructed) proxy");
        return *be_;
    }
    const BackendPtr& backend_ptr() const noexcept { return be_; }
    mop::ObjectId id() const noexcept { return id_; }
    mop::Kind kind() const noexcept { return kind_; }
    std::uint64_t type_tag() const noexcept { return tag_; }
    /// Where the object is in this process's mapping (local backends).
    std::uint64_t offset() const noexcept { return off_; }

    void mproc_export(HandleWriter& w) const { backend().export_handle(*this, w); }
    /// A proxy's handle, checked to be a `kind` of `type_tag`.
    static ManagedObject import(HandleReader& r, mop::Kind kind, std::uint64_t type_tag);

private:
    BackendPtr be_;
    mop::ObjectId id_{};
    mop::Kind kind_ = mop::Kind::manager;
    std::uint64_t tag_ = 0;
    std::uint64_t off_ = 0;
};

/// The manager that holds `obj` (its object 0).
inline ManagedObject manager_of(const ManagedObject& obj) {
    return ManagedObject(obj.backend_ptr(), mop::ObjectId{0}, mop::Kind::manager, 0);
}

/// Runs operation O on `obj`: the one way proxies reach their objects.
template <class O, class... A>
typename O::Result invoke(const ManagedObject& obj, A&&... args) {
    typename O::Args packed(std::forward<A>(args)...);
    if constexpr (std::is_void_v<typename O::Result>) {
        obj.backend().invoke(O::id, obj, &packed, nullptr);
    } else {
        typename O::Result result{};
        obj.backend().invoke(O::id, obj, &packed, &result);
        return result;
    }
}

/// An OutBuf writing into a per-thread scratch vector, leased for the
/// OutBuf's lifetime and returned (not freed) after: encoding is
/// allocation-free once a thread has warmed up, and nested operations (a
/// modify() whose function touches another container) get their own.
class ScratchOutBuf final : public OutBuf {
public:
    ScratchOutBuf() {
        auto& pool = free_buffers();
        if (!pool.empty()) {
            buf_ = std::move(pool.back());
            pool.pop_back();
        }
        if (buf_.size() < 256) buf_.resize(256);
        auto* b = reinterpret_cast<char*>(buf_.data());
        set_area(b, b + buf_.size());
    }
    ~ScratchOutBuf() override {
        auto& pool = free_buffers();
        if (pool.size() < 8 && buf_.size() <= (std::size_t{1} << 20)) pool.push_back(std::move(buf_));
    }
    Bytes bytes() const noexcept { return Bytes(buf_.data(), written()); }

protected:
    void need(std::size_t n) override {
        const std::size_t used = written();
        std::size_t cap = buf_.size() * 2;
        if (cap - used < n) cap = used + n;
        buf_.resize(cap);
        auto* b = reinterpret_cast<char*>(buf_.data());
        setp(b + used, b + cap);
        rebase(used);
    }

private:
    static std::vector<std::vector<std::byte>>& free_buffers() {
        thread_local std::vector<std::vector<std::byte>> pool;
        return pool;
    }
    std::vector<std::byte> buf_;
};

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

/// The stored bytes of every element of a range, converted to T, for a
/// bulk operation (extend, update, a constructor from a range). The
/// converted values and their encodings are owned here, so every span in
/// bytes() stays valid for the batch's lifetime, whatever the range gives:
/// views such as std::views::iota yield temporaries, a range of another
/// element type converts each one, an input range reuses one object.
template <class T>
class StoredBatch {
public:
    template <class U>
    void add(U&& v) {
        if constexpr (is_raw_item<T>) {
            values_.push_back(static_cast<T>(std::forward<U>(v)));
        } else {
            const std::size_t at = out_.written();
            if constexpr (std::is_same_v<std::remove_cvref_t<U>, T>) {
                dump_to(out_, v);
            } else {
                const T converted = static_cast<T>(std::forward<U>(v));
                dump_to(out_, converted);
            }
            ends_.push_back({at, out_.written()});
        }
    }
    std::size_t size() const noexcept { return is_raw_item<T> ? values_.size() : ends_.size(); }
    /// The spans, valid until the batch is destroyed or added to.
    std::vector<Bytes> bytes() const {
        std::vector<Bytes> out;
        out.reserve(size());
        if constexpr (is_raw_item<T>) {
            for (const T& v : values_) out.push_back(std::as_bytes(std::span<const T, 1>(&v, 1)));
        } else {
            const Bytes all = out_.bytes();
            for (auto [b, e] : ends_) out.push_back(all.subspan(b, e - b));
        }
        return out;
    }

private:
    std::vector<T> values_;                                  // raw items
    ScratchOutBuf out_;                                      // encoded items, back to back
    std::vector<std::pair<std::size_t, std::size_t>> ends_;  // [begin, end) of each in out_
};

template <class T>
void check_storable() {
    static_assert(is_serializable_v<T>, "manager containers hold serializable types only");
    static_assert(!exports_handle<T>,
                  "manager containers cannot hold mproc handles (Queue, Lock, proxies): a container "
                  "outlives the processes that would hold the handle's memory");
}

/// Iteration over a proxy: a snapshot taken by begin(), as `for x in
/// list(l)` in Python; the proxy's later changes do not show.
template <class T>
class SnapshotIterator {
public:
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    using reference = const T&;
    using iterator_category = std::input_iterator_tag;

    SnapshotIterator() = default;
    explicit SnapshotIterator(std::vector<T> items)
        : items_(std::make_shared<const std::vector<T>>(std::move(items))) {}
    const T& operator*() const { return (*items_)[i_]; }
    const T* operator->() const { return &(*items_)[i_]; }
    SnapshotIterator& operator++() {
        ++i_;
        return *this;
    }
    void operator++(int) { ++i_; }
    bool operator==(std::default_sentinel_t) const noexcept { return !items_ || i_ >= items_->size(); }

private:
    std::shared_ptr<const std::vector<T>> items_;
    std::size_t i_ = 0;
};

/// Decodes every value a Sink yields into `out`.
template <class T>
struct Collect {
    std::vector<T>& out;
    void operator()(Bytes b) const { out.push_back(decode_item<T>(b)); }
};

/// Decodes the one value a Sink yields.
template <class T>
struct Take {
    std::optional<T>& out;
    void operator()(Bytes b) const { out = decode_item<T>(b); }
};

/// The manager's shared heap (lib/manager/heap.hpp, names.cpp): created by a local
/// Manager, served by its server process.
class SharedHeap {
public:
    /// A new heap reserving `max_bytes` of address space (backed lazily).
    static SharedHeap create(std::size_t max_bytes);
    SharedHeap() = default;

    const SegmentPtr& segment() const noexcept { return seg_; }
    explicit operator bool() const noexcept { return static_cast<bool>(seg_); }
    /// Bytes handed out and not yet freed (blocks, headers included).
    std::size_t used_bytes() const;
    /// Bytes backed by memory (the heap's high-water mark).
    std::size_t committed_bytes() const;
    std::size_t max_bytes() const;
    /// Marks the heap shut down and wakes every process waiting on one of
    /// its objects: every operation then throws ValueError, everywhere.
    void shut_down() const;

    /// The heap as a handle (for the server process).
    void mproc_export(HandleWriter& w) const;
    static SharedHeap mproc_import(HandleReader& r);

private:
    explicit SharedHeap(SegmentPtr seg) : seg_(std::move(seg)) {}
    SegmentPtr seg_;
};

/// The backend of a local Manager: operations on `heap` in this process.
BackendPtr local_backend(const SharedHeap& heap);
/// How Manager::connect talks to its server.
struct ConnectOptions {
    /// For connecting and authenticating (each thread's connection).
    Duration timeout = Duration(10);
    /// Stores (dict set and update, list append and extend, Value set,
    /// clear) return once their request is sent, without waiting: the
    /// server answers such a store only if it fails (one round trip, and
    /// the server's write and the client's read, saved per store). The
    /// server applies them in order, before that thread's later
    /// operations; but another process may briefly not see a store that
    /// has returned, and a store's error (a shut-down manager, a full heap)
    /// is thrown by the thread's next operation that waits for its reply
    /// (any operation but such a store) instead of that operation's own
    /// result or error (which it then has had: it ran). Of several stores
    /// that fail before that operation, the first one's error is thrown;
    /// each store is applied or fails on its own. A thread that ends with
    /// no such operation after its last stores learns nothing of their
    /// failure. Python's proxies wait for every reply: off by default.
    bool pipeline_stores = false;
};

/// The backend of Manager::connect: operations sent to the manager served
/// at `address` (AuthenticationError on a wrong authkey).
BackendPtr remote_backend(const std::string& address, const std::string& authkey, const ConnectOptions& options);

/// How a served manager treats its clients.
struct ServeLimits {
    /// Connections served at once; beyond it a new client is refused with
    /// a message saying so (OSError ECONNREFUSED on its side).
    std::size_t max_connections = 512;
    /// Connections still authenticating at once; past it the oldest is
    /// dropped to make room (a slow or idle client cannot lock others out).
    std::size_t max_authenticating = 64;
    /// An unauthenticated connection that has not proven its key by then is
    /// closed.
    Duration handshake_timeout = Duration(10);
};

/// A server process answering remote proxies' operations on one heap.
class ManagerServer {
public:
    /// Listens on `address` ("host:port", port 0 = any) and serves clients
    /// that prove they know `authkey`. Returns once it is listening.
    ManagerServer(const SharedHeap& heap, const std::string& address, const std::string& authkey,
                  const ServeLimits& limits);
    ~ManagerServer();  // stop()
    ManagerServer(const ManagerServer&) = delete;
    ManagerServer& operator=(const ManagerServer&) = delete;
    /// The bound "host:port".
    const std::string& address() const noexcept { return address_; }
    /// The server process's pid.
    long pid() const noexcept;
    void stop();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    std::string address_;
};

/// getpid(), cached (the os layer's).
long current_pid() noexcept;

/// FNV-1a over a type's name: the tag proxies are created and imported with.
template <class... T>
constexpr std::uint64_t proxy_type_tag() {
    std::string_view s = __PRETTY_FUNCTION__;
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
    return h;
}

}  // namespace mproc::detail
