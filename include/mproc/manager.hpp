// mproc::Manager — multiprocessing.Manager(): objects shared by processes.
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
// trip to it. Here the objects live in shared memory that every process
// maps, so an operation is a lock plus a few memory accesses: no server, no
// round trip, no process to start. Keys and values may be any serializable
// type (<mproc/serialization.hpp>); they are stored encoded (trivially
// copyable ones as their raw bytes), and dict keys compare by those bytes —
// give a struct key no padding, and note that 0.0 and -0.0 are two keys.
//
// What a manager holds: dict (insertion-ordered, as Python's), list,
// Value, Namespace, Queue / JoinableQueue, and the sync objects Lock,
// RLock, Semaphore, BoundedSemaphore, Event, Condition and Barrier
// (<mproc/detail/manager_sync.hpp>). Each is reached through a proxy
// (DictProxy, ListProxy, ..., LockProxy, ...).
//
// The manager's heap is one anonymous memfd (never a /dev/shm name),
// reserved at ManagerOptions::max_bytes of address space and backed with
// memory only as objects grow; a heap that cannot grow throws mproc::Error.
// It is freed when the manager, its proxies, and every process holding them
// are gone. Objects live as long as the manager (clear() gives a
// container's entries back).
//
// Proxies are handles: cheap to copy, a copy refers to the same object;
// pass them to Process targets (fork or spawn), as pool task arguments, or
// through queues, to processes started before the manager too (they reopen
// its memory through /proc while the sender lives).
//
// Atomicity and crashes: each operation takes its object's robust lock, so
// each is atomic with respect to every other operation on that object, in
// any thread or process; modify() makes read-modify-write atomic, sort()
// and reverse() reorder atomically. A process killed at any instruction,
// even inside an operation, leaves every object whole and unlocked (it may
// lose the heap block it was writing); see lib/manager/object.hpp for the
// argument. A Lock held by a process that dies is released for it, and the
// next holder's owner_died() says so.
//
// Serving: mgr.serve("host:port", authkey) answers Manager::connect(address,
// authkey) from other processes or machines over TCP (or, with a unix
// socket address, from this machine only, as Python's Manager() listens);
// their proxies send
// each operation to the server, which runs it in a thread per client
// connection (see Manager below).
//
// Blocking: operations block only while another holds the object's lock (a
// few memory accesses, or the length of a modify() function), and the
// waiting ones (Queue get/put/join, the sync objects) until they can go on
// or their timeout passes, sleeping in the kernel; on a connected manager,
// also for a network round trip (EOFError if the server is gone).
// shutdown() wakes every waiter at once; from then on every operation
// throws mproc::ValueError, in every process.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <ranges>
#include <string>
#include <utility>

#include "mproc/detail/manager_core.hpp"
#include "mproc/detail/manager_dict.hpp"
#include "mproc/detail/manager_list.hpp"
#include "mproc/detail/manager_queue.hpp"
#include "mproc/detail/manager_sync.hpp"
#include "mproc/errors.hpp"
#include "mproc/process.hpp"
#include "mproc/queue.hpp"
#include "mproc/shared_memory.hpp"
#include "mproc/sync.hpp"

namespace mproc {

struct ManagerOptions {
    /// Address space the manager's heap may grow to. Only what objects use
    /// is backed by memory; past this, operations throw mproc::Error. Under
    /// an address-space limit (ulimit -v) the manager reserves less:
    /// Manager::max_bytes() says what it got.
    std::size_t max_bytes = std::size_t{32} << 30;
};

/// How serve() treats clients (see detail::ServeLimits).
using ServeOptions = detail::ServeLimits;
/// How connect() talks to the server (see detail::ConnectOptions).
using ConnectOptions = detail::ConnectOptions;

/// multiprocessing.Manager(). Not copyable; movable.
///
/// Serving (Python's BaseManager(address, authkey) + serve_forever): a
/// manager can serve() its objects on a TCP address; another process or
/// machine then calls Manager::connect(address, authkey) and gets a Manager
/// whose proxies send each operation to the server (a round trip per
/// operation, as in Python). Objects are found by name: publish(name,
/// proxy) on either side, lookup<Proxy>(name) on either side. Both ends
/// prove they know the authkey (HMAC-SHA256 challenge, both ways); the
/// traffic itself is not encrypted. A connected Manager shares every kind
/// of object; on it modify() and sort() are compare-and-swap loops (their
/// function may run more than once), and its proxies cannot be passed to
/// other processes (connect from there instead).
///
/// A served manager survives hostile clients: nothing is allocated for a
/// client before it proves its key beyond a few hundred bytes; a malformed
/// request, an unknown object or an operation of another kind of object is
/// an error reply to that client; connections are capped (ServeOptions),
/// and idle unauthenticated ones are closed.
class Manager {
public:
    Manager() : Manager(ManagerOptions{}) {}
    explicit Manager(ManagerOptions opts)
        : heap_(detail::SharedHeap::create(opts.max_bytes)),
          backend_(detail::local_backend(heap_)),
          owner_(detail::current_pid()) {}
    /// Shuts the manager down if this process created it (a forked child's
    /// copy going out of scope leaves the parent's objects alone).
    ~Manager() {
        if (owner_ == detail::current_pid()) shutdown();
    }
    Manager(Manager&& o) noexcept
        : heap_(std::exchange(o.heap_, {})),
          backend_(std::move(o.backend_)),
          server_(std::move(o.server_)),
          owner_(o.owner_) {}
    Manager& operator=(Manager&& o) noexcept {
        if (this != &o) {
            if (owner_ == detail::current_pid()) shutdown();
            heap_ = std::exchange(o.heap_, {});
            backend_ = std::move(o.backend_);
            server_ = std::move(o.server_);
            owner_ = o.owner_;
        }
        return *this;
    }
    Manager(const Manager&) = delete;
    Manager& operator=(const Manager&) = delete;

    /// Manager::connect: a Manager whose proxies reach the one served at
    /// `address` ("host:port"). AuthenticationError if the authkeys differ,
    /// OSError if nothing listens there (or the server is at its connection
    /// limit), TimeoutError after `timeout`.
    static Manager connect(const std::string& address, const std::string& authkey = current_process().authkey(),
                           Duration timeout = Duration(10)) {
        return connect(address, authkey, ConnectOptions{.timeout = timeout});
    }
    /// connect() with options: ConnectOptions::pipeline_stores lets stores
    /// return without waiting, the server answering only a failed one, and
    /// that error thrown by the thread's next operation that waits (see
    /// there for exactly what is reported).
    static Manager connect(const std::string& address, const std::string& authkey, const ConnectOptions& options) {
        return Manager(detail::remote_backend(address, authkey, options));
    }

    /// Serves this manager's objects on `address` ("host:port"; port 0
    /// picks a free one; "0.0.0.0:port" for every interface; or a unix
    /// socket: a path, or "@name" in the abstract namespace, as Listener
    /// takes them) from a server process, until shutdown(). Returns the
    /// bound address. A path's socket file is removed at shutdown().
    std::string serve(const std::string& address = "127.0.0.1:0",
                      const std::string& authkey = current_process().authkey(), const ServeOptions& options = {}) {
        heap();
        if (server_) throw ValueError("mproc::Manager::serve: already serving on " + server_->address());
        server_ = std::make_unique<detail::ManagerServer>(heap_, address, authkey, options);
        return server_->address();
    }
    /// The address serve() bound, or "" when not serving.
    std::string address() const { return server_ ? server_->address() : std::string(); }
    /// The serving process's pid, or 0 when not serving.
    long server_pid() const noexcept { return server_ ? server_->pid() : 0; }

    template <class K, class V>
    DictProxy<K, V> dict() const {
        return make<DictProxy<K, V>>(detail::invoke<detail::mop::op::create>(root(), DictProxy<K, V>::kind,
                                                                           DictProxy<K, V>::tag()));
    }
    /// dict(pairs): a new dict holding `pairs` (any range of pair-likes
    /// whose parts convert to K and V).
    template <class K, class V, std::ranges::input_range Range>
    DictProxy<K, V> dict(Range&& pairs) const {
        auto d = dict<K, V>();
        d.update(std::forward<Range>(pairs));
        return d;
    }
    template <class T>
    ListProxy<T> list() const {
        return make<ListProxy<T>>(detail::invoke<detail::mop::op::create>(root(), ListProxy<T>::kind, ListProxy<T>::tag()));
    }
    /// list(range): a new list holding the elements of `range` (any range
    /// whose elements convert to T, std::views::iota included).
    template <class T, std::ranges::input_range Range>
    ListProxy<T> list(Range&& init) const {
        auto l = list<T>();
        l.extend(std::forward<Range>(init));
        return l;
    }
    template <class T>
    ValueProxy<T> Value(const T& init = T{}) const {
        auto v = make<ValueProxy<T>>(
            detail::invoke<detail::mop::op::create>(root(), ValueProxy<T>::kind, ValueProxy<T>::tag()));
        v.set(init);
        return v;
    }
    NamespaceProxy Namespace() const {
        return make<NamespaceProxy>(
            detail::invoke<detail::mop::op::create>(root(), NamespaceProxy::kind, NamespaceProxy::tag()));
    }
    /// manager.Queue(maxsize): a queue in the manager (0 = unbounded).
    template <class T>
    QueueProxy<T> Queue(std::size_t maxsize = 0) const {
        return make<QueueProxy<T>>(
            detail::invoke<detail::mop::op::create_queue>(root(), QueueProxy<T>::tag(), std::uint64_t{maxsize}));
    }
    /// manager.JoinableQueue(maxsize): the same queue; task_done() and
    /// join() work on every QueueProxy.
    template <class T>
    QueueProxy<T> JoinableQueue(std::size_t maxsize = 0) const { return Queue<T>(maxsize); }

    LockProxy Lock() const { return make<LockProxy>(detail::invoke<detail::mop::op::create_lock>(root(), false)); }
    RLockProxy RLock() const { return make<RLockProxy>(detail::invoke<detail::mop::op::create_lock>(root(), true)); }
    SemaphoreProxy Semaphore(unsigned value = 1) const {
        return make<SemaphoreProxy>(
            detail::invoke<detail::mop::op::create_semaphore>(root(), std::uint64_t{value}, std::uint64_t{0}));
    }
    /// A Semaphore that may not be released past `value` (ValueError).
    SemaphoreProxy BoundedSemaphore(unsigned value = 1) const {
        if (value == 0) throw ValueError("mproc BoundedSemaphore: the bound must be at least 1");
        return make<SemaphoreProxy>(
            detail::invoke<detail::mop::op::create_semaphore>(root(), std::uint64_t{value}, std::uint64_t{value}));
    }
    EventProxy Event() const { return make<EventProxy>(detail::invoke<detail::mop::op::create_event>(root())); }
    /// manager.Condition(): with a new RLock of its own.
    ConditionProxy Condition() const { return Condition(RLock()); }
    /// manager.Condition(lock), `lock` from this manager.
    ConditionProxy Condition(const LockProxy& lock) const { return condition_on(lock.obj_); }
    ConditionProxy Condition(const RLockProxy& lock) const { return condition_on(lock.obj_); }
    /// manager.Barrier(parties, timeout): `timeout` is the default of wait().
    BarrierProxy Barrier(unsigned parties, Timeout timeout = std::nullopt) const {
        return BarrierProxy(
            object(detail::invoke<detail::mop::op::create_barrier>(root(), std::uint64_t{parties}), BarrierProxy::kind,
                   BarrierProxy::tag()),
            timeout);
    }
    /// manager.Array: mproc's own shared Array (local managers only).
    template <class T>
    mproc::Array<T> Array(std::size_t n) const {
        heap();
        return mproc::Array<T>(n);
    }

    /// Names an object so that lookup<Proxy>(name) finds it, here, in other
    /// processes, and on connected managers. Replaces an older one.
    template <class Proxy>
    void publish(const std::string& name, const Proxy& proxy) const {
        detail::invoke<detail::mop::op::publish>(root(), name_bytes(name), proxy.obj_.id());
    }
    /// The object published as `name`: KeyError if there is none,
    /// SerializationError if it is not a Proxy (another kind or type).
    template <class Proxy>
    Proxy lookup(const std::string& name) const {
        return make<Proxy>(detail::invoke<detail::mop::op::lookup>(root(), name_bytes(name), Proxy::kind, Proxy::tag()));
    }

    /// Ends the manager: stops serving, wakes every waiter, and every proxy
    /// operation, in every process, then throws ValueError; the heap is
    /// freed once the last process holding a proxy lets go. On a connected
    /// manager, only drops this handle's reference to the connection.
    /// Idempotent.
    void shutdown() {
        server_.reset();
        backend_.reset();
        if (heap_) heap_.shut_down();
        heap_ = {};
    }
    bool running() const noexcept { return static_cast<bool>(backend_); }
    bool is_connected() const noexcept { return backend_ && !heap_; }

    /// Bytes the objects use now, and the heap's backed high-water mark
    /// (local managers).
    std::size_t used_bytes() const { return heap().used_bytes(); }
    std::size_t committed_bytes() const { return heap().committed_bytes(); }
    std::size_t max_bytes() const { return heap().max_bytes(); }

private:
    explicit Manager(detail::BackendPtr remote) : backend_(std::move(remote)), owner_(detail::current_pid()) {}

    const detail::BackendPtr& backend() const {
        if (!backend_) throw ValueError("mproc::Manager has been shut down");
        return backend_;
    }
    const detail::SharedHeap& heap() const {
        if (!heap_) {
            backend();
            throw ValueError("mproc::Manager: a connected manager has no local heap");
        }
        return heap_;
    }
    detail::ManagedObject root() const {
        return detail::ManagedObject(backend(), detail::mop::ObjectId{0}, detail::mop::Kind::manager, 0);
    }
    detail::ManagedObject object(detail::mop::ObjectId id, detail::mop::Kind kind, std::uint64_t tag) const {
        return detail::ManagedObject(backend(), id, kind, tag);
    }
    template <class Proxy>
    Proxy make(detail::mop::ObjectId id) const {
        return Proxy(object(id, Proxy::kind, Proxy::tag()));
    }
    ConditionProxy condition_on(const detail::ManagedObject& lock) const {
        if (lock.backend_ptr() != backend_)
            throw ValueError("mproc::Manager::Condition: the lock belongs to another manager");
        const auto id = detail::invoke<detail::mop::op::create_condition>(root(), lock.id());
        return ConditionProxy(object(id, ConditionProxy::kind, 0), lock);
    }
    static detail::Bytes name_bytes(const std::string& name) {
        return detail::Bytes(reinterpret_cast<const std::byte*>(name.data()), name.size());
    }

    detail::SharedHeap heap_;
    detail::BackendPtr backend_;
    std::unique_ptr<detail::ManagerServer> server_;
    long owner_ = 0;
};

}  // namespace mproc
