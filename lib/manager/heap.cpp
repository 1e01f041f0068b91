// The manager's heap allocator. See heap.hpp.
#include "manager/heap.hpp"

#include <cerrno>
#include <cstring>
#include <new>
#include <string>

#include "mproc/errors.hpp"
#include "os/os.hpp"

namespace mproc::detail::mgr {

namespace {

constexpr std::uint32_t kBlockMagic = 0x4b4c424du;  // "MBLK"
constexpr unsigned kMinClass = 4;                   // 16-byte blocks
constexpr std::uint64_t kGrowMin = std::uint64_t{4} << 20;
constexpr std::uint64_t kOffBits = 40;              // free-list head: offset/16
constexpr std::uint64_t kOffMask = (std::uint64_t{1} << kOffBits) - 1;

// A block's header. `next` links a free block into its class's list. It is
// only ever read and written atomically, and never holds user bytes: a
// popper that lost the race reads it while the winner fills the payload,
// and with the link in the payload that read raced the winner's plain
// writes (TSan saw it; the tag made the outcome safe, not the access).
struct BlockHeader {
    std::uint32_t magic;
    std::uint32_t cls;
    std::uint64_t next;  // atomic_ref only
};
static_assert(sizeof(BlockHeader) == 16);

unsigned class_of(std::uint64_t block_bytes) noexcept {
    return std::max<unsigned>(kMinClass, static_cast<unsigned>(std::bit_width(block_bytes - 1)));
}

std::string mib(std::uint64_t bytes) { return std::to_string((bytes + (1 << 20) - 1) >> 20) + " MiB"; }

}  // namespace

void Heap::format(const Segment& seg, std::uint64_t reserve, std::uint64_t committed) {
    auto* h = new (seg.data()) HeapHeader{};
    h->reserve = reserve;
    h->committed.store(committed, std::memory_order_relaxed);
    h->bump.store(kHeapStart, std::memory_order_relaxed);
    Heap(seg).ensure_committed(kHeapStart + (std::uint64_t{1} << 20));
    h->magic = kHeapMagic;
}

std::uint64_t Heap::payload_capacity(std::uint64_t off) const noexcept {
    return (std::uint64_t{1} << at<BlockHeader>(off - sizeof(BlockHeader))->cls) - sizeof(BlockHeader);
}

namespace {

/// The stripe of free lists for the CPU this thread runs on now.
unsigned my_stripe() noexcept { return os::current_cpu() % kStripes; }

/// Pops a block of class k from `head`, or 0 if the list is empty.
std::uint64_t pop(const Heap& heap, std::atomic<std::uint64_t>& head) noexcept {
    std::uint64_t cur = head.load(std::memory_order_acquire);
    while ((cur & kOffMask) != 0) {
        const std::uint64_t b = (cur & kOffMask) << 4;
        // The block may be taken and reused meanwhile: then this read is
        // garbage and the tag makes the CAS fail.
        const std::uint64_t next =
            std::atomic_ref<std::uint64_t>(heap.at<BlockHeader>(b)->next).load(std::memory_order_relaxed);
        const std::uint64_t tagged = (((cur >> kOffBits) + 1) << kOffBits) | (next & kOffMask);
        if (head.compare_exchange_weak(cur, tagged, std::memory_order_acquire, std::memory_order_acquire)) return b;
    }
    return 0;
}

}  // namespace

std::uint64_t Heap::alloc(std::uint64_t payload) const {
    if (payload > h_->reserve) out_of_memory(payload);
    const unsigned k = class_of(payload + sizeof(BlockHeader));
    if (k >= kClasses) out_of_memory(payload);
    const unsigned mine = my_stripe();
    std::uint64_t block = 0;
    for (unsigned i = 0; i < kStripes && block == 0; ++i)
        block = pop(*this, h_->stripe[(mine + i) % kStripes].head[k]);
    const std::uint64_t size = std::uint64_t{1} << k;
    if (block == 0) {
        std::uint64_t b = h_->bump.load(std::memory_order_relaxed);
        for (;;) {
            if (b + size > h_->reserve) out_of_memory(payload);
            ensure_committed(b + size);
            if (h_->bump.compare_exchange_weak(b, b + size, std::memory_order_relaxed)) break;
        }
        block = b;
    }
    auto* bh = at<BlockHeader>(block);
    bh->magic = kBlockMagic;
    bh->cls = k;
    h_->stripe[mine].used.fetch_add(static_cast<std::int64_t>(size), std::memory_order_relaxed);
    return block + sizeof(BlockHeader);
}

void Heap::free(std::uint64_t payload_off) const noexcept {
    if (payload_off == 0) return;
    const std::uint64_t block = payload_off - sizeof(BlockHeader);
    auto* bh = at<BlockHeader>(block);
    if (bh->magic != kBlockMagic || bh->cls < kMinClass || bh->cls >= kClasses) return;  // never seen; leak
    const unsigned k = bh->cls;
    FreeLists& lists = h_->stripe[my_stripe()];
    std::atomic<std::uint64_t>& head = lists.head[k];
    std::atomic_ref<std::uint64_t> next(bh->next);
    std::uint64_t cur = head.load(std::memory_order_relaxed);
    std::uint64_t tagged;
    do {
        next.store(cur & kOffMask, std::memory_order_relaxed);
        tagged = (((cur >> kOffBits) + 1) << kOffBits) | (block >> 4);
    } while (!head.compare_exchange_weak(cur, tagged, std::memory_order_release, std::memory_order_relaxed));
    lists.used.fetch_sub(static_cast<std::int64_t>(std::uint64_t{1} << k), std::memory_order_relaxed);
}

void Heap::ensure_committed(std::uint64_t end) const {
    std::uint64_t c = h_->committed.load(std::memory_order_acquire);
    if (end <= c) return;
    constexpr std::uint64_t kAlign = std::uint64_t{2} << 20;
    std::uint64_t target = std::max(end, c + std::max(c / 4, kGrowMin));
    target = std::min(h_->reserve, (target + kAlign - 1) / kAlign * kAlign);
    int err = os::allocate(fd_, c, target - c);
    if (err != 0 && target > end) {
        target = std::min(h_->reserve, (end + 4095) / 4096 * 4096);
        err = os::allocate(fd_, c, target - c);
    }
    if (err != 0)
        throw Error("mproc::Manager is out of memory: its shared heap could not grow from " + mib(c) + " to " +
                    mib(target) + " (fallocate: " + std::strerror(err) +
                    "). Free entries, or give the machine more memory.");
    while (c < target && !h_->committed.compare_exchange_weak(c, target, std::memory_order_release)) {
    }
}

void Heap::out_of_memory(std::uint64_t payload) const {
    throw Error("mproc::Manager is out of memory: a block of " + std::to_string(payload) +
                " bytes does not fit in its heap of " + mib(h_->reserve) + " (" + mib(h_->used()) +
                " in use). Create the Manager with a larger ManagerOptions::max_bytes.");
}

std::uint64_t Heap::make_entry(std::uint64_t hash, Bytes key, Bytes value) const {
    if (key.size() > UINT32_MAX || value.size() > UINT32_MAX)
        throw ValueError("mproc::Manager: a key or value of " + std::to_string(std::max(key.size(), value.size())) +
                         " bytes is larger than a manager container holds (4 GiB)");
    const std::uint64_t off = alloc(sizeof(EntryHeader) + key.size() + value.size());
    auto* e = at<EntryHeader>(off);
    e->hash = hash;
    e->klen = static_cast<std::uint32_t>(key.size());
    e->vlen = static_cast<std::uint32_t>(value.size());
    auto* p = at(off + sizeof(EntryHeader));
    if (!key.empty()) std::memcpy(p, key.data(), key.size());
    if (!value.empty()) std::memcpy(p + key.size(), value.data(), value.size());
    return off;
}

std::uint64_t hash_bytes(Bytes b) noexcept {
    const auto* p = reinterpret_cast<const unsigned char*>(b.data());
    std::size_t n = b.size();
    std::uint64_t h = 0x9e3779b97f4a7c15ull ^ (n * 0xff51afd7ed558ccdull);
    auto mix = [&](std::uint64_t w) {
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
    };
    for (; n >= 8; n -= 8, p += 8) {
        std::uint64_t w;
        std::memcpy(&w, p, 8);
        mix(w);
    }
    if (n > 0) {
        std::uint64_t w = 0;
        std::memcpy(&w, p, n);
        mix(w);
    }
    h ^= h >> 29;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 32;
    return h;
}

}  // namespace mproc::detail::mgr
