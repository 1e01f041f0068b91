// A read-only look at a channel ring (Queue, JoinableQueue, Pipe, a pool's
// task and result rings) through a mapping of its header, for mproc-top:
// what is in it and who waits on it. Writes nothing, takes no lock; every
// figure is a snapshot of words other processes keep changing.
//
// Internal header (lib/channel/).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include <sys/types.h>

namespace mproc::detail {

/// How many bytes of the segment inspect_ring needs mapped.
std::size_t ring_header_bytes() noexcept;

struct RingView {
    std::uint64_t capacity_bytes = 0;  // the ring's size
    std::uint64_t maxsize = 0;         // item limit (0: none)
    std::uint64_t items = 0;           // published and not yet consumed
    std::uint64_t bytes_used = 0;      // ring bytes they occupy
    std::uint64_t puts = 0;            // items published so far (mod 2^31)
    std::uint64_t gets = 0;            // items consumed so far (mod 2^31)
    bool joinable = false;
    std::uint64_t unfinished = 0;      // JoinableQueue: put and not task_done
    // A side's waiters: the one holding the side's lock sleeps on the other
    // side's commit (asleep = its wait word's sleeper bit, with the lock
    // held by a live thread); more queue on the lock (the kernel's waiters
    // bit: one or more). Thread ids, 0 for none.
    pid_t reader_tid = 0;              // holds the reader lock
    bool reader_asleep = false;
    bool readers_queued = false;
    pid_t writer_tid = 0;
    bool writer_asleep = false;
    bool writers_queued = false;
};

/// later - earlier for two of the ring's counts (puts, gets), which wrap
/// at 2^31.
std::uint64_t ring_count_diff(std::uint64_t later, std::uint64_t earlier) noexcept;

/// The ring whose segment starts at `header` (ring_header_bytes() mapped)
/// and whose file is `file_size` bytes; nullopt if it is not a ring.
std::optional<RingView> inspect_ring(std::span<const std::byte> header, std::uint64_t file_size) noexcept;

}  // namespace mproc::detail
