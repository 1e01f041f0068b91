// The byte ring under Queue and Connection. See include/mproc/detail/channel.hpp.
#include "mproc/detail/channel.hpp"

#include <algorithm>
#include <climits>
#include <cstring>
#include <new>
#include <string>

#include "mproc/errors.hpp"
#include "os/fault.hpp"
#include "os/os.hpp"
#include "os/socket.hpp"
#include "channel/ring_header.hpp"
#include "channel/ring_wait.hpp"
#include "sync/waiter.hpp"

namespace mproc::detail {

namespace {

constexpr std::uint32_t kInline = 1, kSpilled = 2, kSkip = 3;
constexpr std::size_t kMinCapacity = 4096;
constexpr std::size_t kMaxCapacity = std::size_t{1} << 30;

struct RecordHeader {
    std::uint32_t len;
    std::uint32_t kind;
};
static_assert(sizeof(RecordHeader) == 8);

struct SpillTicket {
    std::uint64_t dev, ino, size;
};

constexpr std::size_t round8(std::size_t n) { return (n + 7) & ~std::size_t{7}; }

const os::Deadline& dl(const void* p) { return *static_cast<const os::Deadline*>(p); }

struct LockGuard {
    OwnerLock* m;
    ~LockGuard() {
        if (m) m->unlock();
    }
};

// Locks a side. A holder that died left the side's state consistent (its
// commit is one step); one that died between writing its state and
// committing it is finished by the caller (finish_dead_writer/reader),
// which checks on every acquisition: cheaper than telling the cases apart.
bool lock_side(OwnerLock* m, const os::Deadline& deadline, bool zero_timeout) {
    const os::LockStatus s = zero_timeout ? m->try_lock() : m->lock(deadline);
    return s == os::LockStatus::acquired || s == os::LockStatus::owner_died;
}

bool zero(const Timeout& t) { return t && t->count() <= 0; }

}  // namespace

ChannelCore::SpinState::SpinState() noexcept
    : data_ns(static_cast<std::uint32_t>(os::spin_budget_ns())),
      space_ns(static_cast<std::uint32_t>(os::spin_budget_ns())) {}

// ---- construction -------------------------------------------------------

ChannelCore::ChannelCore(std::size_t capacity, std::size_t maxsize, Wait wait, DescriptorPtr link,
                         bool joinable, const char* name, Pace pace)
    : link_(std::move(link)), wait_(wait),
      waker_(wait == Wait::socket ? &RingWaker::socket() : &RingWaker::futex()) {
    if (capacity < kMinCapacity) capacity = kMinCapacity;
    if (capacity > kMaxCapacity)
        throw ValueError("queue capacity " + std::to_string(capacity) + " is over the 1 GiB limit");
    std::size_t cap = kMinCapacity;
    while (cap < capacity) cap <<= 1;
    if (maxsize > kCountMask / 2) maxsize = kCountMask / 2;

    seg_ = Segment::anonymous(kDataOffset + cap, name);
    spin_ = std::make_shared<SpinState>();
    h_ = new (seg_->data()) RingHeader();
    h_->capacity = cap;
    h_->maxsize = maxsize;
    h_->joinable = joinable ? 1 : 0;
    h_->prompt = pace == Pace::prompt ? 1 : 0;
    h_->magic = kRingMagic;
    data_ = seg_->data() + kDataOffset;

    auto [a, b] = os::socket_pair(os::SocketKind::seqpacket);
    spill_send_ = Descriptor::adopt(a.release());
    spill_recv_ = Descriptor::adopt(b.release());
}

ChannelCore ChannelCore::with_link(DescriptorPtr link) const {
    ChannelCore c = *this;
    c.link_ = std::move(link);
    c.spin_ = std::make_shared<SpinState>();  // another end: its own history
    return c;
}

std::size_t ChannelCore::capacity() const noexcept { return h_->capacity; }
std::size_t ChannelCore::maxsize() const noexcept { return h_->maxsize; }

std::size_t ChannelCore::qsize() const noexcept {
    // Read the reader side first: the count can then only be overstated by
    // items published in between, never negative.
    const std::uint32_t c = h_->consumed.state();
    const std::uint32_t p = h_->published.state();
    return (p - c) & kCountMask;
}

// ---- commits and the deaths between writing and committing ---------------

void ChannelCore::publish(WaitWord& word, bool data) {
    waker_->publish(word, data ? h_->data_woken_at : h_->space_woken_at, link_ ? link_->fd() : -1,
                    data ? "ring.put_published" : "ring.get_published");
}

// Under wlock: a writer that died after writing its state but before its
// commit left wstate one item ahead of `published`. Publish it for it.
void ChannelCore::finish_dead_writer() {
    const std::uint32_t behind = (count31(h_->wstate.load(std::memory_order_relaxed)) - h_->published.state()) & kCountMask;
    if (behind != 0) publish(h_->published, true);
}

// Under rlock: a reader that died after writing its next state but before
// its commit left that state in the other slot. Commit it: the item was
// read (and consume()'s function had returned).
void ChannelCore::finish_dead_reader() {
    const std::uint32_t c = h_->consumed.state();
    const std::uint64_t next = h_->rstate[(c + 1) & 1].load(std::memory_order_relaxed);
    if (count31(next) == ((c + 1) & kCountMask)) publish(h_->consumed, false);
}

// The reader state that goes with the last commit of `consumed`.
std::uint64_t ChannelCore::committed_rstate() const noexcept {
    for (;;) {
        const std::uint32_t c = h_->consumed.state();
        const std::uint64_t s = h_->rstate[c & 1].load(std::memory_order_acquire);
        if (count31(s) == c) return s;
        // A reader committed again in between; look once more.
    }
}

// ---- waiting ------------------------------------------------------------

std::atomic<std::uint32_t>* ChannelCore::pace(std::atomic<std::uint32_t>& side) const noexcept {
    return h_->prompt ? nullptr : &side;
}

// The holder of a side's lock sleeps on the other side's commit word.
bool ChannelCore::wait_for_data(std::uint32_t consumed, const void* deadline) {
    return spin_then_wait(
        h_->published, h_->data_woken_at, spin_->data_ns, pace(spin_->data_pace), *waker_, link_ ? link_->fd() : -1,
        [consumed](std::uint32_t published) { return published != consumed; }, dl(deadline));
}

bool ChannelCore::wait_for_space(std::uint32_t consumed, const void* deadline) {
    return spin_then_wait(
        h_->consumed, h_->space_woken_at, spin_->space_ns, pace(spin_->space_pace), *waker_, link_ ? link_->fd() : -1,
        [consumed](std::uint32_t now) { return now != consumed; }, dl(deadline));
}

void ChannelCore::arm_reader() noexcept { h_->published.mark_sleeping(); }
void ChannelCore::disarm_reader() noexcept { h_->published.clear_sleeping(); }

// ---- put ----------------------------------------------------------------

// A Connection's peer that died while not receiving is noticed when the
// ring fills, when a wake-up bounces, or here, once every 256 sends: often
// enough that a writer learns soon, rarely enough to cost nothing.
bool ChannelCore::peer_gone_check() {
    return wait_ == Wait::socket && (spin_->puts.fetch_add(1, std::memory_order_relaxed) & 255) == 255 &&
           os::peer_closed(link_->fd());
}

bool ChannelCore::put(std::span<const std::byte> item, Timeout timeout) {
    if (peer_gone_check()) throw EOFError("Connection: the other end is closed");
    const os::Deadline deadline = os::Deadline::after(timeout);
    if (sizeof(RecordHeader) + round8(item.size()) > h_->capacity / 4)
        return put_spilled(item, &deadline);
    return write_record(kInline, item, &deadline, zero(timeout), -1);
}

ChannelCore::InPlace ChannelCore::put_in_place(Encoder encode, const void* item, Timeout timeout) {
    if (peer_gone_check()) throw EOFError("Connection: the other end is closed");
    const os::Deadline deadline = os::Deadline::after(timeout);
    if (!lock_side(&h_->wlock, deadline, zero(timeout))) return InPlace::timed_out;
    LockGuard g{&h_->wlock};
    finish_dead_writer();
    const std::size_t cap = h_->capacity;
    const std::uint64_t w = h_->wstate.load(std::memory_order_relaxed);
    const std::uint64_t r = committed_rstate();
    h_->cached_rstate.store(r, std::memory_order_relaxed);
    const std::size_t idx = pos_of(w) & (cap - 1);
    // Contiguous free bytes from the write position, within the inline limit.
    const std::size_t room =
        std::min({cap - (pos_of(w) - pos_of(r)), cap - idx, cap / 4}) & ~std::size_t{7};
    if ((h_->maxsize != 0 && count_of(w) - count_of(r) >= h_->maxsize) ||
        room <= sizeof(RecordHeader))
        return InPlace::no_room;
    bool fits = true;
    const std::size_t n = encode(item, {data_ + idx + sizeof(RecordHeader), room - sizeof(RecordHeader)}, fits);
    if (!fits) return InPlace::no_room;
    RecordHeader hdr{static_cast<std::uint32_t>(n), kInline};
    std::memcpy(data_ + idx, &hdr, sizeof hdr);
    h_->wstate.store(make_state(count_of(w) + 1,
                                pos_of(w) + static_cast<std::uint32_t>(sizeof hdr + round8(n))),
                     std::memory_order_release);
    os::fault_point("ring.put_publish");
    publish(h_->published, true);  // the commit
    return InPlace::done;
}

bool ChannelCore::put_spilled(std::span<const std::byte> item, const void* deadline) {
    // The item's own memfd, filled before any lock is taken.
    os::Fd fd = os::memfd("mproc-item", item.size());
    void* p = os::map_shared(fd.get(), item.size(), "mproc-item");
    std::memcpy(p, item.data(), item.size());
    os::unmap(p, item.size());
    const os::FileId id = os::file_id(fd.get());
    SpillTicket ticket{id.dev, id.ino, item.size()};
    return write_record(kSpilled, std::as_bytes(std::span(&ticket, 1)), deadline, false, fd.get());
}

bool ChannelCore::write_record(std::uint32_t kind, std::span<const std::byte> payload,
                               const void* deadline_p, bool zero_timeout, int spill_fd) {
    const os::Deadline& deadline = dl(deadline_p);
    if (!lock_side(&h_->wlock, deadline, zero_timeout)) return false;
    LockGuard g{&h_->wlock};
    finish_dead_writer();
    const std::size_t cap = h_->capacity;
    const std::size_t rec = sizeof(RecordHeader) + round8(payload.size());
    for (bool fresh = false;; fresh = true) {
        const std::uint64_t w = h_->wstate.load(std::memory_order_relaxed);
        // The reader only ever frees room, so a stale view of its state is
        // safe: look at the real one only when the cached one says "full".
        std::uint64_t r = h_->cached_rstate.load(std::memory_order_relaxed);
        auto fits = [&] {
            const std::uint32_t used = pos_of(w) - pos_of(r);
            const std::size_t idx = pos_of(w) & (cap - 1);
            const std::size_t skip = cap - idx < rec ? cap - idx : 0;
            const std::uint32_t count = count_of(w) - count_of(r);
            return (h_->maxsize == 0 || count < h_->maxsize) && cap - used >= skip + rec;
        };
        if (!fits() || fresh) {
            r = committed_rstate();
            h_->cached_rstate.store(r, std::memory_order_relaxed);
        }
        if (fits()) {
            const std::size_t idx = pos_of(w) & (cap - 1);
            const std::size_t skip = cap - idx < rec ? cap - idx : 0;
            // A large item's fd goes first: a reader that sees the record
            // finds it waiting in the socket.
            if (spill_fd >= 0 &&
                !os::send_fd(spill_send_->fd(), spill_fd, payload, deadline))
                return false;
            std::size_t at = idx;
            if (skip) {
                RecordHeader sh{0, kSkip};
                std::memcpy(data_ + at, &sh, sizeof sh);
                at = 0;
            }
            RecordHeader hdr{static_cast<std::uint32_t>(payload.size()), kind};
            std::memcpy(data_ + at, &hdr, sizeof hdr);
            if (!payload.empty()) std::memcpy(data_ + at + sizeof hdr, payload.data(), payload.size());
            h_->wstate.store(make_state(count_of(w) + 1,
                                        pos_of(w) + static_cast<std::uint32_t>(skip + rec)),
                             std::memory_order_release);
            os::fault_point("ring.put_publish");
            publish(h_->published, true);  // the commit
            return true;
        }
        if (zero_timeout || !wait_for_space(count31(r), deadline_p)) return false;
    }
}

// ---- get ----------------------------------------------------------------

bool ChannelCore::begin_get(ReadReservation& res, Timeout timeout) {
    const os::Deadline deadline = os::Deadline::after(timeout);
    if (!lock_side(&h_->rlock, deadline, zero(timeout))) return false;
    LockGuard g{&h_->rlock};
    finish_dead_reader();
    const std::size_t cap = h_->capacity;
    // Under rlock the reader state is the last committed one.
    const std::uint32_t c = h_->consumed.state();
    const std::uint64_t r = h_->rstate[c & 1].load(std::memory_order_relaxed);
    // The writers only ever add items: trust the cached view while it shows
    // some, and look at the real count only when it shows none. The writer
    // state read after the count covers every record it counts.
    const std::uint32_t cached_avail = (h_->cached_published.load(std::memory_order_acquire) - c) & kCountMask;
    std::uint64_t w = h_->cached_wstate.load(std::memory_order_relaxed);
    if (cached_avail == 0 || cached_avail > kCountMask / 2) {
        for (;;) {
            const std::uint32_t p = h_->published.state();
            if (p != c) {
                w = h_->wstate.load(std::memory_order_acquire);
                // The state before the count: a reader killed between the
                // two stores leaves a view whose state covers more records
                // than its count says, never fewer (the next one trusts it).
                h_->cached_wstate.store(w, std::memory_order_relaxed);
                os::fault_point("ring.get_looked");
                h_->cached_published.store(p, std::memory_order_release);
                break;
            }
            if (zero(timeout)) {
                // No wait to notice a hang-up in: look for one now.
                if (wait_ == Wait::socket && os::peer_closed(link_->fd()) && h_->published.state() == c)
                    throw EOFError("Connection: the other end is closed");
                return false;
            }
            if (!wait_for_data(c, &deadline)) return false;
        }
    }
    std::uint32_t pos = pos_of(r);
    std::size_t idx = pos & (cap - 1);
    RecordHeader hdr;
    std::memcpy(&hdr, data_ + idx, sizeof hdr);
    if (hdr.kind == kSkip) {
        pos += static_cast<std::uint32_t>(cap - idx);
        idx = 0;
        std::memcpy(&hdr, data_, sizeof hdr);
    }
    const std::uint32_t used = pos_of(w) - pos;
    const std::size_t rec = sizeof hdr + round8(hdr.len);
    if ((hdr.kind != kInline && hdr.kind != kSpilled) || rec > used || idx + rec > cap)
        throw Error("mproc internal: a queue's ring is corrupted (record kind " +
                    std::to_string(hdr.kind) + ", length " + std::to_string(hdr.len) + ")");

    res.core_ = this;
    res.next_state_ = make_state(count_of(r) + 1, pos + static_cast<std::uint32_t>(rec));
    if (hdr.kind == kInline) {
        res.bytes_ = {data_ + idx + sizeof hdr, hdr.len};
    } else {
        SpillTicket ticket;
        std::memcpy(&ticket, data_ + idx + sizeof hdr, sizeof ticket);
        // Its fd waits at the front of the spill socket, behind at most
        // fds orphaned by writers or readers that died mid-way: drop those.
        for (;;) {
            SpillTicket got{};
            auto p = os::recv_fd(spill_recv_->fd(), std::as_writable_bytes(std::span(&got, 1)),
                                 /*peek=*/true, os::Deadline::after(Duration(10)));
            if (!p || !p->fd) throw Error("mproc internal: a large queue item's fd is missing");
            if (got.dev == ticket.dev && got.ino == ticket.ino) {
                res.spill_ = Segment::adopt(p->fd.release(), {});
                res.spill_ino_ = ticket.ino;
                break;
            }
            os::recv_fd(spill_recv_->fd(), std::as_writable_bytes(std::span(&got, 1)), false,
                        os::Deadline::after(Duration(0)));
        }
        res.bytes_ = {res.spill_->data(), ticket.size};
    }
    g.m = nullptr;  // the reservation holds the reader lock now
    return true;
}

void ChannelCore::end_get(ReadReservation& res, bool commit) {
    LockGuard g{&h_->rlock};
    if (commit) {
        h_->rstate[count_of(res.next_state_) & 1].store(res.next_state_, std::memory_order_release);
        os::fault_point("ring.get_publish");
        try {
            publish(h_->consumed, false);  // the commit
        } catch (const EOFError&) {
            // A writer that died sleeping: nobody to wake.
        }
        if (res.spill_) {
            // Drop the consumed fd from the socket (a reader that dies right
            // here leaves it as an orphan for the next one to drop).
            SpillTicket got{};
            auto p = os::recv_fd(spill_recv_->fd(), std::as_writable_bytes(std::span(&got, 1)),
                                 /*peek=*/true, os::Deadline::after(Duration(0)));
            if (p && got.ino == res.spill_ino_)
                os::recv_fd(spill_recv_->fd(), std::as_writable_bytes(std::span(&got, 1)), false,
                            os::Deadline::after(Duration(0)));
        }
    }
    res.spill_.reset();
    res.core_ = nullptr;
}

bool ChannelCore::poll(Timeout timeout) {
    const os::Deadline deadline = os::Deadline::after(timeout);
    // A reader that died before its commit may make this say "ready" once
    // too often; begin_get then finishes that commit and finds nothing.
    auto ready = [&](std::uint32_t published) { return published != h_->consumed.state(); };
    if (ready(h_->published.state())) return true;
    if (wait_ == Wait::socket && os::peer_closed(link_->fd())) return true;
    if (zero(timeout)) return false;
    try {
        return spin_then_wait(h_->published, h_->data_woken_at, spin_->data_ns, pace(spin_->data_pace), *waker_,
                              link_ ? link_->fd() : -1, ready, deadline);
    } catch (const EOFError&) {
        return true;  // recv() will report it
    }
}

ReadReservation::ReadReservation(ReadReservation&& o) noexcept
    : core_(o.core_), bytes_(o.bytes_), next_state_(o.next_state_), spill_(std::move(o.spill_)),
      spill_ino_(o.spill_ino_) {
    o.core_ = nullptr;
}

ReadReservation::~ReadReservation() {
    if (core_) core_->end_get(*this, false);
}

void ReadReservation::commit() {
    if (core_) core_->end_get(*this, true);
}

// ---- JoinableQueue ------------------------------------------------------

void ChannelCore::task_done() {
    // Under done_lock the check and the count are one step: a task_done
    // killed before its commit did not happen, one killed after it did.
    if (!lock_side(&h_->done_lock, os::Deadline::never(), false))
        throw Error("mproc internal: JoinableQueue's task lock failed");
    LockGuard g{&h_->done_lock};
    const std::uint32_t d = h_->done.state();
    if (((h_->published.state() - d) & kCountMask) == 0)
        throw ValueError("task_done() called more times than there were items put");
    os::fault_point("join.publish");
    h_->done.add(1, kWakeAll, Publishers::exclusive);
    os::fault_point("join.published");
}

bool ChannelCore::join(Timeout timeout) {
    const os::Deadline deadline = os::Deadline::after(timeout);
    // Unfinished = published - done. An item whose writer died before its
    // commit is not counted (it is not in the queue), until a writer
    // publishes it.
    auto finished = [&](std::uint32_t done) { return done == h_->published.state(); };
    if (os::spin_until([&] { return finished(h_->done.state()); }, os::spin_budget_ns())) return true;
    return h_->done.wait(finished, deadline, Net::none, "ring.woken");
}

// ---- handles ------------------------------------------------------------

void ChannelCore::mproc_export(HandleWriter& w) const {
    w.segment(seg_, h_);
    w.descriptor(spill_send_);
    w.descriptor(spill_recv_);
    w.value(wait_ == Wait::socket ? 1 : 0);
}

ChannelCore ChannelCore::mproc_import(HandleReader& r, DescriptorPtr link) {
    ChannelCore c;
    auto [seg, p] = r.segment(kDataOffset);
    auto* h = reinterpret_cast<RingHeader*>(p);
    if (h->magic != kRingMagic) throw SerializationError("handle does not point at a queue or pipe");
    if (seg->size() < kDataOffset + h->capacity)
        throw SerializationError("queue handle's segment is smaller than its ring");
    c.seg_ = std::move(seg);
    c.spin_ = std::make_shared<SpinState>();
    c.h_ = h;
    c.data_ = p + kDataOffset;
    c.spill_send_ = r.descriptor();
    c.spill_recv_ = r.descriptor();
    c.wait_ = r.value() ? Wait::socket : Wait::futex;
    c.waker_ = c.wait_ == Wait::socket ? &RingWaker::socket() : &RingWaker::futex();
    c.link_ = std::move(link);
    if (c.wait_ == Wait::socket && !c.link_) throw SerializationError("pipe handle lacks its socket");
    return c;
}

}  // namespace mproc::detail
