// mproc::detail — the type-erased core of manager containers.
//
// A Manager owns one shared heap (lib/manager/heap.cpp): a memfd mapped
// whole, reserved large and backed on demand, with a lock-free allocator.
// Every container is an object in it: a robust mutex and one word naming
// its current table. Keys and values are stored as their encoded bytes
// (ItemCodec below). SharedObject does the container operations on bytes;
// the typed proxies in <mproc/manager.hpp> encode and decode around it.
//
// Crash safety: every change a process makes becomes visible through a
// single aligned 64-bit store (a slot, a table word, a length), made after
// everything it points to is written. A process killed at any instruction
// can therefore leave only (a) blocks it allocated and never published —
// lost to the heap, not corrupting it — and (b) stale counters, which the
// next locker recomputes when the robust mutex reports the owner's death.
//
// Thread safety: SharedObject is a handle; its operations may be called
// from any thread and process at once. They block only on the object's
// lock, held for the few memory accesses of one operation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "mproc/detail/segment.hpp"
#include "mproc/duration.hpp"
#include "mproc/detail/serialize_buffers.hpp"

namespace mproc::detail {

using Bytes = std::span<const std::byte>;

/// A callback that sees bytes in shared memory, under the object's lock.
class BytesSink {
public:
    template <class F>
    explicit BytesSink(F& f) noexcept
        : ctx_(&f), call_([](void* c, Bytes b) { (*static_cast<F*>(c))(b); }) {}
    void operator()(Bytes b) const { call_(ctx_, b); }

private:
    void* ctx_;
    void (*call_)(void*, Bytes);
};

/// A callback that sees a key and a value under the object's lock.
class PairSink {
public:
    template <class F>
    explicit PairSink(F& f) noexcept
        : ctx_(&f), call_([](void* c, Bytes k, Bytes v) { (*static_cast<F*>(c))(k, v); }) {}
    void operator()(Bytes k, Bytes v) const { call_(ctx_, k, v); }

private:
    void* ctx_;
    void (*call_)(void*, Bytes, Bytes);
};

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

enum class ObjectKind : std::uint32_t { dict = 1, list = 2, value = 3, queue = 4 };

class SharedObject;
/// A connection to a served manager (lib/manager/remote.cpp).
class RemoteLink;
using RemoteLinkPtr = std::shared_ptr<RemoteLink>;

/// The manager's heap: creates objects, reports usage, and is shut down.
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
    /// Marks the heap shut down: every proxy operation then throws
    /// ValueError, in every process.
    void shut_down() const;
    bool is_shut_down() const;

    /// Names `obj` (an object of this heap) for lookup(), replacing any
    /// object of that name.
    void publish(const std::string& name, const SharedObject& obj) const;
    /// The object published as `name`: KeyError if none, SerializationError
    /// if it is another kind or type.
    SharedObject lookup(const std::string& name, ObjectKind kind, std::uint64_t type_tag) const;

    /// The heap as a handle (for the server process).
    void mproc_export(HandleWriter& w) const;
    static SharedHeap mproc_import(HandleReader& r);

private:
    friend class SharedObject;
    explicit SharedHeap(SegmentPtr seg) : seg_(std::move(seg)) {}
    SharedObject registry() const;
    SegmentPtr seg_;
};

/// A server process answering remote proxies' operations on one heap.
class ManagerServer {
public:
    /// Listens on `address` ("host:port", port 0 = any) and serves clients
    /// that prove they know `authkey`. Returns once it is listening.
    ManagerServer(const SharedHeap& heap, const std::string& address, const std::string& authkey);
    ~ManagerServer();  // stop()
    ManagerServer(const ManagerServer&) = delete;
    ManagerServer& operator=(const ManagerServer&) = delete;
    /// The bound "host:port".
    const std::string& address() const noexcept { return address_; }
    void stop();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    std::string address_;
};

/// Connects to a served manager (AuthenticationError on a wrong authkey).
RemoteLinkPtr remote_connect(const std::string& address, const std::string& authkey, Duration timeout);

/// One container in a SharedHeap.
class SharedObject {
public:
    SharedObject() = default;
    /// A new, empty object. `type_tag` identifies the proxy's template
    /// arguments; a handle imported as another type is refused.
    static SharedObject create(const SharedHeap& heap, ObjectKind kind, std::uint64_t type_tag,
                               std::uint64_t maxsize = 0);
    /// A new object on a served manager, or the one published as `name`.
    static SharedObject create(const RemoteLinkPtr& link, ObjectKind kind, std::uint64_t type_tag,
                               std::uint64_t maxsize = 0);
    static SharedObject lookup(const RemoteLinkPtr& link, const std::string& name, ObjectKind kind,
                               std::uint64_t type_tag);
    /// Publishes this object under `name` on its manager (local or remote).
    void publish_as(const std::string& name) const;
    bool is_remote() const noexcept { return static_cast<bool>(link_); }

    void mproc_export(HandleWriter& w) const;
    static SharedObject import(HandleReader& r, ObjectKind kind, std::uint64_t type_tag);

    // ---- dict (also Namespace) ----
    /// Inserts or replaces.
    void dict_set(Bytes key, Bytes value) const;
    /// Calls `sink` with the value under the lock; false if absent.
    bool dict_get(Bytes key, BytesSink sink) const;
    bool dict_contains(Bytes key) const;
    /// Removes the key; if `sink`, it sees the value first. False if absent.
    bool dict_erase(Bytes key, const BytesSink* sink = nullptr) const;
    /// Inserts only if absent; true if it inserted.
    bool dict_insert(Bytes key, Bytes value) const;
    /// Replaces the value with rewrite(old) atomically; absent keys get
    /// rewrite(nullptr). On a connected manager rewrite may run more than
    /// once (compare-and-swap with retries).
    void dict_rewrite(Bytes key, Rewriter rewrite) const;
    /// Every entry, under one lock hold, in table order.
    void dict_items(PairSink sink) const;
    /// Inserts or replaces every pair under one lock hold.
    void dict_set_many(std::span<const Bytes> keys, std::span<const Bytes> values) const;

    // ---- list ----
    void list_append(Bytes value) const;
    /// Appends all, atomically: other processes see none or all of them.
    void list_extend(std::span<const Bytes> values) const;
    /// Python indexing: negative counts from the end. IndexError if out of
    /// range.
    void list_at(std::int64_t index, BytesSink sink) const;
    void list_set(std::int64_t index, Bytes value) const;
    void list_insert(std::int64_t index, Bytes value) const;
    /// Removes item `index` after `sink` has seen it.
    void list_pop(std::int64_t index, BytesSink sink) const;
    void list_rewrite(std::int64_t index, Rewriter rewrite) const;
    void list_items(BytesSink sink) const;

    // ---- value ----
    void value_set(Bytes value) const;
    void value_get(BytesSink sink) const;
    void value_rewrite(Rewriter rewrite) const;

    // ---- queue ----
    /// Appends; waits for room in a bounded queue. False on timeout.
    bool queue_put(Bytes value, Timeout timeout) const;
    /// Takes the oldest item after `sink` has seen it (an item `sink`
    /// throws on stays). False on timeout.
    bool queue_get(BytesSink sink, Timeout timeout) const;
    /// ValueError if called more times than items were put.
    void queue_task_done() const;
    /// Waits until every item put has been task_done(); false on timeout.
    bool queue_join(Timeout timeout) const;
    std::size_t queue_maxsize() const;

    // ---- any ----
    /// Entries in a dict, list or queue (1 for a value).
    std::size_t size() const;
    void clear() const;

    const SegmentPtr& segment() const noexcept { return seg_; }

    /// The object at `off` in `seg`, checked to be a `kind` of `type_tag`
    /// (SerializationError otherwise).
    static SharedObject attach(SegmentPtr seg, std::uint64_t off, ObjectKind kind, std::uint64_t type_tag);
    std::uint64_t offset() const noexcept { return off_; }
    ObjectKind kind() const noexcept { return kind_; }
    std::uint64_t type_tag() const noexcept { return tag_; }

private:
    friend struct RemoteOps;
    friend class SharedHeap;
    SharedObject(SegmentPtr seg, std::uint64_t off, ObjectKind kind, std::uint64_t tag)
        : seg_(std::move(seg)), off_(off), kind_(kind), tag_(tag) {}
    SegmentPtr seg_;
    RemoteLinkPtr link_;
    std::uint64_t off_ = 0;
    ObjectKind kind_ = ObjectKind::dict;
    std::uint64_t tag_ = 0;
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
