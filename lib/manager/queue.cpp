// Manager queues (Queue and JoinableQueue).
//
// QueueState::ring is [state][slot ...] with a power-of-two number of
// slots; state = tail << 32 | head, both counting items ever put and taken
// (mod 2^32), so item i lives in slot i mod capacity. A put writes the slot
// past the tail, then stores the state; a get reads the head slot, stores
// the state, then frees the entry: each is one publishing store, so a
// killed producer never publishes a torn item and a killed consumer leaves
// its item for the next one. Unfinished tasks are tail - done, where `done`
// counts task_done() calls: each operation changes one word, so a kill
// never leaves the count wrong. A full ring is copied into a bigger one
// aside and switched in by one store.
//
// Waits: every change moves the object's wait word (waiter.hpp) and wakes
// its waiters, who look again under the lock; no timeout slices.
#include <algorithm>
#include <string>

#include "manager/ops_impl.hpp"
#include "mproc/errors.hpp"

namespace mproc::detail::mgr {

namespace {

struct Ring {
    std::uint64_t* words = nullptr;
    std::uint64_t cap = 0;  // a power of two, or 0 for no ring
    std::uint64_t state() const noexcept { return words ? load(words[0]) : 0; }
    std::uint64_t* slot(std::uint32_t i) const noexcept { return words + 1 + (i & (cap - 1)); }
};

std::uint32_t tail_of(std::uint64_t state) noexcept { return static_cast<std::uint32_t>(state >> 32); }
std::uint32_t head_of(std::uint64_t state) noexcept { return static_cast<std::uint32_t>(state); }
std::uint64_t length(std::uint64_t state) noexcept {
    return static_cast<std::uint32_t>(tail_of(state) - head_of(state));
}
std::uint64_t make_state(std::uint32_t tail, std::uint32_t head) noexcept {
    return std::uint64_t{tail} << 32 | head;
}

Ring ring_of(const Heap& heap, std::uint64_t off) noexcept {
    if (off == 0) return {};
    const std::uint64_t slots = heap.payload_capacity(off) / sizeof(std::uint64_t) - 1;
    return {heap.at<std::uint64_t>(off), std::bit_floor(slots)};
}

/// The queue's ring with room for one more item.
Ring room(const Target& t) {
    QueueState& q = t.state<QueueState>();
    const Ring r = ring_of(t.heap, load(q.ring));
    const std::uint64_t st = r.state(), len = length(st);
    if (len < r.cap) return r;
    if (len >= (std::uint64_t{1} << 31)) throw Error("mproc::Manager: a queue holds at most 2^31 items");
    const std::uint64_t off = t.heap.alloc((std::max<std::uint64_t>(r.cap * 2, 8) + 1) * sizeof(std::uint64_t));
    const Ring n = ring_of(t.heap, off);
    for (std::uint32_t i = head_of(st); i != tail_of(st); ++i) *n.slot(i) = load(*r.slot(i));
    n.words[0] = st;
    const std::uint64_t old = load(q.ring);
    os::fault_point("queue.grow.unpublished");
    store(q.ring, off);  // the same items, in a bigger ring
    t.heap.free(old);
    return n;
}

/// Waits (without the lock) until the object changes past `seen`; false
/// once the deadline has passed.
bool wait_change(const Target& t, std::uint32_t seen, const os::Deadline& deadline) {
    return wait(t.obj->change, seen, deadline);
}

}  // namespace

std::uint64_t impl::queue_size(const Target& t) {
    Locked g(t);
    return length(ring_of(t.heap, load(t.state<QueueState>().ring)).state());
}

std::uint64_t impl::queue_maxsize(const Target& t) { return load(t.state<QueueState>().maxsize); }

bool impl::queue_put(const Target& t, Bytes item, Timeout timeout) {
    const os::Deadline deadline = os::Deadline::after(timeout);
    BlockGuard e(t.heap, t.heap.make_entry(0, {}, item));
    QueueState& q = t.state<QueueState>();
    for (;;) {
        std::uint32_t seen;
        {
            Locked g(t);
            const std::uint64_t maxsize = load(q.maxsize);
            if (maxsize == 0 || length(ring_of(t.heap, load(q.ring)).state()) < maxsize) {
                const Ring r = room(t);
                const std::uint64_t st = r.state();
                store(*r.slot(tail_of(st)), e.release());
                os::fault_point("queue.put.unpublished");
                store(r.words[0], make_state(tail_of(st) + 1, head_of(st)));  // publishes it
                wake_all(t.obj->change);
                return true;
            }
            seen = wait_token(t);
        }
        if (!wait_change(t, seen, deadline)) return false;
    }
}

bool impl::queue_get(const Target& t, Sink item, Timeout timeout) {
    const os::Deadline deadline = os::Deadline::after(timeout);
    QueueState& q = t.state<QueueState>();
    for (;;) {
        std::uint32_t seen;
        {
            Locked g(t);
            const Ring r = ring_of(t.heap, load(q.ring));
            const std::uint64_t st = r.state();
            if (length(st) > 0) {
                const std::uint64_t e = load(*r.slot(head_of(st)));
                item(t.heap.entry_value(e));  // if this throws, the item stays
                os::fault_point("queue.get.unpublished");
                store(r.words[0], make_state(tail_of(st), head_of(st) + 1));  // takes it
                os::fault_point("queue.get.published");
                t.heap.free(e);
                wake_all(t.obj->change);
                return true;
            }
            seen = wait_token(t);
        }
        if (!wait_change(t, seen, deadline)) return false;
    }
}

void impl::queue_task_done(const Target& t) {
    Locked g(t);
    QueueState& q = t.state<QueueState>();
    const std::uint32_t tail = tail_of(ring_of(t.heap, load(q.ring)).state());
    const auto done = static_cast<std::uint32_t>(load(q.done));
    if (tail == done) throw ValueError("mproc Queue: task_done() called more times than there were items");
    store(q.done, static_cast<std::uint32_t>(done + 1));
    wake_all(t.obj->change);
}

bool impl::queue_join(const Target& t, Timeout timeout) {
    const os::Deadline deadline = os::Deadline::after(timeout);
    QueueState& q = t.state<QueueState>();
    for (;;) {
        std::uint32_t seen;
        {
            Locked g(t);
            if (tail_of(ring_of(t.heap, load(q.ring)).state()) == static_cast<std::uint32_t>(load(q.done)))
                return true;
            seen = wait_token(t);
        }
        if (!wait_change(t, seen, deadline)) return false;
    }
}

}  // namespace mproc::detail::mgr
