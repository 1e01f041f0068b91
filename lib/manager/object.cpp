// Object headers, the directory, and the object lock. See object.hpp.
#include "manager/object.hpp"

#include <bit>
#include <cstring>
#include <new>
#include <string>

#include "mproc/errors.hpp"
#include "os/os.hpp"

namespace mproc::detail {

namespace mop {

const char* op_name(OpId id) noexcept {
    static constexpr const char* names[] = {
#define MPROC_MANAGER_OP_NAME(name, kinds, signature) #name,
        MPROC_MANAGER_OPS(MPROC_MANAGER_OP_NAME)
#undef MPROC_MANAGER_OP_NAME
    };
    const auto i = static_cast<std::size_t>(id);
    return i < kOpCount ? names[i] : "unknown operation";
}

const char* kind_name(Kind k) noexcept {
    static constexpr const char* names[] = {"manager", "dict",      "list",  "Value",     "Queue",  "Lock",
                                            "RLock",   "Semaphore", "Event", "Condition", "Barrier"};
    const auto i = static_cast<std::size_t>(k);
    return i <= static_cast<std::size_t>(Kind::last) ? names[i] : "unknown kind";
}

}  // namespace mop

namespace mgr {

namespace {

constexpr std::uint64_t kChunk0 = 64;

struct Slot {
    unsigned chunk;
    std::uint64_t index;
};

Slot slot_of(std::uint64_t id) noexcept {
    const std::uint64_t q = id / kChunk0 + 1;
    const auto k = static_cast<unsigned>(std::bit_width(q) - 1);
    return {k, id - kChunk0 * ((std::uint64_t{1} << k) - 1)};
}

std::uint64_t* chunk(const Heap& heap, unsigned k, bool make) {
    std::atomic<std::uint64_t>& word = heap.header().directory[k];
    std::uint64_t off = word.load(std::memory_order_acquire);
    if (off == 0 && make) {
        const std::uint64_t bytes = (kChunk0 << k) * sizeof(std::uint64_t);
        const std::uint64_t mine = heap.alloc(bytes);
        std::memset(heap.at(mine), 0, bytes);
        if (word.compare_exchange_strong(off, mine, std::memory_order_acq_rel)) off = mine;
        else heap.free(mine);  // another process made it first
    }
    return off ? heap.at<std::uint64_t>(off) : nullptr;
}

}  // namespace

NewObject make_object(const Heap& heap, Kind kind, std::uint64_t type_tag, std::size_t state_bytes) {
    if (heap.shut_down()) throw ValueError("mproc::Manager: the manager has been shut down");
    const std::uint64_t id = heap.header().next_id.fetch_add(1, std::memory_order_acq_rel);
    const Slot s = slot_of(id);
    if (s.chunk >= kDirectoryChunks) throw Error("mproc::Manager: too many objects in one manager");
    chunk(heap, s.chunk, true);
    const std::uint64_t off = heap.alloc(kStateOffset + state_bytes);
    std::memset(heap.at(off), 0, kStateOffset + state_bytes);
    auto* o = new (heap.at(off)) ObjectHeader{};
    o->kind = kind;
    o->id = id;
    o->type_tag = type_tag;
    os::robust_mutex_init(&o->mu, false);
    o->magic = kObjectMagic;
    return {o, off, ObjectId{id}};
}

void enter(const Heap& heap, const NewObject& made) {
    const Slot s = slot_of(static_cast<std::uint64_t>(made.id));
    std::atomic_ref<std::uint64_t>(chunk(heap, s.chunk, true)[s.index]).store(made.offset, std::memory_order_release);
}

std::uint64_t find_object(const Heap& heap, ObjectId id) noexcept {
    const auto n = static_cast<std::uint64_t>(id);
    if (n >= heap.header().next_id.load(std::memory_order_acquire)) return 0;
    const Slot s = slot_of(n);
    if (s.chunk >= kDirectoryChunks) return 0;
    const std::uint64_t* c = chunk(heap, s.chunk, false);
    if (!c) return 0;
    const std::uint64_t off = std::atomic_ref<const std::uint64_t>(c[s.index]).load(std::memory_order_acquire);
    if (off < kHeapStart || off % 8 != 0 || off >= heap.header().bump.load(std::memory_order_relaxed)) return 0;
    const auto* o = heap.at<ObjectHeader>(off);
    return o->magic == kObjectMagic && o->id == n ? off : 0;
}

ObjectHeader* object_of(const Heap& heap, ObjectId id, KindSet kinds) {
    const std::uint64_t off = find_object(heap, id);
    if (off == 0)
        throw ValueError("mproc::Manager: there is no object " + std::to_string(static_cast<std::uint64_t>(id)) +
                         " in this manager");
    auto* o = heap.at<ObjectHeader>(off);
    if ((mop::kind_bit(o->kind) & kinds) == 0)
        throw ValueError("mproc::Manager: object " + std::to_string(static_cast<std::uint64_t>(id)) + " is a " +
                         mop::kind_name(o->kind) + ", which has no such operation");
    return o;
}

Locked::Locked(const Target& t, Recover recover) : o_(t.obj) {
    if (t.heap.shut_down()) throw ValueError("mproc::Manager: this object's manager has been shut down");
    switch (os::robust_mutex_lock(&o_->mu, os::Deadline::never())) {
        case os::LockStatus::acquired:
            return;
        case os::LockStatus::owner_died:
            // The primary state is whole (see object.hpp); only derived
            // data may be stale. A waker that died before waking: wake now.
            if (recover) recover(t);
            wake_all(o_->change);
            return;
        case os::LockStatus::would_deadlock:
            throw Error("mproc::Manager: an operation was called on a container from inside that "
                        "container's own modify() or sort() function");
        case os::LockStatus::timed_out:
            break;
    }
    throw TimeoutError("mproc::Manager: timed out waiting for an object's lock");
}

Locked::~Locked() { os::robust_mutex_unlock(&o_->mu); }

std::uint32_t wait_token(const Target& t) {
    const std::uint32_t seen = token(t.obj->change);  // an acquire load
    if (t.heap.shut_down()) throw ValueError("mproc::Manager: this object's manager has been shut down");
    return seen;
}

std::uint64_t py_index(std::int64_t index, std::uint64_t size, const char* what) {
    const auto n = static_cast<std::int64_t>(size);
    const std::int64_t i = index < 0 ? index + n : index;
    if (i < 0 || i >= n)
        throw IndexError(std::string("mproc list ") + what + ": index " + std::to_string(index) +
                         " out of range for a list of " + std::to_string(size));
    return static_cast<std::uint64_t>(i);
}

}  // namespace mgr
}  // namespace mproc::detail
