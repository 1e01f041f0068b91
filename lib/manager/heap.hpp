// The manager's shared heap: one memfd, mapped whole by every process, and
// a lock-free allocator over it. Internal header (lib/manager/).
//
// The memfd is `max_bytes` long, sparse: only what is used costs memory,
// and it is backed with fallocate ahead of use, so growth needs no
// remapping and running out is an ENOSPC reported as mproc::Error, not a
// SIGBUS. Blocks come in power-of-two classes; each class has a lock-free
// free list (a Treiber stack whose head carries a 24-bit ABA tag), and new
// blocks come from a bump pointer advanced by compare-and-swap. Every
// allocator step is one CAS, so a process killed inside the allocator loses
// at most the block it was taking or giving back, never the heap.
//
// The free lists come in stripes, one per group of CPUs, each on cache
// lines of its own: a block is given back to the stripe of the CPU the
// caller runs on and taken from it first (then from the others, then from
// the bump pointer). Two processes replacing entries of one dict on two
// CPUs then never write the same list head; with one set of lists every
// alloc and free took that line from the other CPU (bench_manager, 2-CPU
// VM, 2 processes setting and getting on one dict: 2.9 M ops/s so, 3.4 M
// striped; on a dict each, 5.1 M so, 10.9 M striped). Which CPU is only a
// hint: a caller moved meanwhile merely touches another stripe.
//
// Offsets, never pointers: every process maps the heap at its own address.
// Offset 0 is "none".
//
// Entries: a stored key and/or value is one block,
//   [hash u64][key length u32][value length u32][key bytes][value bytes],
// written whole before anything points at it.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

#include "mproc/detail/segment.hpp"

namespace mproc::detail {
class SharedHeap;
}

namespace mproc::detail::mgr {

using Bytes = std::span<const std::byte>;

inline constexpr std::uint64_t kHeapMagic = 0x50414548434f524dull;   // "MROCHEAP"
inline constexpr std::uint64_t kHeapStart = 4096;                    // after the header
inline constexpr unsigned kClasses = 48;
inline constexpr unsigned kDirectoryChunks = 40;
inline constexpr unsigned kStripes = 8;

/// One stripe of free lists: a head per class, and the bytes allocated
/// less those freed through this stripe (negative when blocks were taken
/// from one stripe and given back to another; the heap's use is the sum).
struct alignas(64) FreeLists {
    std::atomic<std::uint64_t> head[kClasses];
    std::atomic<std::int64_t> used;
};

struct HeapHeader {
    std::uint64_t magic;
    std::uint64_t reserve;                  // bytes of address space (the memfd's size)
    std::atomic<std::uint64_t> committed;   // bytes backed by fallocate
    std::atomic<std::uint64_t> bump;        // first never-allocated byte
    std::atomic<std::uint32_t> shut;        // 1 once the manager shut down
    std::uint32_t pad;
    // The object directory (object.cpp): ids handed out so far, and chunk
    // k holding the offsets of ids [64 (2^k - 1), 64 (2^(k+1) - 1)).
    std::atomic<std::uint64_t> next_id;
    std::atomic<std::uint64_t> directory[kDirectoryChunks];
    FreeLists stripe[kStripes];

    /// Bytes in allocated blocks.
    std::uint64_t used() const noexcept {
        std::int64_t n = 0;
        for (const FreeLists& s : stripe) n += s.used.load(std::memory_order_relaxed);
        return n > 0 ? static_cast<std::uint64_t>(n) : 0;
    }
};
static_assert(sizeof(HeapHeader) <= kHeapStart);

struct EntryHeader {
    std::uint64_t hash;
    std::uint32_t klen;
    std::uint32_t vlen;
};

/// Relaxed load / release store of a 64-bit word in the heap: every
/// publication in the containers is one such store.
inline std::uint64_t load(const std::uint64_t& w) {
    return std::atomic_ref<const std::uint64_t>(w).load(std::memory_order_relaxed);
}
inline void store(std::uint64_t& w, std::uint64_t v) {
    std::atomic_ref<std::uint64_t>(w).store(v, std::memory_order_release);
}

/// The heap as seen through this process's mapping. Cheap to copy.
class Heap {
public:
    explicit Heap(const Segment& seg) noexcept
        : base_(seg.data()), h_(reinterpret_cast<HeapHeader*>(seg.data())), fd_(seg.fd()) {}

    HeapHeader& header() const noexcept { return *h_; }
    template <class T = std::byte>
    T* at(std::uint64_t off) const noexcept {
        return reinterpret_cast<T*>(base_ + off);
    }
    bool shut_down() const noexcept { return h_->shut.load(std::memory_order_relaxed) != 0; }

    /// A block with room for `payload` bytes; returns the payload's offset.
    /// mproc::Error if the heap is full.
    std::uint64_t alloc(std::uint64_t payload) const;
    /// Gives a block back (0 is ignored). Never throws.
    void free(std::uint64_t payload_off) const noexcept;
    /// Payload bytes of the block whose payload is at `off`.
    std::uint64_t payload_capacity(std::uint64_t off) const noexcept;

    /// A new entry holding key and value; returns its offset.
    std::uint64_t make_entry(std::uint64_t hash, Bytes key, Bytes value) const;
    const EntryHeader& entry(std::uint64_t off) const noexcept { return *at<EntryHeader>(off); }
    Bytes entry_key(std::uint64_t off) const noexcept {
        return Bytes(at(off + sizeof(EntryHeader)), entry(off).klen);
    }
    Bytes entry_value(std::uint64_t off) const noexcept {
        const EntryHeader& e = entry(off);
        return Bytes(at(off + sizeof(EntryHeader) + e.klen), e.vlen);
    }

    /// Formats a new heap in `seg` (create()), of which `committed` bytes
    /// are backed already.
    static void format(const Segment& seg, std::uint64_t reserve, std::uint64_t committed = 0);

private:
    void ensure_committed(std::uint64_t end) const;
    [[noreturn]] void out_of_memory(std::uint64_t payload) const;

    std::byte* base_;
    HeapHeader* h_;
    int fd_;
};

/// Frees a block made outside the lock unless the operation publishes it,
/// or a block an operation unlinked, once the lock is let go (declared
/// before the lock, it is destroyed after it).
class BlockGuard {
public:
    BlockGuard(const Heap& heap, std::uint64_t off) noexcept : heap_(heap), off_(off) {}
    ~BlockGuard() { heap_.free(off_); }
    BlockGuard(const BlockGuard&) = delete;
    BlockGuard& operator=(const BlockGuard&) = delete;
    std::uint64_t get() const noexcept { return off_; }
    /// The block is published now: keep it.
    std::uint64_t release() noexcept { return std::exchange(off_, 0); }
    /// Frees the block held so far and holds `off` instead.
    void reset(std::uint64_t off) noexcept { heap_.free(std::exchange(off_, off)); }

private:
    const Heap& heap_;
    std::uint64_t off_;
};

/// Empties `heap` in place, as if just created with `reserve` bytes (0:
/// the same as before; at most the mapping): names.cpp. For the fuzzer, a
/// fresh heap for every input without making one: the cost is the bytes
/// the last user allocated, zeroed again, and the input then sees exactly
/// a new heap. Nothing may use it meanwhile.
void reset_heap(const SharedHeap& heap, std::uint64_t reserve = 0);

/// A hash of stored bytes (keys, registry names).
std::uint64_t hash_bytes(Bytes b) noexcept;

inline bool same_bytes(Bytes a, Bytes b) noexcept {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

}  // namespace mproc::detail::mgr
