// Objects in the manager's heap: their header, each kind's state, the
// directory that numbers them, and the lock every operation takes.
// Internal header (lib/manager/).
//
// Crash safety, the rule every kind follows: an object's primary state
// changes only by single aligned 64-bit stores, each made after everything
// it points at is fully written (an entry, a new table, a new array). A
// process killed at any instruction can therefore leave only
//   (a) blocks it allocated and never published, or unlinked and never
//       freed: lost to the heap, never corrupting it, and
//   (b) derived data (a dict's index and counts) that no longer matches,
//       which the next holder of the object's robust mutex rebuilds when the
//       mutex reports its owner's death (Locked's `recover` hook).
// Readers always hold the mutex, so they never see a half-made change
// except through (b), which is repaired before they look.
//
// Ids: every object is entered in the heap's directory, which only library
// code writes; a remote request names its object by id, and the server
// resolves the id there and checks the kind before touching anything.
#pragma once

#include <cstddef>
#include <atomic>
#include <cstdint>
#include <pthread.h>

#include "manager/heap.hpp"
#include "manager/waiter.hpp"
#include "os/fault.hpp"
#include "mproc/detail/manager_ops.hpp"
#include "mproc/sync.hpp"

namespace mproc::detail::mgr {

using mop::Kind;
using mop::KindSet;
using mop::ObjectId;

inline constexpr std::uint32_t kObjectMagic = 0x4a424f4du;  // "MOBJ"

struct ObjectHeader {
    std::uint32_t magic;
    Kind kind;
    std::uint8_t pad[3];
    std::uint64_t id;
    std::uint64_t type_tag;
    pthread_mutex_t mu;  // the object's robust lock
    WaitWord change;     // moves on every change a waiter may wait for
};

inline constexpr std::size_t kStateOffset = (sizeof(ObjectHeader) + 15) / 16 * 16;

// ---- each kind's state (after the header), one meaning per field ----------

/// dict and the manager's names: `table` is a DictTable block (dict.hpp).
struct DictState {
    std::uint64_t table;
};
/// list: `array` is [length][slot ...]; `version` moves on every change
/// (remote sort applies its new order only to the version it read).
struct ListState {
    std::uint64_t array;
    std::uint64_t version;
};
struct ValueState {
    std::uint64_t entry;
};
/// queue: `ring` is [tail u32 | head u32 as one word][slot ...], head and
/// tail counting every item ever taken and put (mod 2^32); `done` counts
/// task_done() calls, so unfinished tasks are tail - done: each operation
/// changes one word.
struct QueueState {
    std::uint64_t ring;
    std::uint64_t maxsize;  // 0: unbounded
    std::uint64_t done;
};
/// Lock / RLock: mproc's robust mutex state, placed here, and the tid of
/// the thread holding it (0: none), for locked().
struct LockState {
    alignas(8) std::byte mutex[kMutexStateSize];  // objects are 8-aligned
    std::uint64_t holder;
};
struct SemaphoreState {
    std::uint64_t value;
    std::uint64_t bound;  // 0: unbounded
};
struct EventState {
    std::uint64_t flag;
};
/// condition: `waiters` is [count][ticket ...] of the waits not yet
/// notified, in arrival order; `lock` is a Lock or RLock object.
struct ConditionState {
    std::uint64_t lock;
    std::uint64_t waiters;
    std::uint64_t next_ticket;
};
/// barrier: `round` packs generation (32) | arrived (30) | broken (1) |
/// the previous round ended broken (1): one word per change.
struct BarrierState {
    std::uint64_t parties;
    std::uint64_t round;
};
/// The manager (object 0): its published names.
struct ManagerState {
    DictState names;
};

/// An operation's object, as the local implementations see it.
struct Target {
    Heap heap;
    ObjectHeader* obj;
    const SegmentPtr& seg;  // the heap's

    template <class State>
    State& state() const noexcept {
        return *reinterpret_cast<State*>(reinterpret_cast<std::byte*>(obj) + kStateOffset);
    }
};

/// Holds the object's robust mutex. ValueError once the manager is shut
/// down. When the previous holder died holding it, `recover` (if any)
/// rebuilds the kind's derived data first, and the object's waiters are
/// woken (the dead holder may have changed the state and not woken them).
class Locked {
public:
    using Recover = void (*)(const Target&);
    explicit Locked(const Target& t, Recover recover = nullptr);
    ~Locked();
    Locked(const Locked&) = delete;
    Locked& operator=(const Locked&) = delete;

private:
    ObjectHeader* o_;
};

/// The token a waiter waits past (read under Locked), then the heap's shut
/// flag: ValueError if the manager has been shut down. The order matters:
/// shut_down() sets the flag, then moves every object's word, so a token
/// read after that move comes with the flag visible, and a token read
/// before it is moved past (the wait returns). Checking the flag only
/// before the token (as Locked does) could sleep through a shutdown.
std::uint32_t wait_token(const Target& t);

/// A new object of `kind` with `state_bytes` of zeroed state, not yet in
/// the directory: the caller fills the state, then enters() it.
struct NewObject {
    ObjectHeader* obj;
    std::uint64_t offset;
    ObjectId id;
};
NewObject make_object(const Heap& heap, Kind kind, std::uint64_t type_tag, std::size_t state_bytes);
/// Publishes a made object: from here on its id resolves.
void enter(const Heap& heap, const NewObject& made);

/// The offset of object `id`, or 0 if there is none.
std::uint64_t find_object(const Heap& heap, ObjectId id) noexcept;
/// Object `id`, checked to be one of `kinds`: ValueError naming what it is
/// otherwise (a request from a confused or hostile client).
ObjectHeader* object_of(const Heap& heap, ObjectId id, KindSet kinds);
/// Calls f(header) for every object in the directory.
template <class F>
void for_each_object(const Heap& heap, F&& f) {
    const std::uint64_t n = heap.header().next_id.load(std::memory_order_acquire);
    for (std::uint64_t id = 0; id < n; ++id)
        if (const std::uint64_t off = find_object(heap, ObjectId{id})) f(heap.at<ObjectHeader>(off));
}

/// A Python index: negative counts from the end; IndexError if outside.
std::uint64_t py_index(std::int64_t index, std::uint64_t size, const char* what);

}  // namespace mproc::detail::mgr
