// The manager object (id 0): making objects, publishing and finding them
// by name; and the heap's life (create, usage, shutdown).
//
// Names live in the manager object's own insertion-ordered table (dict.hpp)
// as name -> Published{id, type tag, kind}; lookup resolves the id through
// the directory again, so a name never leads anywhere but to an object.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "manager/dict.hpp"
#include "manager/ops_impl.hpp"
#include "mproc/detail/manager_core.hpp"
#include "mproc/errors.hpp"
#include "os/os.hpp"

namespace mproc::detail {

namespace mgr {

namespace {

struct Published {
    std::uint64_t id;
    std::uint64_t type_tag;
    std::uint32_t kind;
    std::uint32_t pad;
};

void recover_names(const Target& t) { DictView(t.heap, t.state<ManagerState>().names).recover(); }

template <class State, class Init>
ObjectId create_object(const Target& t, Kind kind, std::uint64_t type_tag, Init init) {
    const NewObject made = make_object(t.heap, kind, type_tag, sizeof(State));
    init(*reinterpret_cast<State*>(reinterpret_cast<std::byte*>(made.obj) + kStateOffset), made);
    enter(t.heap, made);
    return made.id;
}

template <class State>
ObjectId create_object(const Target& t, Kind kind, std::uint64_t type_tag) {
    return create_object<State>(t, kind, type_tag, [](State&, const NewObject&) {});
}

}  // namespace

ObjectId impl::create(const Target& t, Kind kind, std::uint64_t type_tag) {
    switch (kind) {
        case Kind::dict:
            return create_object<DictState>(t, kind, type_tag);
        case Kind::list:
            return create_object<ListState>(t, kind, type_tag);
        case Kind::value:
            return create_object<ValueState>(t, kind, type_tag);
        default:
            throw ValueError(std::string("mproc::Manager: create() makes dicts, lists and Values, not a ") +
                             mop::kind_name(kind));
    }
}

ObjectId impl::create_queue(const Target& t, std::uint64_t type_tag, std::uint64_t maxsize) {
    return create_object<QueueState>(t, Kind::queue, type_tag,
                                     [&](QueueState& s, const NewObject&) { s.maxsize = maxsize; });
}

ObjectId impl::create_lock(const Target& t, bool recursive) {
    return create_object<LockState>(t, recursive ? Kind::rlock : Kind::lock, 0,
                                    [&](LockState& s, const NewObject&) { MutexHandle(recursive, t.seg, s.mutex); });
}

ObjectId impl::create_semaphore(const Target& t, std::uint64_t value, std::uint64_t bound) {
    if (bound != 0 && value > bound)
        throw ValueError("mproc BoundedSemaphore: the initial value is above the bound");
    return create_object<SemaphoreState>(t, Kind::semaphore, 0, [&](SemaphoreState& s, const NewObject&) {
        s.value = value;
        s.bound = bound;
    });
}

ObjectId impl::create_event(const Target& t) { return create_object<EventState>(t, Kind::event, 0); }

ObjectId impl::create_condition(const Target& t, ObjectId lock) {
    object_of(t.heap, lock, mop::kLocks);  // ValueError unless a Lock or RLock of this manager
    return create_object<ConditionState>(t, Kind::condition, 0, [&](ConditionState& s, const NewObject&) {
        s.lock = static_cast<std::uint64_t>(lock);
    });
}

ObjectId impl::create_barrier(const Target& t, std::uint64_t parties) {
    if (parties == 0 || parties >= (std::uint64_t{1} << 30))
        throw ValueError("mproc Barrier: parties must be between 1 and 2^30 - 1");
    return create_object<BarrierState>(t, Kind::barrier, 0,
                                       [&](BarrierState& s, const NewObject&) { s.parties = parties; });
}

void impl::publish(const Target& t, Bytes name, ObjectId object) {
    const ObjectHeader* o = object_of(t.heap, object, ~mop::kManager);
    const Published rec{static_cast<std::uint64_t>(object), o->type_tag, static_cast<std::uint32_t>(o->kind), 0};
    const std::uint64_t hash = hash_bytes(name);
    BlockGuard e(t.heap, t.heap.make_entry(hash, name, std::as_bytes(std::span<const Published, 1>(&rec, 1))));
    BlockGuard replaced(t.heap, 0);
    Locked g(t, recover_names);
    replaced.reset(DictView(t.heap, t.state<ManagerState>().names).put(hash, name, e));
}

ObjectId impl::lookup(const Target& t, Bytes name, Kind kind, std::uint64_t type_tag) {
    const std::string shown(reinterpret_cast<const char*>(name.data()), name.size());
    Published rec{};
    {
        const std::uint64_t hash = hash_bytes(name);
        Locked g(t, recover_names);
        const std::uint64_t e = DictView(t.heap, t.state<ManagerState>().names).find(hash, name);
        if (e == 0) throw KeyError("mproc::Manager: nothing is published as '" + shown + "'");
        const Bytes v = t.heap.entry_value(e);
        if (v.size() != sizeof rec) throw SerializationError("mproc::Manager: a damaged name record");
        std::memcpy(&rec, v.data(), sizeof rec);
    }
    if (rec.kind != static_cast<std::uint32_t>(kind) || rec.type_tag != type_tag)
        throw SerializationError("mproc::Manager: '" + shown +
                                 "' is published as another kind of object or element type than was asked for");
    object_of(t.heap, ObjectId{rec.id}, mop::kind_bit(kind));
    return ObjectId{rec.id};
}

Kind impl::kind_of(const Target& t, ObjectId object) { return object_of(t.heap, object, ~mop::kManager)->kind; }

}  // namespace mgr

// ---- the heap's life ------------------------------------------------------------------

SharedHeap SharedHeap::create(std::size_t max_bytes) {
    max_bytes = std::max<std::size_t>(max_bytes, std::size_t{16} << 20);
    max_bytes = (max_bytes + 4095) / 4096 * 4096;
    // Address space is usually plentiful, but a process under `ulimit -v`
    // cannot map 32 GiB: reserve less rather than fail (down to 256 MiB).
    SegmentPtr seg;
    for (;;) {
        try {
            seg = Segment::anonymous(max_bytes, "mproc-manager");
            break;
        } catch (const OSError& e) {
            if (e.code() != ENOMEM || max_bytes <= (std::size_t{256} << 20)) throw;
            max_bytes /= 2;
        }
    }
    mgr::Heap::format(*seg, max_bytes);
    const mgr::Heap heap(*seg);
    const mgr::NewObject root = mgr::make_object(heap, mgr::Kind::manager, 0, sizeof(mgr::ManagerState));
    mgr::enter(heap, root);  // object 0
    return SharedHeap(std::move(seg));
}

void mgr::reset_heap(const SharedHeap& heap, std::uint64_t reserve) {
    const Segment& seg = *heap.segment();
    const mgr::HeapHeader& h = *reinterpret_cast<const mgr::HeapHeader*>(seg.data());
    reserve = std::min<std::uint64_t>(reserve != 0 ? reserve : h.reserve, seg.size());
    const std::uint64_t committed = h.committed.load();
    // Only [header, bump) was ever written: zeroed, it is as a new memfd's
    // pages are, so what one user left cannot leak into the next.
    std::memset(seg.data(), 0, std::min<std::uint64_t>(h.bump.load(), seg.size()));
    mgr::Heap::format(seg, reserve, committed);
    const mgr::Heap fresh(*heap.segment());
    mgr::enter(fresh, mgr::make_object(fresh, mgr::Kind::manager, 0, sizeof(mgr::ManagerState)));
}

namespace {
const mgr::HeapHeader& header_of(const SegmentPtr& seg) { return *reinterpret_cast<const mgr::HeapHeader*>(seg->data()); }
}  // namespace

std::size_t SharedHeap::used_bytes() const { return header_of(seg_).used(); }
std::size_t SharedHeap::committed_bytes() const { return header_of(seg_).committed.load(std::memory_order_relaxed); }
std::size_t SharedHeap::max_bytes() const { return header_of(seg_).reserve; }

void SharedHeap::shut_down() const {
    const mgr::Heap heap(*seg_);
    heap.header().shut.store(1, std::memory_order_seq_cst);
    // Every waiter, in every process, wakes now and finds the heap shut.
    mgr::for_each_object(heap, [](mgr::ObjectHeader* o) { mgr::wake_all(o->change); });
}

long current_pid() noexcept { return os::pid(); }

}  // namespace mproc::detail
