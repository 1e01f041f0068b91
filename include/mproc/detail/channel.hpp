// mproc::detail::ChannelCore — the byte ring under Queue and Connection.
//
// One ring of `capacity` bytes in an anonymous shared segment carries
// length-prefixed records. Writers serialize among themselves on a writer
// lock, readers on a reader lock, so one writer and one reader work at the
// same time. The side locks are OwnerLocks (lib/sync/owner_lock.hpp): one
// CAS to take, a plain store to let go when nobody waits, and a word that
// names the owner so that the next locker notices a dead one (owner_died).
// Each side's work is committed in one step that a process killed at any
// instruction has made or not: a writer's item becomes
// visible when it adds one to the side's `published` word, a reader's item
// leaves the ring when it adds one to `consumed` (WaitWord, lib/sync/
// waiter.hpp); what each side writes before its commit (the record, its
// byte position) is invisible until then. A half-written record is never
// published, a half-read one never consumed. A process killed between
// writing its state and committing it left the side's lock owner-dead; the
// next holder of that lock completes the commit, so the item arrives once
// (or, if no one ever takes that side again, not at all: the call that was
// interrupted never returned).
//
// Items too large for the ring (over a quarter of it) travel in their own
// memfd whose fd is passed over a unix socket (SCM_RIGHTS); the ring record
// carries the memfd's identity, so an fd left in the socket by a process
// that died mid-put is recognised and dropped, never mistaken for another.
//
// Waiting: spin briefly (adaptively), then sleep on the side's word: by
// futex (Queue), or, for a Connection, in poll(2) on the end's own socket,
// which also reports the peer's death (every copy of its socket closed,
// kill -9 included). A sleeper sleeps holding its side's lock, so one
// process per side sleeps on the word and the others queue on the lock,
// whose unlock wakes one of them: one wake-up per item, no herd. The
// commit and the wake-up are one step (FUTEX_WAKE_OP), so a sleeper is
// never left asleep with an item (or room) there for it, and so never
// holds the lock while work waits behind it.
// The socket transport sends its wake-up after the commit; a waker killed
// in between is covered by the safety net (polls of at most
// kRecheckInterval) or by the hang-up. See lib/channel/ring_wait.hpp.
//
// Thread safety: a ChannelCore may be used from any thread of any process
// holding a handle. Nothing here is a public API.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "mproc/detail/segment.hpp"
#include "mproc/duration.hpp"

namespace mproc::detail {

struct RingHeader;
class RingWaker;
class WaitWord;

inline constexpr std::size_t kDefaultRingCapacity = std::size_t{8} << 20;  // 8 MiB

/// One item being read: its bytes stay valid, and the item stays in the
/// ring, until the reservation is committed or dropped. Holds the reader
/// lock meanwhile.
class ReadReservation {
public:
    ReadReservation() = default;
    ReadReservation(ReadReservation&&) noexcept;
    ReadReservation& operator=(ReadReservation&&) = delete;
    ~ReadReservation();  // drops: the item stays for the next reader

    std::span<const std::byte> bytes() const noexcept { return bytes_; }
    /// Consumes the item and releases the reader lock.
    void commit();

private:
    friend class ChannelCore;
    class ChannelCore* core_ = nullptr;
    std::span<const std::byte> bytes_;
    std::uint64_t next_state_ = 0;
    SegmentPtr spill_;          // the large item's own mapping
    std::uint64_t spill_ino_ = 0;
};

class ChannelCore {
public:
    enum class Wait { futex, socket };
    /// How a waiting reader or writer looks at the other side: `batched`
    /// paces its looks to a stream, `prompt` always looks at once (see
    /// spin_then_wait in lib/channel/ring_wait.hpp).
    enum class Pace { batched, prompt };

    /// A new ring. `link` (socket mode) is this end's own socket: it sleeps
    /// on it and wakes the peer through it. `name` names its memfd after
    /// what it is ("mproc-queue", "mproc-pipe", "mproc-pool-tasks", ...),
    /// which is how mproc-top tells the kinds apart.
    ChannelCore(std::size_t capacity, std::size_t maxsize, Wait wait, DescriptorPtr link = nullptr,
                bool joinable = false, const char* name = "mproc-queue", Pace pace = Pace::batched);

    /// Appends one item. False if the timeout passed first (queue full).
    /// EOFError (socket mode) if the peer has closed its end.
    bool put(std::span<const std::byte> item, Timeout timeout);
    /// Writes into `into` and returns how many bytes it wrote, or sets
    /// `fits` false if `into` was too small (what it wrote is then ignored).
    using Encoder = std::size_t (*)(const void* item, std::span<std::byte> into, bool& fits);
    enum class InPlace { done, timed_out, no_room };
    /// put() without an intermediate buffer: the encoder writes the item
    /// straight into the ring's free space, under the writer lock. no_room
    /// (nothing written, nothing waited for) when the ring has no contiguous
    /// room for it right now or the queue is at maxsize: then put() the bytes.
    InPlace put_in_place(Encoder encode, const void* item, Timeout timeout);
    /// Reserves the next item. False on timeout. EOFError (socket mode) once
    /// the peer has closed its end and nothing is left.
    bool begin_get(ReadReservation& r, Timeout timeout);
    /// True if an item is ready to read (socket mode: or the peer is gone).
    bool poll(Timeout timeout);

    /// For waiting on several channels: mark this reader as sleeping (so a
    /// writer sends a wake-up on the link) and back.
    void arm_reader() noexcept;
    void disarm_reader() noexcept;

    std::size_t qsize() const noexcept;
    std::size_t maxsize() const noexcept;
    std::size_t capacity() const noexcept;

    // JoinableQueue's counter of unfinished tasks (counted by put when the
    // core was made joinable).
    void task_done();
    bool join(Timeout timeout);

    /// Another end's view of the same ring (Connection: the peer's link).
    ChannelCore with_link(DescriptorPtr link) const;
    const DescriptorPtr& link() const noexcept { return link_; }

    void mproc_export(HandleWriter& w) const;
    static ChannelCore mproc_import(HandleReader& r, DescriptorPtr link);

private:
    friend class ReadReservation;
    ChannelCore() = default;
    void end_get(ReadReservation& r, bool commit);
    bool wait_for_data(std::uint32_t consumed, const void* deadline);
    bool wait_for_space(std::uint32_t consumed, const void* deadline);
    std::uint64_t committed_rstate() const noexcept;
    std::atomic<std::uint32_t>* pace(std::atomic<std::uint32_t>& side) const noexcept;
    void finish_dead_writer();
    void finish_dead_reader();
    void publish(WaitWord& word, bool data);
    bool peer_gone_check();
    bool put_spilled(std::span<const std::byte> item, const void* deadline);
    bool write_record(std::uint32_t kind, std::span<const std::byte> payload, const void* deadline,
                      bool zero_timeout, int spill_fd);

    SegmentPtr seg_;
    RingHeader* h_ = nullptr;
    std::byte* data_ = nullptr;
    DescriptorPtr spill_send_;
    DescriptorPtr spill_recv_;
    DescriptorPtr link_;
    Wait wait_ = Wait::futex;
    const RingWaker* waker_ = nullptr;
    // This end's process-local state, shared by copies of the handle here.
    // How long it spins before sleeping, adapted to how often spinning paid
    // off (a hint only: threads racing on it at worst spin a little more or
    // less), and (socket mode) a count of sends, to look for a dead peer
    // now and then.
    struct SpinState {
        SpinState() noexcept;
        std::atomic<std::uint32_t> data_ns;
        std::atomic<std::uint32_t> space_ns;
        std::atomic<std::uint32_t> data_pace{1};
        std::atomic<std::uint32_t> space_pace{1};
        std::atomic<std::uint32_t> puts{0};
    };
    std::shared_ptr<SpinState> spin_;
};

}  // namespace mproc::detail
