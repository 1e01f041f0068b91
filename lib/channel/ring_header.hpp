// The header at the start of every channel ring's segment (Queue, Pipe,
// the pool's task and result rings): its layout, said once, for the ring
// (ring.cpp) and for its read-only inspection (inspect.cpp, mproc-top).
// See include/mproc/detail/channel.hpp for the protocol.
//
// Internal header.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "sync/owner_lock.hpp"
#include "sync/waiter.hpp"

namespace mproc::detail {

inline constexpr std::uint32_t kRingMagic = 0x4d505249;  // "MPRI"
/// The ring's bytes start here, after the header.
inline constexpr std::size_t kDataOffset = 4096;

// A side's committed state: item count (high half) and byte position (low
// half), both modulo 2^32, stored together so one store commits both.
constexpr std::uint64_t make_state(std::uint32_t count, std::uint32_t pos) {
    return (std::uint64_t{count} << 32) | pos;
}
constexpr std::uint32_t pos_of(std::uint64_t s) { return static_cast<std::uint32_t>(s); }
constexpr std::uint32_t count_of(std::uint64_t s) { return static_cast<std::uint32_t>(s >> 32); }
inline constexpr std::uint32_t kCountMask = WaitWord::kStateMask;  // commits count modulo 2^31
constexpr std::uint32_t count31(std::uint64_t s) { return count_of(s) & kCountMask; }

struct RingHeader {
    std::uint32_t magic;
    std::uint32_t joinable;
    std::uint64_t capacity;
    std::uint64_t maxsize;
    std::uint32_t prompt;  // ChannelCore::Pace::prompt: readers look at once (ring_wait.hpp)

    // Each group on cache lines of its own, so that a side's own lock and
    // cached view never travel to the other CPU: what one side writes and
    // the other reads (the commit word and the state it covers) shares a
    // line, so a look at the other side costs one line transfer, not two.
    //
    // Writers: their lock and their last look at the reader side.
    alignas(64) OwnerLock wlock;
    std::atomic<std::uint64_t> cached_rstate{0};
    // Items published (mod 2^31): the writers' commit, what readers sleep
    // on; beside it what they wrote (count and byte position, the commit
    // still to come when a writer died before it).
    alignas(64) WaitWord published;
    std::atomic<std::uint64_t> wstate{0};
    std::atomic<std::uint64_t> data_woken_at{0};  // when a writer last woke a sleeper

    // Readers: their lock and their last look at the writer side.
    alignas(64) OwnerLock rlock;
    std::atomic<std::uint32_t> cached_published{0};
    std::atomic<std::uint64_t> cached_wstate{0};
    // Items consumed (mod 2^31): the readers' commit, what writers sleep on;
    // beside it the reader state (count, position) after each number of
    // consumptions, in the slot of its parity, so a writer reading
    // `consumed` finds its state beside it while the next one is written.
    alignas(64) WaitWord consumed;
    std::atomic<std::uint64_t> rstate[2]{};
    std::atomic<std::uint64_t> space_woken_at{0};

    // JoinableQueue: tasks done (mod 2^31); unfinished = published - done.
    // task_done commits under done_lock, so the check and the count are
    // one step for every death.
    alignas(64) WaitWord done;
    OwnerLock done_lock;
};
static_assert(sizeof(RingHeader) <= kDataOffset);

}  // namespace mproc::detail
