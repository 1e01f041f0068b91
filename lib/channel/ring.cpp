// The byte ring under Queue and Connection. See include/mproc/detail/channel.hpp.
#include "mproc/detail/channel.hpp"

#include <algorithm>
#include <climits>
#include <cstring>
#include <new>
#include <string>

#include <sys/stat.h>

#include "mproc/errors.hpp"
#include "os/os.hpp"
#include "os/socket.hpp"

namespace mproc::detail {

namespace {

constexpr std::uint32_t kRingMagic = 0x4d505249;  // "MPRI"
constexpr std::uint32_t kInline = 1, kSpilled = 2, kSkip = 3;
constexpr std::size_t kDataOffset = 4096;
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

// A side's committed state: item count (high half) and byte position (low
// half), both modulo 2^32, stored together so one store commits both.
constexpr std::uint64_t make_state(std::uint32_t count, std::uint32_t pos) {
    return (std::uint64_t{count} << 32) | pos;
}
constexpr std::uint32_t pos_of(std::uint64_t s) { return static_cast<std::uint32_t>(s); }
constexpr std::uint32_t count_of(std::uint64_t s) { return static_cast<std::uint32_t>(s >> 32); }
constexpr std::size_t round8(std::size_t n) { return (n + 7) & ~std::size_t{7}; }

const os::Deadline& dl(const void* p) { return *static_cast<const os::Deadline*>(p); }

struct LockGuard {
    pthread_mutex_t* m;
    ~LockGuard() {
        if (m) os::robust_mutex_unlock(m);
    }
};

// Locks a side. A previous holder that died left the committed state
// consistent (it is one word), so owner death needs no repair here.
bool lock_side(pthread_mutex_t* m, const os::Deadline& deadline, bool zero_timeout) {
    os::LockStatus s = zero_timeout ? os::robust_mutex_trylock(m) : os::robust_mutex_lock(m, deadline);
    return s == os::LockStatus::acquired || s == os::LockStatus::owner_died;
}

bool zero(const Timeout& t) { return t && t->count() <= 0; }

}  // namespace

ChannelCore::SpinState::SpinState() noexcept
    : data_ns(static_cast<std::uint32_t>(os::spin_budget_ns())),
      space_ns(static_cast<std::uint32_t>(os::spin_budget_ns())) {}

struct RingHeader {
    std::uint32_t magic;
    std::uint32_t joinable;
    std::uint64_t capacity;
    std::uint64_t maxsize;

    // Each group on cache lines of its own: the writer side touches the
    // reader side's lines only when it must (see the cached states).
    alignas(64) pthread_mutex_t wlock;
    std::atomic<std::uint64_t> cached_rstate{0};  // writer's last look at rstate (under wlock)
    alignas(64) std::atomic<std::uint64_t> wstate{0};
    alignas(64) std::atomic<std::uint32_t> space_seq{0};
    std::atomic<std::uint32_t> writers_waiting{0};  // a flag: see sleep_on()
    std::atomic<std::uint64_t> space_woken_at{0};   // when a waker last woke it

    alignas(64) pthread_mutex_t rlock;
    std::atomic<std::uint64_t> cached_wstate{0};  // reader's last look at wstate (under rlock)
    alignas(64) std::atomic<std::uint64_t> rstate{0};
    alignas(64) std::atomic<std::uint32_t> data_seq{0};
    std::atomic<std::uint32_t> readers_waiting{0};  // a flag: see sleep_on()
    std::atomic<std::uint64_t> data_woken_at{0};    // when a waker last woke it

    alignas(64) std::atomic<std::uint32_t> unfinished{0};
    std::atomic<std::uint32_t> join_waiters{0};
};
static_assert(sizeof(RingHeader) <= kDataOffset);

// ---- construction -------------------------------------------------------

ChannelCore::ChannelCore(std::size_t capacity, std::size_t maxsize, Wait wait, DescriptorPtr link,
                         bool joinable)
    : link_(std::move(link)), wait_(wait) {
    if (capacity < kMinCapacity) capacity = kMinCapacity;
    if (capacity > kMaxCapacity)
        throw ValueError("queue capacity " + std::to_string(capacity) + " is over the 1 GiB limit");
    std::size_t cap = kMinCapacity;
    while (cap < capacity) cap <<= 1;
    if (maxsize > UINT32_MAX / 2) maxsize = UINT32_MAX / 2;

    seg_ = Segment::anonymous(kDataOffset + cap, "mproc-ring");
    spin_ = std::make_shared<SpinState>();
    h_ = new (seg_->data()) RingHeader();
    h_->capacity = cap;
    h_->maxsize = maxsize;
    h_->joinable = joinable ? 1 : 0;
    os::robust_mutex_init(&h_->wlock, false);
    os::robust_mutex_init(&h_->rlock, false);
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
    std::uint64_t r = h_->rstate.load();
    std::uint64_t w = h_->wstate.load();
    return static_cast<std::uint32_t>(count_of(w) - count_of(r));
}

// ---- waiting ------------------------------------------------------------

// Only the holder of a side's lock ever sleeps on that side's word (others
// wait for the lock), so "someone sleeps" is a flag, and the waker clears
// it as it wakes: one wake-up per sleep. (A counter the sleeper clears
// itself would make every put issue a futex_wake until the woken reader
// got a CPU — thousands of syscalls on a busy machine.)
namespace {
//
// The spin adapts per channel end (in this process): a spin that caught the
// change doubles the next budget (up to spin_budget_ns()), one that ended in
// sleep drops it to zero until a sleep shows the change came soon enough. Ping-pong keeps spinning (0.4 us round trips); an idle
// pool worker on a 2-core machine stops stealing the CPU its busy peers need
// (measured: a pool's serial submit->result took 38 us without spinning,
// 68 us with a fixed 20 us spin, 114 us with 200 us).
template <class Changed>
bool sleep_on(std::atomic<std::uint32_t>& flag, const std::atomic<std::uint32_t>& seq,
              const std::atomic<std::uint64_t>& woken_at, const Changed& changed,
              ChannelCore::Wait wait, int link, const os::Deadline& deadline, const char* gone,
              std::atomic<std::uint32_t>& spin_ns) {
    if (changed()) return true;
    const std::uint64_t max_ns = os::spin_budget_ns();
    const std::uint64_t start = os::monotonic_ns();
    const std::uint32_t budget = spin_ns.load(std::memory_order_relaxed);
    auto grow = [&] {
        spin_ns.store(static_cast<std::uint32_t>(std::min<std::uint64_t>(max_ns, budget * 2ull + 1000)),
                      std::memory_order_relaxed);
    };
    if (os::spin_until(changed, budget)) {
        grow();
        return true;
    }
    spin_ns.store(0, std::memory_order_relaxed);  // it did not pay: stop until it would
    // After a sleep: if the change came within the full budget, spinning
    // would have caught it, so spin more next time. When it came is the
    // waker's stamp (CLOCK_MONOTONIC is one clock for every process), not
    // when this process got a CPU again: that includes the wake-up itself.
    auto woke = [&](bool ok) {
        const std::uint64_t at = woken_at.load(std::memory_order_relaxed);
        if (ok && at >= start && at - start < max_ns) grow();
        return ok;
    };
    const std::uint32_t s = seq.load();
    flag.store(1);  // seq_cst: the waker's state store and this are ordered
    if (changed()) {
        flag.store(0);
        return woke(true);
    }
    if (wait == ChannelCore::Wait::futex) {
        bool ok = os::futex_wait(&seq, s, deadline);
        flag.store(0);
        return woke(ok || changed());
    }
    os::Readiness r = os::wait_and_drain(link, deadline);
    flag.store(0);
    if (changed()) return woke(true);
    if (r == os::Readiness::hangup) throw EOFError(gone);
    return woke(r == os::Readiness::ready);
}

void wake_sleeper(std::atomic<std::uint32_t>& flag, std::atomic<std::uint32_t>& seq,
                  std::atomic<std::uint64_t>& woken_at, ChannelCore::Wait wait, int link) {
    if (flag.load() == 0 || flag.exchange(0) == 0) return;
    woken_at.store(os::monotonic_ns(), std::memory_order_relaxed);
    if (wait == ChannelCore::Wait::futex) {
        seq.fetch_add(1);
        os::futex_wake(&seq, INT_MAX);
    } else if (!os::send_wake(link)) {
        throw EOFError("Connection: the other end is closed");
    }
}
}  // namespace

bool ChannelCore::wait_for_data(std::uint64_t seen, const void* deadline) {
    return sleep_on(h_->readers_waiting, h_->data_seq, h_->data_woken_at,
                    [&] { return h_->wstate.load() != seen; },
                    wait_, link_ ? link_->fd() : -1, dl(deadline), "Connection: the other end is closed",
                    spin_->data_ns);
}

bool ChannelCore::wait_for_space(std::uint64_t seen, const void* deadline) {
    return sleep_on(h_->writers_waiting, h_->space_seq, h_->space_woken_at,
                    [&] { return h_->rstate.load() != seen; },
                    wait_, link_ ? link_->fd() : -1, dl(deadline), "Connection: the other end is closed",
                    spin_->space_ns);
}

void ChannelCore::wake_readers() {
    wake_sleeper(h_->readers_waiting, h_->data_seq, h_->data_woken_at, wait_, link_ ? link_->fd() : -1);
}

void ChannelCore::wake_writers() noexcept {
    try {
        wake_sleeper(h_->writers_waiting, h_->space_seq, h_->space_woken_at, wait_,
                     link_ ? link_->fd() : -1);
    } catch (const EOFError&) {
        // A writer that died sleeping: nobody to wake.
    }
}

void ChannelCore::arm_reader() noexcept { h_->readers_waiting.store(1); }
void ChannelCore::disarm_reader() noexcept { h_->readers_waiting.store(0); }

// ---- put ----------------------------------------------------------------

bool ChannelCore::put(std::span<const std::byte> item, Timeout timeout) {
    // A Connection's peer that died while not receiving is noticed when the
    // ring fills, when a wake-up bounces, or here, once every 256 sends:
    // often enough that a writer learns soon, rarely enough to cost nothing.
    if (wait_ == Wait::socket && (++puts_ & 255) == 0 && os::peer_closed(link_->fd()))
        throw EOFError("Connection: the other end is closed");
    const os::Deadline deadline = os::Deadline::after(timeout);
    if (sizeof(RecordHeader) + round8(item.size()) > h_->capacity / 4)
        return put_spilled(item, &deadline);
    return write_record(kInline, item, &deadline, zero(timeout), -1);
}

ChannelCore::InPlace ChannelCore::put_in_place(Encoder encode, const void* item, Timeout timeout) {
    if (wait_ == Wait::socket && (++puts_ & 255) == 0 && os::peer_closed(link_->fd()))
        throw EOFError("Connection: the other end is closed");
    const os::Deadline deadline = os::Deadline::after(timeout);
    if (!lock_side(&h_->wlock, deadline, zero(timeout))) return InPlace::timed_out;
    LockGuard g{&h_->wlock};
    const std::size_t cap = h_->capacity;
    const std::uint64_t w = h_->wstate.load(std::memory_order_relaxed);
    const std::uint64_t r = h_->rstate.load(std::memory_order_acquire);
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
    if (h_->joinable) h_->unfinished.fetch_add(1);
    h_->wstate.store(make_state(count_of(w) + 1,
                                pos_of(w) + static_cast<std::uint32_t>(sizeof hdr + round8(n))));
    g.m = nullptr;
    os::robust_mutex_unlock(&h_->wlock);
    wake_readers();
    return InPlace::done;
}

bool ChannelCore::put_spilled(std::span<const std::byte> item, const void* deadline) {
    // The item's own memfd, filled before any lock is taken.
    os::Fd fd = os::memfd("mproc-item", item.size());
    void* p = os::map_shared(fd.get(), item.size(), "mproc-item");
    std::memcpy(p, item.data(), item.size());
    os::unmap(p, item.size());
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) os::throw_errno("fstat", "mproc-item");
    SpillTicket ticket{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino),
                       item.size()};
    return write_record(kSpilled, std::as_bytes(std::span(&ticket, 1)), deadline, false, fd.get());
}

bool ChannelCore::write_record(std::uint32_t kind, std::span<const std::byte> payload,
                               const void* deadline_p, bool zero_timeout, int spill_fd) {
    const os::Deadline& deadline = dl(deadline_p);
    if (!lock_side(&h_->wlock, deadline, zero_timeout)) return false;
    LockGuard g{&h_->wlock};
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
            r = h_->rstate.load(std::memory_order_acquire);
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
            if (h_->joinable) h_->unfinished.fetch_add(1);
            // The commit: one store publishes the record and its count.
            h_->wstate.store(make_state(count_of(w) + 1,
                                        pos_of(w) + static_cast<std::uint32_t>(skip + rec)));
            break;
        }
        if (zero_timeout || !wait_for_space(r, deadline_p)) return false;
    }
    g.m = nullptr;
    os::robust_mutex_unlock(&h_->wlock);
    wake_readers();
    return true;
}

// ---- get ----------------------------------------------------------------

bool ChannelCore::begin_get(ReadReservation& res, Timeout timeout) {
    const os::Deadline deadline = os::Deadline::after(timeout);
    if (!lock_side(&h_->rlock, deadline, zero(timeout))) return false;
    LockGuard g{&h_->rlock};
    const std::size_t cap = h_->capacity;
    std::uint64_t r, w;
    for (;;) {
        r = h_->rstate.load(std::memory_order_relaxed);
        // The writer only ever adds items: trust the cached view while it
        // shows some, and look at the real state only when it shows none.
        w = h_->cached_wstate.load(std::memory_order_acquire);
        if (pos_of(r) != pos_of(w)) break;
        w = h_->wstate.load(std::memory_order_acquire);
        h_->cached_wstate.store(w, std::memory_order_relaxed);
        if (pos_of(r) != pos_of(w)) break;
        if (zero(timeout)) {
            // No wait to notice a hang-up in: look for one now.
            if (wait_ == Wait::socket && os::peer_closed(link_->fd()) && h_->wstate.load() == w)
                throw EOFError("Connection: the other end is closed");
            return false;
        }
        if (!wait_for_data(w, &deadline)) return false;
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
    if (commit) {
        h_->rstate.store(res.next_state_);
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
    os::robust_mutex_unlock(&h_->rlock);
    if (commit) wake_writers();
}

bool ChannelCore::poll(Timeout timeout) {
    const os::Deadline deadline = os::Deadline::after(timeout);
    for (;;) {
        std::uint64_t w = h_->wstate.load();
        if (pos_of(h_->rstate.load()) != pos_of(w)) return true;
        if (wait_ == Wait::socket && os::peer_closed(link_->fd())) return true;
        if (zero(timeout)) return false;
        try {
            if (!wait_for_data(w, &deadline)) return false;
        } catch (const EOFError&) {
            return true;  // recv() will report it
        }
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
    std::uint32_t v = h_->unfinished.load();
    do {
        if (v == 0) throw ValueError("task_done() called more times than there were items put");
    } while (!h_->unfinished.compare_exchange_weak(v, v - 1));
    if (v == 1 && h_->join_waiters.load() > 0) os::futex_wake(&h_->unfinished, INT_MAX);
}

bool ChannelCore::join(Timeout timeout) {
    const os::Deadline deadline = os::Deadline::after(timeout);
    if (os::spin_until([&] { return h_->unfinished.load() == 0; }, os::spin_budget_ns())) return true;
    h_->join_waiters.fetch_add(1);
    bool ok = true;
    for (;;) {
        std::uint32_t v = h_->unfinished.load();
        if (v == 0) break;
        if (!os::futex_wait(&h_->unfinished, v, deadline)) {
            ok = h_->unfinished.load() == 0;
            break;
        }
    }
    h_->join_waiters.fetch_sub(1);
    return ok;
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
    c.link_ = std::move(link);
    if (c.wait_ == Wait::socket && !c.link_) throw SerializationError("pipe handle lacks its socket");
    return c;
}

}  // namespace mproc::detail
