// A read-only look at a channel ring. See inspect.hpp.
#include "channel/inspect.hpp"

#include "channel/ring_header.hpp"
#include "os/os.hpp"

namespace mproc::detail {

std::size_t ring_header_bytes() noexcept { return kDataOffset; }

std::uint64_t ring_count_diff(std::uint64_t later, std::uint64_t earlier) noexcept {
    return (later - earlier) & kCountMask;
}

std::optional<RingView> inspect_ring(std::span<const std::byte> header, std::uint64_t file_size) noexcept {
    if (header.size() < kDataOffset) return std::nullopt;
    const auto* h = reinterpret_cast<const RingHeader*>(header.data());
    const std::uint64_t cap = h->capacity;
    // What the ring's own constructor guarantees: a power of two of at
    // least 4 KiB behind the header, and the magic written last.
    if (h->magic != kRingMagic || cap < 4096 || (cap & (cap - 1)) != 0 || file_size < kDataOffset + cap)
        return std::nullopt;
    RingView v;
    v.capacity_bytes = cap;
    v.maxsize = h->maxsize;
    v.joinable = h->joinable != 0;
    // Consumed first: the difference can then only overstate by what was
    // published in between, never go negative (as qsize()).
    const std::uint32_t consumed = h->consumed.state();
    const std::uint32_t published = h->published.state();
    v.gets = consumed;
    v.puts = published;
    v.items = (published - consumed) & kCountMask;
    const std::uint64_t r = h->rstate[consumed & 1].load(std::memory_order_acquire);
    const std::uint64_t w = h->wstate.load(std::memory_order_acquire);
    const std::uint32_t used = pos_of(w) - pos_of(r);
    v.bytes_used = used <= cap ? used : 0;  // a torn look: say nothing
    if (v.joinable) v.unfinished = (published - h->done.state()) & kCountMask;

    const os::MutexSnapshot rl = h->rlock.snapshot();
    const os::MutexSnapshot wl = h->wlock.snapshot();
    v.reader_tid = rl.owner_tid;
    v.reader_asleep = rl.owner_tid != 0 && h->published.has_sleepers();
    v.readers_queued = rl.waiters;
    v.writer_tid = wl.owner_tid;
    v.writer_asleep = wl.owner_tid != 0 && h->consumed.has_sleepers();
    v.writers_queued = wl.waiters;
    return v;
}

}  // namespace mproc::detail
