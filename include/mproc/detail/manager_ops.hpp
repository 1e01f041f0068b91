// mproc::detail::mop — every operation a manager object has, described once.
//
// Each row of MPROC_MANAGER_OPS names an operation, the object kinds it
// applies to, and its signature: the result and the arguments, in order.
// From this one description follow
//   - the call proxies make (invoke<op::name>(object, args...), below),
//   - the local implementation's declaration (lib/manager/ops_impl.hpp: a
//     function `R name(const Target&, Args...)` per row, defined once in the
//     file of its kind: dict.cpp, list.cpp, ...),
//   - the client stub that encodes the arguments and decodes the result
//     (lib/manager/client.cpp), and
//   - the server dispatch that decodes, checks the object's kind against the
//     row, runs the local implementation and encodes the reply
//     (lib/manager/server.cpp).
// Adding an operation is adding a row and its local implementation.
//
// Argument types and their wire form (lib/manager/wire.hpp):
//   Bytes      an encoded key, value or name: u32 length + bytes
//   BytesList  u32 count + that many Bytes
//   U64List    u32 count + that many u64
//   Sink       an output: never sent; every Bytes the operation hands it
//              becomes one field of the reply, handed to the caller's sink
//   Timeout    i64 nanoseconds, -1 for "forever"
//   ObjectId, std::uint64_t, std::int64_t: 8 bytes; bool, Kind: 1 byte
// Results are void, bool, Kind, std::uint64_t or ObjectId.
//
// Internal header: included by <mproc/manager.hpp>; not a public API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <tuple>

#include "mproc/duration.hpp"

namespace mproc::detail::mop {

using Bytes = std::span<const std::byte>;
using BytesList = std::span<const Bytes>;
using U64List = std::span<const std::uint64_t>;

/// What an object is. `manager` is the manager itself (object 0), which
/// makes, names and finds the others.
enum class Kind : std::uint8_t {
    manager = 0,
    dict,
    list,
    value,
    queue,
    lock,
    rlock,
    semaphore,
    event,
    condition,
    barrier,
    last = barrier,
};

/// An object's number in its manager (0 is the manager itself).
enum class ObjectId : std::uint64_t {};

using KindSet = std::uint32_t;
constexpr KindSet kind_bit(Kind k) { return KindSet{1} << static_cast<unsigned>(k); }
inline constexpr KindSet kManager = kind_bit(Kind::manager);
inline constexpr KindSet kDict = kind_bit(Kind::dict);
inline constexpr KindSet kList = kind_bit(Kind::list);
inline constexpr KindSet kValue = kind_bit(Kind::value);
inline constexpr KindSet kQueue = kind_bit(Kind::queue);
inline constexpr KindSet kLocks = kind_bit(Kind::lock) | kind_bit(Kind::rlock);
inline constexpr KindSet kSemaphore = kind_bit(Kind::semaphore);
inline constexpr KindSet kEvent = kind_bit(Kind::event);
inline constexpr KindSet kCondition = kind_bit(Kind::condition);
inline constexpr KindSet kBarrier = kind_bit(Kind::barrier);

/// An output of an operation: called once for every value it yields (the
/// stored bytes, in shared memory under the object's lock when local; in
/// the reply when remote). Not owning: it refers to a callable that
/// outlives the call.
class Sink {
public:
    Sink() = default;
    template <class F>
    explicit Sink(F& f) noexcept
        : ctx_(&f), call_([](void* c, Bytes b) { (*static_cast<F*>(c))(b); }) {}
    void operator()(Bytes b) const { call_(ctx_, b); }
    explicit operator bool() const noexcept { return call_ != nullptr; }

private:
    void* ctx_ = nullptr;
    void (*call_)(void*, Bytes) = nullptr;
};

// clang-format off
#define MPROC_MANAGER_OPS(X)                                                                              \
    /* The manager (object 0): makes objects, names them, finds them by name. */                          \
    X(create,            kManager,   ObjectId(Kind kind, std::uint64_t type_tag))  /* dict, list, value */ \
    X(create_queue,      kManager,   ObjectId(std::uint64_t type_tag, std::uint64_t maxsize))             \
    X(create_lock,       kManager,   ObjectId(bool recursive))                                            \
    X(create_semaphore,  kManager,   ObjectId(std::uint64_t value, std::uint64_t bound))                  \
    X(create_event,      kManager,   ObjectId())                                                          \
    X(create_condition,  kManager,   ObjectId(ObjectId lock))                                             \
    X(create_barrier,    kManager,   ObjectId(std::uint64_t parties))                                     \
    X(publish,           kManager,   void(Bytes name, ObjectId object))                                   \
    X(lookup,            kManager,   ObjectId(Bytes name, Kind kind, std::uint64_t type_tag))             \
    X(kind_of,           kManager,   Kind(ObjectId object))                                               \
    /* dict (and Namespace): insertion-ordered, keys compared by their bytes */                           \
    X(dict_size,         kDict,      std::uint64_t())                                                     \
    X(dict_set,          kDict,      void(Bytes key, Bytes value))                                        \
    X(dict_get,          kDict,      bool(Bytes key, Sink value))                                         \
    X(dict_contains,     kDict,      bool(Bytes key))                                                     \
    X(dict_erase,        kDict,      bool(Bytes key))                                                     \
    X(dict_pop,          kDict,      bool(Bytes key, Sink value))                                         \
    X(dict_setdefault,   kDict,      bool(Bytes key, Bytes value, Sink stored))                           \
    X(dict_update,       kDict,      void(BytesList keys, BytesList values))                              \
    X(dict_items,        kDict,      void(Sink key_then_value))                                           \
    X(dict_keys,         kDict,      void(Sink key))                                                      \
    X(dict_values,       kDict,      void(Sink value))                                                    \
    X(dict_popitem,      kDict,      void(Sink key_then_value))                                           \
    X(dict_cas,          kDict,      bool(Bytes key, bool present, Bytes expected, Bytes value, Sink now)) \
    X(dict_clear,        kDict,      void())                                                              \
    /* list */                                                                                            \
    X(list_size,         kList,      std::uint64_t())                                                     \
    X(list_extend,       kList,      void(BytesList values))                                              \
    X(list_get,          kList,      void(std::int64_t index, Sink value))                                \
    X(list_set,          kList,      void(std::int64_t index, Bytes value))                               \
    X(list_insert,       kList,      void(std::int64_t index, Bytes value))                               \
    X(list_pop,          kList,      void(std::int64_t index, Sink value))                                \
    X(list_items,        kList,      std::uint64_t(Sink value))   /* returns the list's version */        \
    X(list_cas,          kList,      bool(std::int64_t index, Bytes expected, Bytes value, Sink now))     \
    X(list_reverse,      kList,      void())                                                              \
    X(list_index,        kList,      std::uint64_t(Bytes value, std::int64_t start, std::int64_t stop))   \
    X(list_count,        kList,      std::uint64_t(Bytes value))                                          \
    X(list_remove,       kList,      void(Bytes value))                                                   \
    X(list_reorder,      kList,      bool(std::uint64_t version, U64List order))                          \
    X(list_clear,        kList,      void())                                                              \
    /* Value */                                                                                           \
    X(value_set,         kValue,     void(Bytes value))                                                   \
    X(value_get,         kValue,     void(Sink value))                                                    \
    X(value_cas,         kValue,     bool(bool present, Bytes expected, Bytes value, Sink now))           \
    /* Queue / JoinableQueue */                                                                           \
    X(queue_size,        kQueue,     std::uint64_t())                                                     \
    X(queue_maxsize,     kQueue,     std::uint64_t())                                                     \
    X(queue_put,         kQueue,     bool(Bytes item, Timeout timeout))                                   \
    X(queue_get,         kQueue,     bool(Sink item, Timeout timeout))                                    \
    X(queue_task_done,   kQueue,     void())                                                              \
    X(queue_join,        kQueue,     bool(Timeout timeout))                                               \
    /* Lock and RLock: owned by the calling thread (on a server: the thread serving the connection) */    \
    X(lock_acquire,      kLocks,     bool(Timeout timeout))                                               \
    X(lock_release,      kLocks,     void())                                                              \
    X(lock_locked,       kLocks,     bool())                                                              \
    X(lock_owner_died,   kLocks,     bool())                                                              \
    X(lock_is_owned,     kLocks,     bool())                                                              \
    /* Semaphore and BoundedSemaphore */                                                                  \
    X(sem_acquire,       kSemaphore, bool(Timeout timeout))                                               \
    X(sem_release,       kSemaphore, void(std::uint64_t n))                                               \
    X(sem_value,         kSemaphore, std::uint64_t())                                                     \
    /* Event */                                                                                           \
    X(event_set,         kEvent,     void())                                                              \
    X(event_clear,       kEvent,     void())                                                              \
    X(event_is_set,      kEvent,     bool())                                                              \
    X(event_wait,        kEvent,     bool(Timeout timeout))                                               \
    /* Condition: its lock is a Lock or RLock object of the same manager */                               \
    X(cond_lock,         kCondition, ObjectId())                                                          \
    X(cond_wait,         kCondition, bool(Timeout timeout))                                               \
    X(cond_notify,       kCondition, void(std::uint64_t n))                                               \
    X(cond_notify_all,   kCondition, void())                                                              \
    /* Barrier */                                                                                         \
    X(barrier_wait,      kBarrier,   std::uint64_t(Timeout timeout))                                      \
    X(barrier_abort,     kBarrier,   void())                                                              \
    X(barrier_reset,     kBarrier,   void())                                                              \
    X(barrier_parties,   kBarrier,   std::uint64_t())                                                     \
    X(barrier_n_waiting, kBarrier,   std::uint64_t())                                                     \
    X(barrier_broken,    kBarrier,   bool())
// clang-format on

/// The operations' numbers (on the wire: one byte).
enum class OpId : std::uint8_t {
#define MPROC_MANAGER_OP_ID(name, kinds, signature) name,
    MPROC_MANAGER_OPS(MPROC_MANAGER_OP_ID)
#undef MPROC_MANAGER_OP_ID
    count
};
inline constexpr std::size_t kOpCount = static_cast<std::size_t>(OpId::count);

template <class Signature>
struct SignatureOf;
template <class R, class... A>
struct SignatureOf<R(A...)> {
    using Result = R;
    using Args = std::tuple<A...>;
};

/// One row: its number, its kinds, its result and argument types.
template <OpId Id, KindSet Kinds, class Signature>
struct Op : SignatureOf<Signature> {
    static constexpr OpId id = Id;
    static constexpr KindSet kinds = Kinds;
};

namespace op {
#define MPROC_MANAGER_OP_TYPE(name, kinds, signature) using name = Op<OpId::name, kinds, signature>;
MPROC_MANAGER_OPS(MPROC_MANAGER_OP_TYPE)
#undef MPROC_MANAGER_OP_TYPE
}  // namespace op

/// The object kinds operation `id` applies to.
constexpr KindSet op_kinds(OpId id) noexcept {
    constexpr KindSet kinds[] = {
#define MPROC_MANAGER_OP_KINDS(name, k, signature) op::name::kinds,
        MPROC_MANAGER_OPS(MPROC_MANAGER_OP_KINDS)
#undef MPROC_MANAGER_OP_KINDS
    };
    return static_cast<std::size_t>(id) < kOpCount ? kinds[static_cast<std::size_t>(id)] : 0;
}

/// The operation's name, for messages.
const char* op_name(OpId id) noexcept;
/// The kind's name, for messages ("dict", "list", ...).
const char* kind_name(Kind k) noexcept;

}  // namespace mproc::detail::mop
