// A read-only look at a manager heap's header, for mproc-top. See inspect.hpp.
#include "manager/inspect.hpp"

#include "manager/heap.hpp"

namespace mproc::detail {

std::size_t heap_header_bytes() noexcept { return mgr::kHeapStart; }

std::optional<HeapView> inspect_heap(std::span<const std::byte> header, std::uint64_t file_size) noexcept {
    if (header.size() < sizeof(mgr::HeapHeader)) return std::nullopt;
    const auto* h = reinterpret_cast<const mgr::HeapHeader*>(header.data());
    if (h->magic != mgr::kHeapMagic || h->reserve != file_size) return std::nullopt;
    HeapView v;
    v.max_bytes = h->reserve;
    v.committed_bytes = h->committed.load(std::memory_order_relaxed);
    v.used_bytes = h->used();
    v.objects = h->next_id.load(std::memory_order_relaxed);
    v.shut_down = h->shut.load(std::memory_order_relaxed) != 0;
    return v;
}

}  // namespace mproc::detail
