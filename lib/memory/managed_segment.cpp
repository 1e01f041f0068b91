// ManagedSegment and its heap lock. See include/mproc/managed_segment.hpp.
//
// Layout of the segment: a 64-byte header of mproc's (magic "MPMS",
// version, where the heap starts and how large it is), so attach() and a
// handle's import can tell a heap from other bytes; then Boost's managed
// external buffer, which keeps its own header and named-object index.
#include "mproc/managed_segment.hpp"

#include <atomic>
#include <cstring>
#include <new>

#include "os/os.hpp"

namespace bip = boost::interprocess;

namespace mproc {

namespace detail {

namespace {

struct HeapMutexState {
    pthread_mutex_t m;
    std::uint32_t poisoned = 0;  // written under m
};

HeapMutexState* state_of(unsigned char* storage) {
    return std::launder(reinterpret_cast<HeapMutexState*>(storage));
}

[[noreturn]] void throw_poisoned() {
    throw Error(
        "mproc::ManagedSegment: a process died while it held this segment's heap lock (in the middle "
        "of an allocation or a named construct/destroy), so the heap may be inconsistent. Objects "
        "already built can still be read, but nothing more can be allocated or looked up by name "
        "in it: build a new ManagedSegment");
}

}  // namespace

HeapMutex::HeapMutex(bool recursive) {
    static_assert(sizeof(HeapMutexState) <= sizeof(state_) && alignof(HeapMutexState) <= 16);
    auto* st = new (state_) HeapMutexState();
    os::robust_mutex_init(&st->m, recursive);
}

void HeapMutex::lock() {
    HeapMutexState* st = state_of(state_);
    switch (os::robust_mutex_lock(&st->m, os::Deadline::never())) {
        case os::LockStatus::acquired:
            break;
        case os::LockStatus::owner_died:
            st->poisoned = 1;  // visible to everyone after us: no silent repair
            break;
        case os::LockStatus::would_deadlock:
            throw Error("mproc::ManagedSegment: this thread already holds the heap's lock");
        case os::LockStatus::timed_out:
            throw Error("mproc internal: an unbounded heap lock timed out");
    }
    if (st->poisoned) {
        os::robust_mutex_unlock(&st->m);
        throw_poisoned();
    }
}

bool HeapMutex::try_lock() {
    HeapMutexState* st = state_of(state_);
    switch (os::robust_mutex_trylock(&st->m)) {
        case os::LockStatus::acquired:
            break;
        case os::LockStatus::owner_died:
            st->poisoned = 1;
            break;
        case os::LockStatus::would_deadlock:
        case os::LockStatus::timed_out:
            return false;
    }
    if (st->poisoned) {
        os::robust_mutex_unlock(&st->m);
        throw_poisoned();
    }
    return true;
}

void HeapMutex::unlock() { os::robust_mutex_unlock(&state_of(state_)->m); }

}  // namespace detail

namespace {

constexpr std::uint32_t kHeapMagic = 0x534d504d;  // "MPMS"
constexpr std::uint32_t kHeapVersion = 1;
constexpr std::size_t kHeapOffset = 64;

struct HeapHeader {
    std::atomic<std::uint32_t> magic;  // stored last, with release
    std::uint32_t version;
    std::uint64_t heap_offset;
    std::uint64_t heap_size;
};
static_assert(sizeof(HeapHeader) <= kHeapOffset);

HeapHeader* header_of(const SharedMemory& shm) { return std::launder(reinterpret_cast<HeapHeader*>(shm.data())); }

}  // namespace

ManagedSegment::ManagedSegment(std::size_t size) : ManagedSegment(SharedMemory(size + kHeapOffset), true) {}

ManagedSegment::ManagedSegment(SharedMemory shm) : ManagedSegment(std::move(shm), true) {}

ManagedSegment ManagedSegment::attach(SharedMemory shm) { return ManagedSegment(std::move(shm), false); }

ManagedSegment::ManagedSegment(SharedMemory shm, bool create) : shm_(std::move(shm)) {
    const std::size_t bytes = shm_.size();
    const std::string what = shm_.name().empty() ? "ManagedSegment" : "ManagedSegment \"" + shm_.name() + "\"";
    if (create) {
        if (bytes <= kHeapOffset) throw ValueError(what + ": a segment of " + std::to_string(bytes) + " bytes has no room for a heap");
        HeapHeader* h = new (shm_.data()) HeapHeader();
        try {
            m_ = std::make_shared<managed_memory>(bip::create_only, shm_.data() + kHeapOffset, bytes - kHeapOffset);
        } catch (const bip::interprocess_exception& e) {
            throw ValueError(what + ": cannot make a heap in " + std::to_string(bytes) + " bytes (" + e.what() +
                             "); give it a few KiB");
        }
        h->version = kHeapVersion;
        h->heap_offset = kHeapOffset;
        h->heap_size = bytes - kHeapOffset;
        h->magic.store(kHeapMagic, std::memory_order_release);
        return;
    }
    if (bytes <= kHeapOffset) throw SerializationError(what + ": the segment is too small to hold a heap");
    const HeapHeader* h = header_of(shm_);
    if (h->magic.load(std::memory_order_acquire) != kHeapMagic)
        throw SerializationError(what + ": the segment does not hold a ManagedSegment heap");
    if (h->version != kHeapVersion || h->heap_offset != kHeapOffset || h->heap_size > bytes - kHeapOffset)
        throw SerializationError(what + ": its header is corrupt or from another version of mproc");
    m_ = std::make_shared<managed_memory>(bip::open_only, shm_.data() + kHeapOffset, h->heap_size);
}

}  // namespace mproc
