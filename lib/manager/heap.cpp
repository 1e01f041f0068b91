// The manager's shared heap and the containers in it. See
// include/mproc/detail/manager_core.hpp for the crash-safety argument.
//
// Heap: one memfd of `max_bytes`, mapped whole by every process (sparse:
// only what is used costs memory) and backed with fallocate ahead of use,
// so growth needs no remapping and running out is an ENOSPC we report, not
// a SIGBUS. Blocks come in power-of-two classes; each class has a lock-free
// free list (a Treiber stack whose head carries a 24-bit ABA tag), and new
// blocks come from a bump pointer advanced by compare-and-swap. Every
// allocator step is one CAS, so a process killed inside the allocator loses
// at most the block it was taking or giving back.
//
// Layout of the objects (all offsets from the heap's start; 0 is "none"):
//   object  ObjectHeader: robust mutex, `table`, `count`, `tombs`
//   dict    table = slots | log2(capacity) << 56; slot = entry | hash tag
//           << 48, or 0 (empty) / 1 (deleted); open addressing, linear
//           probing, load <= 3/4 counting deleted slots
//   list    table = array: [length][slot ...], capacity from its block size
//   value   table = entry
//   entry   [hash][key length][value length][key bytes][value bytes]
#include <algorithm>
#include <cerrno>
#include <atomic>
#include <bit>
#include <cstring>
#include <string>

#include "manager/remote.hpp"
#include "mproc/detail/manager_core.hpp"
#include "mproc/errors.hpp"
#include "os/os.hpp"

namespace mproc::detail {

namespace {

constexpr std::uint64_t kHeapMagic = 0x50414548434f524dull;   // "MROCHEAP"
constexpr std::uint32_t kBlockMagic = 0x4b4c424du;            // "MBLK"
constexpr std::uint32_t kObjectMagic = 0x4a424f4du;           // "MOBJ"
constexpr unsigned kMinClass = 4;                              // 16-byte blocks
constexpr unsigned kClasses = 48;
constexpr std::uint64_t kHeapStart = 1024;                     // after the header
constexpr std::uint64_t kGrowMin = std::uint64_t{4} << 20;
constexpr std::uint64_t kOffBits = 40;                         // free-list head: offset/16
constexpr std::uint64_t kOffMask = (std::uint64_t{1} << kOffBits) - 1;
constexpr std::uint64_t kSlotOffMask = (std::uint64_t{1} << 48) - 1;
constexpr std::uint64_t kEmpty = 0;
constexpr std::uint64_t kDeleted = 1;
constexpr std::uint64_t kRegistryTag = 0x7265676973747279ull;  // "registry"

struct HeapHeader {
    std::uint64_t magic;
    std::uint64_t reserve;
    std::atomic<std::uint64_t> committed;
    std::atomic<std::uint64_t> bump;
    std::atomic<std::uint64_t> used;
    std::atomic<std::uint32_t> shut;
    std::uint32_t pad;
    std::uint64_t root;  // the registry of published names, a dict
    std::atomic<std::uint64_t> free_head[kClasses];
};
static_assert(sizeof(HeapHeader) <= kHeapStart);

struct BlockHeader {
    std::uint32_t magic;
    std::uint32_t cls;
};

struct ObjectHeader {
    std::uint32_t magic;
    ObjectKind kind;
    std::uint64_t type_tag;
    pthread_mutex_t mu;
    std::atomic<std::uint64_t> table;
    std::atomic<std::uint64_t> count;   // dict: live keys; queue: unfinished tasks
    std::atomic<std::uint64_t> tombs;   // dict: deleted slots; queue: maxsize (0: none)
    std::atomic<std::uint32_t> seq;     // queue: bumped by every change (a futex)
    std::atomic<std::uint32_t> waiters; // queue: processes sleeping on seq
};

struct EntryHeader {
    std::uint64_t hash;
    std::uint32_t klen;
    std::uint32_t vlen;
};

std::uint64_t load(const std::uint64_t& w) {
    return std::atomic_ref<const std::uint64_t>(w).load(std::memory_order_relaxed);
}
void store(std::uint64_t& w, std::uint64_t v) {
    std::atomic_ref<std::uint64_t>(w).store(v, std::memory_order_release);
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

std::string mib(std::uint64_t bytes) { return std::to_string((bytes + (1 << 20) - 1) >> 20) + " MiB"; }

/// The heap as seen through this process's mapping.
class Heap {
public:
    explicit Heap(const Segment& seg)
        : base_(seg.data()), h_(reinterpret_cast<HeapHeader*>(seg.data())), fd_(seg.fd()) {}

    HeapHeader& header() const noexcept { return *h_; }
    template <class T = std::byte>
    T* at(std::uint64_t off) const noexcept {
        return reinterpret_cast<T*>(base_ + off);
    }

    static unsigned class_of(std::uint64_t block_bytes) noexcept {
        return std::max<unsigned>(kMinClass, static_cast<unsigned>(std::bit_width(block_bytes - 1)));
    }
    /// Payload bytes of the block whose payload is at `off`.
    std::uint64_t payload_capacity(std::uint64_t off) const noexcept {
        return (std::uint64_t{1} << at<BlockHeader>(off - sizeof(BlockHeader))->cls) - sizeof(BlockHeader);
    }

    /// A block with room for `payload` bytes; returns the payload's offset.
    std::uint64_t alloc(std::uint64_t payload) const {
        if (payload > h_->reserve) out_of_memory(payload);
        const unsigned k = class_of(payload + sizeof(BlockHeader));
        if (k >= kClasses) out_of_memory(payload);
        std::atomic<std::uint64_t>& head = h_->free_head[k];
        std::uint64_t cur = head.load(std::memory_order_acquire);
        std::uint64_t block = 0;
        while ((cur & kOffMask) != 0) {
            const std::uint64_t b = (cur & kOffMask) << 4;
            // The block may be taken and reused meanwhile: then this read
            // is garbage and the tag makes the CAS fail.
            const std::uint64_t next = std::atomic_ref<std::uint64_t>(*at<std::uint64_t>(b + sizeof(BlockHeader)))
                                           .load(std::memory_order_relaxed);
            const std::uint64_t tagged = (((cur >> kOffBits) + 1) << kOffBits) | (next & kOffMask);
            if (head.compare_exchange_weak(cur, tagged, std::memory_order_acquire, std::memory_order_acquire)) {
                block = b;
                break;
            }
        }
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
        h_->used.fetch_add(size, std::memory_order_relaxed);
        return block + sizeof(BlockHeader);
    }

    void free(std::uint64_t payload_off) const noexcept {
        if (payload_off == 0) return;
        const std::uint64_t block = payload_off - sizeof(BlockHeader);
        auto* bh = at<BlockHeader>(block);
        if (bh->magic != kBlockMagic || bh->cls < kMinClass || bh->cls >= kClasses) return;  // never seen; leak
        const unsigned k = bh->cls;
        std::atomic<std::uint64_t>& head = h_->free_head[k];
        std::atomic_ref<std::uint64_t> next(*at<std::uint64_t>(payload_off));
        std::uint64_t cur = head.load(std::memory_order_relaxed);
        std::uint64_t tagged;
        do {
            next.store(cur & kOffMask, std::memory_order_relaxed);
            tagged = (((cur >> kOffBits) + 1) << kOffBits) | (block >> 4);
        } while (!head.compare_exchange_weak(cur, tagged, std::memory_order_release, std::memory_order_relaxed));
        h_->used.fetch_sub(std::uint64_t{1} << k, std::memory_order_relaxed);
    }

    /// Backs [0, end) with memory.
    void ensure_committed(std::uint64_t end) const {
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
            throw Error("mproc::Manager is out of memory: its shared heap could not grow from " + mib(c) +
                        " to " + mib(target) + " (fallocate: " + std::strerror(err) +
                        "). Free entries, or give the machine more memory.");
        while (c < target && !h_->committed.compare_exchange_weak(c, target, std::memory_order_release)) {
        }
    }

    [[noreturn]] void out_of_memory(std::uint64_t payload) const {
        throw Error("mproc::Manager is out of memory: a block of " + std::to_string(payload) +
                    " bytes does not fit in its heap of " + mib(h_->reserve) + " (" +
                    mib(h_->used.load()) + " in use). Create the Manager with a larger "
                    "ManagerOptions::max_bytes.");
    }

    /// A new entry holding key and value; returns its offset.
    std::uint64_t make_entry(std::uint64_t hash, Bytes key, Bytes value) const {
        if (key.size() > UINT32_MAX || value.size() > UINT32_MAX)
            throw ValueError("mproc::Manager: a key or value of " +
                             std::to_string(std::max(key.size(), value.size())) +
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
    Bytes entry_key(std::uint64_t off) const noexcept {
        auto* e = at<EntryHeader>(off);
        return Bytes(at(off + sizeof(EntryHeader)), e->klen);
    }
    Bytes entry_value(std::uint64_t off) const noexcept {
        auto* e = at<EntryHeader>(off);
        return Bytes(at(off + sizeof(EntryHeader) + e->klen), e->vlen);
    }

private:
    std::byte* base_;
    HeapHeader* h_;
    int fd_;
};

/// Frees an entry made outside the lock if the operation does not publish it.
struct EntryGuard {
    const Heap& heap;
    std::uint64_t off;
    ~EntryGuard() { heap.free(off); }
    std::uint64_t release() noexcept { return std::exchange(off, 0); }
};

// ---- dict table -----------------------------------------------------------

struct Table {
    std::uint64_t* slots = nullptr;
    std::uint64_t cap = 0;  // 0: no table yet
};

Table table_of(const Heap& heap, std::uint64_t word) {
    if (word == 0) return {};
    return {heap.at<std::uint64_t>(word & kSlotOffMask), std::uint64_t{1} << (word >> 56)};
}

struct Probe {
    std::uint64_t index;   // the key's slot if found, else where to insert
    bool found;
};

Probe probe(const Heap& heap, const Table& t, std::uint64_t hash, Bytes key) {
    const std::uint64_t mask = t.cap - 1;
    const std::uint64_t tag = hash >> 48;
    std::uint64_t insert_at = UINT64_MAX;
    for (std::uint64_t i = hash & mask, n = 0; n < t.cap; i = (i + 1) & mask, ++n) {
        const std::uint64_t s = load(t.slots[i]);
        if (s == kEmpty) return {insert_at != UINT64_MAX ? insert_at : i, false};
        if (s == kDeleted) {
            if (insert_at == UINT64_MAX) insert_at = i;
            continue;
        }
        if ((s >> 48) != tag) continue;
        const std::uint64_t e = s & kSlotOffMask;
        const auto* eh = heap.at<EntryHeader>(e);
        if (eh->hash == hash && eh->klen == key.size() &&
            std::memcmp(heap.at(e + sizeof(EntryHeader)), key.data(), key.size()) == 0)
            return {i, true};
    }
    return {insert_at, false};
}

/// Recomputes the counters from the table (after a holder died).
void recount(const Heap& heap, ObjectHeader* o) {
    const Table t = table_of(heap, o->table.load(std::memory_order_acquire));
    std::uint64_t live = 0, dead = 0;
    for (std::uint64_t i = 0; i < t.cap; ++i) {
        const std::uint64_t s = load(t.slots[i]);
        live += s > kDeleted;
        dead += s == kDeleted;
    }
    o->count.store(live, std::memory_order_relaxed);
    o->tombs.store(dead, std::memory_order_relaxed);
}

/// Makes room for one more key: a new table (at least twice the live
/// entries) when live plus deleted slots would pass 3/4.
Table reserve_one(const Heap& heap, ObjectHeader* o) {
    Table t = table_of(heap, o->table.load(std::memory_order_relaxed));
    const std::uint64_t count = o->count.load(std::memory_order_relaxed);
    const std::uint64_t tombs = o->tombs.load(std::memory_order_relaxed);
    if ((count + tombs + 1) * 4 <= t.cap * 3) return t;
    std::uint64_t cap = 8;
    while (cap < (count + 1) * 2) cap *= 2;
    const std::uint64_t off = heap.alloc(cap * sizeof(std::uint64_t));
    auto* slots = heap.at<std::uint64_t>(off);
    std::memset(slots, 0, cap * sizeof(std::uint64_t));
    for (std::uint64_t i = 0; i < t.cap; ++i) {
        const std::uint64_t s = load(t.slots[i]);
        if (s <= kDeleted) continue;
        const std::uint64_t hash = heap.at<EntryHeader>(s & kSlotOffMask)->hash;
        std::uint64_t j = hash & (cap - 1);
        while (slots[j] != kEmpty) j = (j + 1) & (cap - 1);
        slots[j] = s;
    }
    // Publish: one store switches every reader to the complete new table.
    const std::uint64_t old = o->table.load(std::memory_order_relaxed) & kSlotOffMask;
    o->table.store(off | (static_cast<std::uint64_t>(std::countr_zero(cap)) << 56), std::memory_order_release);
    o->tombs.store(0, std::memory_order_relaxed);
    heap.free(old);
    return {slots, cap};
}

/// Puts entry `e` (not yet in the table) at probe result `p`'s slot.
void publish_new(ObjectHeader* o, const Table& t, std::uint64_t index, std::uint64_t e, std::uint64_t hash) {
    const bool reused = load(t.slots[index]) == kDeleted;
    store(t.slots[index], e | (hash >> 48 << 48));
    o->count.fetch_add(1, std::memory_order_relaxed);
    if (reused) o->tombs.fetch_sub(1, std::memory_order_relaxed);
}

// ---- list array -------------------------------------------------------------

struct Array {
    std::uint64_t* words = nullptr;  // [0] = length, then slots
    std::uint64_t cap = 0;
    std::uint64_t size() const { return words ? load(words[0]) : 0; }
    std::uint64_t* slots() const { return words + 1; }
};

Array array_of(const Heap& heap, std::uint64_t off) {
    if (off == 0) return {};
    return {heap.at<std::uint64_t>(off), heap.payload_capacity(off) / sizeof(std::uint64_t) - 1};
}

/// A new array holding `n` slots copied by `fill(slots)`; published.
template <class Fill>
Array replace_array(const Heap& heap, ObjectHeader* o, std::uint64_t min_cap, std::uint64_t n, Fill fill) {
    const std::uint64_t off = heap.alloc((std::max<std::uint64_t>(min_cap, 4) + 1) * sizeof(std::uint64_t));
    Array a = array_of(heap, off);
    fill(a.slots());
    a.words[0] = n;
    const std::uint64_t old = o->table.load(std::memory_order_relaxed);
    o->table.store(off, std::memory_order_release);
    heap.free(old);
    return a;
}

/// The array with room for `more` appended slots.
Array room_for(const Heap& heap, ObjectHeader* o, std::uint64_t more) {
    Array a = array_of(heap, o->table.load(std::memory_order_relaxed));
    const std::uint64_t n = a.size();
    if (n + more <= a.cap) return a;
    return replace_array(heap, o, std::max(a.cap * 2, n + more), n,
                         [&](std::uint64_t* s) { if (n) std::memcpy(s, a.slots(), n * sizeof(std::uint64_t)); });
}

std::uint64_t py_index(std::int64_t index, std::uint64_t size, const char* what) {
    const std::int64_t n = static_cast<std::int64_t>(size);
    const std::int64_t i = index < 0 ? index + n : index;
    if (i < 0 || i >= n)
        throw IndexError(std::string("mproc list ") + what + ": index " + std::to_string(index) +
                         " out of range for a list of " + std::to_string(size));
    return static_cast<std::uint64_t>(i);
}

// ---- the lock -------------------------------------------------------------

class Locked {
public:
    Locked(const Heap& heap, ObjectHeader* o) : o_(o) {
        if (heap.header().shut.load(std::memory_order_relaxed))
            throw ValueError("mproc::Manager: this container's manager has been shut down");
        switch (os::robust_mutex_lock(&o->mu, os::Deadline::never())) {
            case os::LockStatus::acquired:
                break;
            case os::LockStatus::owner_died:
                // Everything reachable is whole (see the top of this file);
                // only the dict's counters may be stale.
                if (o->kind == ObjectKind::dict) recount(heap, o);
                break;
            case os::LockStatus::would_deadlock:
                throw Error("mproc::Manager: a container operation was called on the same container "
                            "from inside its own modify() function");
            case os::LockStatus::timed_out:
                throw TimeoutError("mproc::Manager: timed out waiting for a container's lock");
        }
    }
    ~Locked() { os::robust_mutex_unlock(&o_->mu); }
    Locked(const Locked&) = delete;
    Locked& operator=(const Locked&) = delete;

private:
    ObjectHeader* o_;
};

}  // namespace

long current_pid() noexcept { return os::pid(); }

// ---- SharedHeap ----------------------------------------------------------------

SharedHeap SharedHeap::create(std::size_t max_bytes) {
    max_bytes = std::max<std::size_t>(max_bytes, std::size_t{16} << 20);
    max_bytes = (max_bytes + 4095) / 4096 * 4096;
    // Address space is usually plentiful, but a process under `ulimit -v`
    // cannot map 32 GiB: reserve less rather than fail (down to 256 MiB).
    SegmentPtr seg;
    for (;;) {
        try {
            seg = Segment::anonymous(max_bytes, "mproc-manager");
            break;
        } catch (const OSError& e) {
            if (e.code() != ENOMEM || max_bytes <= (std::size_t{256} << 20)) throw;
            max_bytes /= 2;
        }
    }
    auto* h = new (seg->data()) HeapHeader{};
    h->reserve = max_bytes;
    h->bump.store(kHeapStart, std::memory_order_relaxed);
    Heap heap(*seg);
    heap.ensure_committed(kHeapStart + (std::uint64_t{1} << 20));
    h->magic = kHeapMagic;
    SharedHeap sh(std::move(seg));
    h->root = SharedObject::create(sh, ObjectKind::dict, kRegistryTag).off_;
    return sh;
}

std::size_t SharedHeap::used_bytes() const {
    return reinterpret_cast<const HeapHeader*>(seg_->data())->used.load(std::memory_order_relaxed);
}
std::size_t SharedHeap::committed_bytes() const {
    return reinterpret_cast<const HeapHeader*>(seg_->data())->committed.load(std::memory_order_relaxed);
}
std::size_t SharedHeap::max_bytes() const { return reinterpret_cast<const HeapHeader*>(seg_->data())->reserve; }
void SharedHeap::shut_down() const {
    reinterpret_cast<HeapHeader*>(seg_->data())->shut.store(1, std::memory_order_relaxed);
}
bool SharedHeap::is_shut_down() const {
    return reinterpret_cast<const HeapHeader*>(seg_->data())->shut.load(std::memory_order_relaxed) != 0;
}

// ---- SharedObject: creation and handles ---------------------------------------

SharedObject SharedObject::create(const SharedHeap& sh, ObjectKind kind, std::uint64_t type_tag,
                                  std::uint64_t maxsize) {
    const Segment& seg = *sh.segment();
    Heap heap(seg);
    if (heap.header().shut.load(std::memory_order_relaxed))
        throw ValueError("mproc::Manager: the manager has been shut down");
    const std::uint64_t off = heap.alloc(sizeof(ObjectHeader));
    auto* o = new (heap.at(off)) ObjectHeader{};
    o->kind = kind;
    o->type_tag = type_tag;
    o->tombs.store(kind == ObjectKind::queue ? maxsize : 0, std::memory_order_relaxed);
    os::robust_mutex_init(&o->mu, false);
    o->magic = kObjectMagic;
    return SharedObject(sh.segment(), off, kind, type_tag);
}

void SharedObject::mproc_export(HandleWriter& w) const {
    if (link_)
        throw ValueError("mproc::Manager: a proxy of a connected Manager cannot be passed to another process; "
                         "connect to the manager from that process instead");
    if (!seg_) throw ValueError("mproc::Manager: an empty proxy cannot be sent to another process");
    w.segment(seg_, seg_->data() + off_);
}

SharedObject SharedObject::import(HandleReader& r, ObjectKind kind, std::uint64_t type_tag) {
    auto [seg, p] = r.segment(sizeof(ObjectHeader));
    const std::uint64_t off = seg->offset_of(p);
    return attach(std::move(seg), off, kind, type_tag);
}

SharedObject SharedObject::attach(SegmentPtr seg, std::uint64_t off, ObjectKind kind, std::uint64_t type_tag) {
    const auto* h = reinterpret_cast<const HeapHeader*>(seg->data());
    if (seg->size() < kHeapStart || h->magic != kHeapMagic || off < kHeapStart || off % 8 != 0 ||
        off > seg->size() - sizeof(ObjectHeader) || off >= h->bump.load(std::memory_order_relaxed))
        throw SerializationError("a manager proxy handle does not point at a manager container");
    const auto* o = reinterpret_cast<const ObjectHeader*>(seg->data() + off);
    if (o->magic != kObjectMagic)
        throw SerializationError("a manager proxy handle does not point at a manager container");
    if (o->kind != kind || o->type_tag != type_tag)
        throw SerializationError("a manager proxy arrived as a different container or element type "
                                 "than it was created with");
    return SharedObject(std::move(seg), off, kind, type_tag);
}

// ---- published names ----------------------------------------------------------

namespace {
struct Published {
    std::uint64_t off;
    std::uint64_t tag;
    ObjectKind kind;
    std::uint32_t pad;
};
}  // namespace

SharedObject SharedHeap::registry() const {
    const auto* h = reinterpret_cast<const HeapHeader*>(seg_->data());
    return SharedObject(seg_, h->root, ObjectKind::dict, kRegistryTag);
}

void SharedHeap::publish(const std::string& name, const SharedObject& obj) const {
    if (obj.seg_ != seg_) throw ValueError("mproc::Manager::publish: the proxy belongs to another manager");
    const Published rec{obj.off_, obj.tag_, obj.kind_, 0};
    registry().dict_set(Bytes(reinterpret_cast<const std::byte*>(name.data()), name.size()),
                        std::as_bytes(std::span<const Published, 1>(&rec, 1)));
}

SharedObject SharedHeap::lookup(const std::string& name, ObjectKind kind, std::uint64_t type_tag) const {
    Published rec{};
    bool found = false;
    auto f = [&](Bytes b) {
        if (b.size() == sizeof rec) {
            std::memcpy(&rec, b.data(), sizeof rec);
            found = true;
        }
    };
    registry().dict_get(Bytes(reinterpret_cast<const std::byte*>(name.data()), name.size()), BytesSink(f));
    if (!found) throw KeyError("mproc::Manager: nothing is published as '" + name + "'");
    if (rec.kind != kind || rec.tag != type_tag)
        throw SerializationError("mproc::Manager: '" + name +
                                 "' is published as another container or element type than was asked for");
    return SharedObject::attach(seg_, rec.off, kind, type_tag);
}

void SharedObject::publish_as(const std::string& name) const {
    if (link_) return RemoteOps::publish(*this, name);
    if (!seg_) throw ValueError("mproc::Manager: publishing an empty proxy");
    SharedHeap(seg_).publish(name, *this);
}

void SharedHeap::mproc_export(HandleWriter& w) const { w.segment(seg_, seg_->data()); }

SharedHeap SharedHeap::mproc_import(HandleReader& r) {
    auto [seg, p] = r.segment(kHeapStart);
    if (reinterpret_cast<const HeapHeader*>(p)->magic != kHeapMagic || p != seg->data())
        throw SerializationError("a manager heap handle does not point at a manager heap");
    return SharedHeap(std::move(seg));
}

// ---- dict ------------------------------------------------------------------------

namespace {
struct Ctx {
    Heap heap;
    ObjectHeader* o;
    Ctx(const SegmentPtr& seg, std::uint64_t off) : heap(*seg), o(heap.at<ObjectHeader>(off)) {}
};

void dict_put(const Heap& heap, ObjectHeader* o, std::uint64_t hash, Bytes key, EntryGuard& e) {
    Table t = table_of(heap, o->table.load(std::memory_order_relaxed));
    Probe p = t.cap ? probe(heap, t, hash, key) : Probe{0, false};
    if (p.found) {
        const std::uint64_t old = load(t.slots[p.index]) & kSlotOffMask;
        store(t.slots[p.index], e.release() | (hash >> 48 << 48));
        heap.free(old);
        return;
    }
    if (t.cap == 0 || (o->count.load(std::memory_order_relaxed) + o->tombs.load(std::memory_order_relaxed) + 1) * 4 >
                          t.cap * 3) {
        t = reserve_one(heap, o);
        p = probe(heap, t, hash, key);
    }
    publish_new(o, t, p.index, e.release(), hash);
}
}  // namespace

void SharedObject::dict_set(Bytes key, Bytes value) const {
    if (link_) return RemoteOps::dict_set(*this, key, value);
    if (!seg_) throw ValueError("mproc::Manager: using an empty proxy");
    Ctx c(seg_, off_);
    const std::uint64_t hash = hash_bytes(key);
    EntryGuard e{c.heap, c.heap.make_entry(hash, key, value)};
    Locked g(c.heap, c.o);
    dict_put(c.heap, c.o, hash, key, e);
}

void SharedObject::dict_set_many(std::span<const Bytes> keys, std::span<const Bytes> values) const {
    if (link_) return RemoteOps::dict_set_many(*this, keys, values);
    if (!seg_) throw ValueError("mproc::Manager: using an empty proxy");
    Ctx c(seg_, off_);
    std::vector<std::uint64_t> hashes(keys.size());
    for (std::size_t i = 0; i < keys.size(); ++i) hashes[i] = hash_bytes(keys[i]);
    Locked g(c.heap, c.o);
    for (std::size_t i = 0; i < keys.size(); ++i) {
        EntryGuard e{c.heap, c.heap.make_entry(hashes[i], keys[i], values[i])};
        dict_put(c.heap, c.o, hashes[i], keys[i], e);
    }
}

bool SharedObject::dict_get(Bytes key, BytesSink sink) const {
    if (link_) return RemoteOps::dict_get(*this, key, sink);
    if (!seg_) throw ValueError("mproc::Manager: using an empty proxy");
    Ctx c(seg_, off_);
    const std::uint64_t hash = hash_bytes(key);
    Locked g(c.heap, c.o);
    const Table t = table_of(c.heap, c.o->table.load(std::memory_order_relaxed));
    if (t.cap == 0) return false;
    const Probe p = probe(c.heap, t, hash, key);
    if (!p.found) return false;
    sink(c.heap.entry_value(load(t.slots[p.index]) & kSlotOffMask));
    return true;
}

bool SharedObject::dict_contains(Bytes key) const {
    auto ignore = [](Bytes) {};
    return dict_get(key, BytesSink(ignore));
}

bool SharedObject::dict_erase(Bytes key, const BytesSink* sink) const {
    if (link_) return RemoteOps::dict_erase(*this, key, sink);
    if (!seg_) throw ValueError("mproc::Manager: using an empty proxy");
    Ctx c(seg_, off_);
    const std::uint64_t hash = hash_bytes(key);
    Locked g(c.heap, c.o);
    const Table t = table_of(c.heap, c.o->table.load(std::memory_order_relaxed));
    if (t.cap == 0) return false;
    const Probe p = probe(c.heap, t, hash, key);
    if (!p.found) return false;
    const std::uint64_t e = load(t.slots[p.index]) & kSlotOffMask;
    if (sink) (*sink)(c.heap.entry_value(e));
    store(t.slots[p.index], kDeleted);
    c.o->count.fetch_sub(1, std::memory_order_relaxed);
    c.o->tombs.fetch_add(1, std::memory_order_relaxed);
    c.heap.free(e);
    return true;
}

bool SharedObject::dict_insert(Bytes key, Bytes value) const {
    if (link_) return RemoteOps::dict_insert(*this, key, value);
    if (!seg_) throw ValueError("mproc::Manager: using an empty proxy");
    Ctx c(seg_, off_);
    const std::uint64_t hash = hash_bytes(key);
    EntryGuard e{c.heap, c.heap.make_entry(hash, key, value)};
    Locked g(c.heap, c.o);
    Table t = table_of(c.heap, c.o->table.load(std::memory_order_relaxed));
    if (t.cap != 0 && probe(c.heap, t, hash, key).found) return false;
    dict_put(c.heap, c.o, hash, key, e);
    return true;
}

void SharedObject::dict_rewrite(Bytes key, Rewriter rewrite) const {
    if (link_) return RemoteOps::dict_rewrite(*this, key, rewrite);
    if (!seg_) throw ValueError("mproc::Manager: using an empty proxy");
    Ctx c(seg_, off_);
    const std::uint64_t hash = hash_bytes(key);
    Locked g(c.heap, c.o);
    const Table t = table_of(c.heap, c.o->table.load(std::memory_order_relaxed));
    Bytes now;
    bool found = false;
    if (t.cap != 0) {
        const Probe p = probe(c.heap, t, hash, key);
        if (p.found) {
            found = true;
            now = c.heap.entry_value(load(t.slots[p.index]) & kSlotOffMask);
        }
    }
    const Bytes next = rewrite(found ? &now : nullptr);
    EntryGuard e{c.heap, c.heap.make_entry(hash, key, next)};
    dict_put(c.heap, c.o, hash, key, e);
}

void SharedObject::dict_items(PairSink sink) const {
    if (link_) return RemoteOps::dict_items(*this, sink);
    if (!seg_) throw ValueError("mproc::Manager: using an empty proxy");
    Ctx c(seg_, off_);
    Locked g(c.heap, c.o);
    const Table t = table_of(c.heap, c.o->table.load(std::memory_order_relaxed));
    for (std::uint64_t i = 0; i < t.cap; ++i) {
        const std::uint64_t s = load(t.slots[i]);
        if (s <= kDeleted) continue;
        const std::uint64_t e = s & kSlotOffMask;
        sink(c.heap.entry_key(e), c.heap.entry_value(e));
    }
}

// ---- list ------------------------------------------------------------------------

void SharedObject::list_append(Bytes value) const { list_extend(std::span<const Bytes>(&value, 1)); }

void SharedObject::list_extend(std::span<const Bytes> values) const {
    if (link_) return RemoteOps::list_extend(*this, values);
    if (!seg_) throw ValueError("mproc::Manager: using an empty proxy");
    if (values.empty()) return;
    Ctx c(seg_, off_);
    std::vector<std::uint64_t> entries;
    entries.reserve(values.size());
    struct Release {
        const Heap& heap;
        std::vector<std::uint64_t>& v;
        ~Release() { for (auto e : v) heap.free(e); }
    } release{c.heap, entries};
    for (Bytes v : values) entries.push_back(c.heap.make_entry(0, {}, v));
    Locked g(c.heap, c.o);
    Array a = room_for(c.heap, c.o, entries.size());
    const std::uint64_t n = a.size();
    for (std::size_t i = 0; i < entries.size(); ++i) store(a.slots()[n + i], entries[i]);
    store(a.words[0], n + entries.size());  // one store makes them all visible
    entries.clear();
}

void SharedObject::list_at(std::int64_t index, BytesSink sink) const {
    if (link_) return RemoteOps::list_at(*this, index, sink);
    if (!seg_) throw ValueError("mproc::Manager: using an empty proxy");
    Ctx c(seg_, off_);
    Locked g(c.heap, c.o);
    const Array a = array_of(c.heap, c.o->table.load(std::memory_order_relaxed));
    const std::uint64_t i = py_index(index, a.size(), "index");
    sink(c.heap.entry_value(load(a.slots()[i])));
}

void SharedObject::list_set(std::int64_t index, Bytes value) const {
    if (link_) return RemoteOps::list_set(*this, index, value);
    if (!seg_) throw ValueError("mproc::Manager: using an empty proxy");
    Ctx c(seg_, off_);
    EntryGuard e{c.heap, c.heap.make_entry(0, {}, value)};
    Locked g(c.heap, c.o);
    const Array a = array_of(c.heap, c.o->table.load(std::memory_order_relaxed));
    const std::uint64_t i = py_index(index, a.size(), "assignment");
    const std::uint64_t old = load(a.slots()[i]);
    store(a.slots()[i], e.release());
    c.heap.free(old);
}

void SharedObject::list_rewrite(std::int64_t index, Rewriter rewrite) const {
    if (link_) return RemoteOps::list_rewrite(*this, index, rewrite);
    if (!seg_) throw ValueError("mproc::Manager: using an empty proxy");
    Ctx c(seg_, off_);
    Locked g(c.heap, c.o);
    const Array a = array_of(c.heap, c.o->table.load(std::memory_order_relaxed));
    const std::uint64_t i = py_index(index, a.size(), "modify");
    const std::uint64_t old = load(a.slots()[i]);
    const Bytes now = c.heap.entry_value(old);
    const Bytes next = rewrite(&now);
    store(a.slots()[i], c.heap.make_entry(0, {}, next));
    c.heap.free(old);
}

void SharedObject::list_insert(std::int64_t index, Bytes value) const {
    if (link_) return RemoteOps::list_insert(*this, index, value);
    if (!seg_) throw ValueError("mproc::Manager: using an empty proxy");
    Ctx c(seg_, off_);
    EntryGuard e{c.heap, c.heap.make_entry(0, {}, value)};
    Locked g(c.heap, c.o);
    const Array a = array_of(c.heap, c.o->table.load(std::memory_order_relaxed));
    const std::uint64_t n = a.size();
    // Python clamps: insert(-100, x) on a short list inserts at 0.
    const std::int64_t sn = static_cast<std::int64_t>(n);
    const std::int64_t i = std::clamp<std::int64_t>(index < 0 ? index + sn : index, 0, sn);
    const auto at = static_cast<std::uint64_t>(i);
    if (at == n) {
        Array r = room_for(c.heap, c.o, 1);
        store(r.slots()[n], e.release());
        store(r.words[0], n + 1);
        return;
    }
    // In the middle: a new array, published by one store (shifting in
    // place could be cut short by a kill and duplicate an item).
    const std::uint64_t entry = e.off;
    replace_array(c.heap, c.o, std::max(a.cap, n + 1), n + 1, [&](std::uint64_t* s) {
        std::memcpy(s, a.slots(), at * sizeof(std::uint64_t));
        s[at] = entry;
        std::memcpy(s + at + 1, a.slots() + at, (n - at) * sizeof(std::uint64_t));
    });
    e.release();
}

void SharedObject::list_pop(std::int64_t index, BytesSink sink) const {
    if (link_) return RemoteOps::list_pop(*this, index, sink);
    if (!seg_) throw ValueError("mproc::Manager: using an empty proxy");
    Ctx c(seg_, off_);
    Locked g(c.heap, c.o);
    const Array a = array_of(c.heap, c.o->table.load(std::memory_order_relaxed));
    const std::uint64_t n = a.size();
    if (n == 0) throw IndexError("mproc list pop: pop from an empty list");
    const std::uint64_t at = py_index(index, n, "pop");
    const std::uint64_t e = load(a.slots()[at]);
    sink(c.heap.entry_value(e));
    if (at == n - 1) {
        store(a.words[0], n - 1);
    } else {
        replace_array(c.heap, c.o, a.cap, n - 1, [&](std::uint64_t* s) {
            std::memcpy(s, a.slots(), at * sizeof(std::uint64_t));
            std::memcpy(s + at, a.slots() + at + 1, (n - at - 1) * sizeof(std::uint64_t));
        });
    }
    c.heap.free(e);
}

void SharedObject::list_items(BytesSink sink) const {
    if (link_) return RemoteOps::list_items(*this, sink);
    if (!seg_) throw ValueError("mproc::Manager: using an empty proxy");
    Ctx c(seg_, off_);
    Locked g(c.heap, c.o);
    const Array a = array_of(c.heap, c.o->table.load(std::memory_order_relaxed));
    const std::uint64_t n = a.size();
    for (std::uint64_t i = 0; i < n; ++i) sink(c.heap.entry_value(load(a.slots()[i])));
}

// ---- value -----------------------------------------------------------------------

void SharedObject::value_set(Bytes value) const {
    if (link_) return RemoteOps::value_set(*this, value);
    if (!seg_) throw ValueError("mproc::Manager: using an empty proxy");
    Ctx c(seg_, off_);
    EntryGuard e{c.heap, c.heap.make_entry(0, {}, value)};
    Locked g(c.heap, c.o);
    const std::uint64_t old = c.o->table.load(std::memory_order_relaxed);
    c.o->table.store(e.release(), std::memory_order_release);
    c.heap.free(old);
}

void SharedObject::value_get(BytesSink sink) const {
    if (link_) return RemoteOps::value_get(*this, sink);
    if (!seg_) throw ValueError("mproc::Manager: using an empty proxy");
    Ctx c(seg_, off_);
    Locked g(c.heap, c.o);
    const std::uint64_t e = c.o->table.load(std::memory_order_relaxed);
    if (e == 0) throw ValueError("mproc::Manager: the Value has no value");
    sink(c.heap.entry_value(e));
}

void SharedObject::value_rewrite(Rewriter rewrite) const {
    if (link_) return RemoteOps::value_rewrite(*this, rewrite);
    if (!seg_) throw ValueError("mproc::Manager: using an empty proxy");
    Ctx c(seg_, off_);
    Locked g(c.heap, c.o);
    const std::uint64_t old = c.o->table.load(std::memory_order_relaxed);
    Bytes now;
    if (old) now = c.heap.entry_value(old);
    const Bytes next = rewrite(old ? &now : nullptr);
    c.o->table.store(c.heap.make_entry(0, {}, next), std::memory_order_release);
    c.heap.free(old);
}

// ---- queue -----------------------------------------------------------------------
//
// table = ring: [state = head << 32 | length][slot ...]; capacity from its
// block size. A put writes the slot, then the state; a get reads the slot,
// then stores the state, then frees the entry: each a single store.

namespace {

constexpr std::uint64_t kLenMask = 0xffffffffull;

struct Ring {
    std::uint64_t* words = nullptr;
    std::uint64_t cap = 0;
    std::uint64_t state() const { return words ? load(words[0]) : 0; }
    std::uint64_t* slots() const { return words + 1; }
};

Ring ring_of(const Heap& heap, std::uint64_t off) {
    if (off == 0) return {};
    return {heap.at<std::uint64_t>(off), heap.payload_capacity(off) / sizeof(std::uint64_t) - 1};
}

/// The ring with room for one more item (a bigger one, in order, if full).
Ring ring_room(const Heap& heap, ObjectHeader* o) {
    Ring r = ring_of(heap, o->table.load(std::memory_order_relaxed));
    const std::uint64_t st = r.state(), head = st >> 32, len = st & kLenMask;
    if (len < r.cap) return r;
    if (len >= kLenMask) throw Error("mproc::Manager: a queue holds at most 2^32 - 1 items");
    const std::uint64_t off = heap.alloc((std::max<std::uint64_t>(r.cap * 2, 8) + 1) * sizeof(std::uint64_t));
    Ring n = ring_of(heap, off);
    for (std::uint64_t i = 0; i < len; ++i) n.slots()[i] = load(r.slots()[(head + i) % r.cap]);
    n.words[0] = len;  // head 0
    const std::uint64_t old = o->table.load(std::memory_order_relaxed);
    o->table.store(off, std::memory_order_release);
    heap.free(old);
    return n;
}

void changed(ObjectHeader* o) {
    o->seq.fetch_add(1, std::memory_order_release);
    if (o->waiters.load(std::memory_order_seq_cst) != 0) os::futex_wake(&o->seq, INT32_MAX);
}

/// Sleeps until the queue changes from `seen`, the deadline passes (false),
/// or a slice ends (so a shut-down manager is noticed).
bool wait_change(ObjectHeader* o, std::uint32_t seen, const os::Deadline& deadline) {
    if (os::spin_until([&] { return o->seq.load(std::memory_order_acquire) != seen; }, os::spin_budget_ns()))
        return true;
    if (deadline.expired()) return false;
    const os::Deadline slice = os::Deadline::after(Duration(0.25));
    const os::Deadline& until = !deadline.is_never() && deadline.remaining() <= slice.remaining() ? deadline : slice;
    o->waiters.fetch_add(1, std::memory_order_seq_cst);
    os::futex_wait(&o->seq, seen, until);
    o->waiters.fetch_sub(1, std::memory_order_relaxed);
    return !deadline.expired() || o->seq.load(std::memory_order_acquire) != seen;
}

}  // namespace

bool SharedObject::queue_put(Bytes value, Timeout timeout) const {
    if (link_) return RemoteOps::queue_put(*this, value, timeout);
    if (!seg_) throw ValueError("mproc::Manager: using an empty proxy");
    Ctx c(seg_, off_);
    const os::Deadline deadline = os::Deadline::after(timeout);
    EntryGuard e{c.heap, c.heap.make_entry(0, {}, value)};
    for (;;) {
        std::uint32_t seen;
        {
            Locked g(c.heap, c.o);
            const std::uint64_t maxsize = c.o->tombs.load(std::memory_order_relaxed);
            Ring r = ring_of(c.heap, c.o->table.load(std::memory_order_relaxed));
            const std::uint64_t len = r.state() & kLenMask;
            if (maxsize == 0 || len < maxsize) {
                r = ring_room(c.heap, c.o);
                const std::uint64_t st = r.state(), head = st >> 32;
                store(r.slots()[(head + len) % r.cap], e.release());
                store(r.words[0], (head << 32) | (len + 1));
                c.o->count.fetch_add(1, std::memory_order_relaxed);
                changed(c.o);
                return true;
            }
            seen = c.o->seq.load(std::memory_order_acquire);
        }
        if (!wait_change(c.o, seen, deadline)) return false;
    }
}

bool SharedObject::queue_get(BytesSink sink, Timeout timeout) const {
    if (link_) return RemoteOps::queue_get(*this, sink, timeout);
    if (!seg_) throw ValueError("mproc::Manager: using an empty proxy");
    Ctx c(seg_, off_);
    const os::Deadline deadline = os::Deadline::after(timeout);
    for (;;) {
        std::uint32_t seen;
        {
            Locked g(c.heap, c.o);
            const Ring r = ring_of(c.heap, c.o->table.load(std::memory_order_relaxed));
            const std::uint64_t st = r.state(), head = st >> 32, len = st & kLenMask;
            if (len > 0) {
                const std::uint64_t e = load(r.slots()[head]);
                sink(c.heap.entry_value(e));
                store(r.words[0], (((head + 1) % r.cap) << 32) | (len - 1));
                c.heap.free(e);
                changed(c.o);
                return true;
            }
            seen = c.o->seq.load(std::memory_order_acquire);
        }
        if (!wait_change(c.o, seen, deadline)) return false;
    }
}

void SharedObject::queue_task_done() const {
    if (link_) return RemoteOps::queue_task_done(*this);
    if (!seg_) throw ValueError("mproc::Manager: using an empty proxy");
    Ctx c(seg_, off_);
    Locked g(c.heap, c.o);
    if (c.o->count.load(std::memory_order_relaxed) == 0)
        throw ValueError("mproc Queue: task_done() called more times than there were items");
    c.o->count.fetch_sub(1, std::memory_order_relaxed);
    changed(c.o);
}

bool SharedObject::queue_join(Timeout timeout) const {
    if (link_) return RemoteOps::queue_join(*this, timeout);
    if (!seg_) throw ValueError("mproc::Manager: using an empty proxy");
    Ctx c(seg_, off_);
    const os::Deadline deadline = os::Deadline::after(timeout);
    for (;;) {
        std::uint32_t seen;
        {
            Locked g(c.heap, c.o);
            if (c.o->count.load(std::memory_order_relaxed) == 0) return true;
            seen = c.o->seq.load(std::memory_order_acquire);
        }
        if (!wait_change(c.o, seen, deadline)) return false;
    }
}

std::size_t SharedObject::queue_maxsize() const {
    if (link_) return RemoteOps::queue_maxsize(*this);
    if (!seg_) throw ValueError("mproc::Manager: using an empty proxy");
    Ctx c(seg_, off_);
    return c.o->tombs.load(std::memory_order_relaxed);
}

// ---- any -------------------------------------------------------------------------

std::size_t SharedObject::size() const {
    if (link_) return RemoteOps::size(*this);
    if (!seg_) throw ValueError("mproc::Manager: using an empty proxy");
    Ctx c(seg_, off_);
    Locked g(c.heap, c.o);
    switch (c.o->kind) {
        case ObjectKind::dict:
            return c.o->count.load(std::memory_order_relaxed);
        case ObjectKind::list:
            return array_of(c.heap, c.o->table.load(std::memory_order_relaxed)).size();
        case ObjectKind::value:
            return c.o->table.load(std::memory_order_relaxed) != 0;
        case ObjectKind::queue:
            return ring_of(c.heap, c.o->table.load(std::memory_order_relaxed)).state() & kLenMask;
    }
    return 0;
}

void SharedObject::clear() const {
    if (link_) return RemoteOps::clear(*this);
    if (!seg_) throw ValueError("mproc::Manager: using an empty proxy");
    Ctx c(seg_, off_);
    Locked g(c.heap, c.o);
    const std::uint64_t word = c.o->table.load(std::memory_order_relaxed);
    if (word == 0) return;
    // Unlink everything with one store, then free at leisure: a kill
    // midway loses the rest to the heap, never to a half-cleared container.
    c.o->table.store(0, std::memory_order_release);
    if (c.o->kind == ObjectKind::dict) {
        c.o->count.store(0, std::memory_order_relaxed);
        c.o->tombs.store(0, std::memory_order_relaxed);
    }
    switch (c.o->kind) {
        case ObjectKind::dict: {
            const Table t = table_of(c.heap, word);
            for (std::uint64_t i = 0; i < t.cap; ++i)
                if (const std::uint64_t s = load(t.slots[i]); s > kDeleted) c.heap.free(s & kSlotOffMask);
            c.heap.free(word & kSlotOffMask);
            break;
        }
        case ObjectKind::list: {
            const Array a = array_of(c.heap, word);
            for (std::uint64_t i = 0; i < a.size(); ++i) c.heap.free(load(a.slots()[i]));
            c.heap.free(word);
            break;
        }
        case ObjectKind::value:
            c.heap.free(word);
            break;
        case ObjectKind::queue: {
            const Ring r = ring_of(c.heap, word);
            const std::uint64_t st = r.state(), head = st >> 32, len = st & kLenMask;
            for (std::uint64_t i = 0; i < len; ++i) c.heap.free(load(r.slots()[(head + i) % r.cap]));
            c.heap.free(word);
            changed(c.o);
            break;
        }
    }
}

}  // namespace mproc::detail
