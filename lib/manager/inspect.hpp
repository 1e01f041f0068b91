// A read-only look at a manager's shared heap through a mapping of its
// header, for mproc-top. Writes nothing, takes no lock; a snapshot.
//
// Internal header (lib/manager/).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace mproc::detail {

/// How many bytes of the segment inspect_heap needs mapped.
std::size_t heap_header_bytes() noexcept;

struct HeapView {
    std::uint64_t max_bytes = 0;        // address space reserved
    std::uint64_t committed_bytes = 0;  // backed by memory so far
    std::uint64_t used_bytes = 0;       // in allocated blocks
    std::uint64_t objects = 0;          // objects created in the heap so far (ids handed out)
    bool shut_down = false;
};

/// The heap whose segment starts at `header` (heap_header_bytes() mapped);
/// nullopt if it is not a manager heap.
std::optional<HeapView> inspect_heap(std::span<const std::byte> header, std::uint64_t file_size) noexcept;

}  // namespace mproc::detail
