// Manager lists.
//
// ListState::array is [length][slot ...] (capacity from its block's size);
// each slot is an entry holding one item. Appending writes the slots past
// the length, then stores the length: one store publishes them all. Any
// change that moves items (insert or pop in the middle, remove, reverse,
// sort) builds a new array aside and switches to it with one store of
// ListState::array: shifting in place could be cut short by a kill and
// duplicate or lose an item. `version` moves before every publishing store.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "manager/kinds.hpp"
#include "manager/ops_impl.hpp"
#include "mproc/errors.hpp"

namespace mproc::detail::mgr {

namespace {

struct Array {
    std::uint64_t* words = nullptr;  // [0] = length, then slots
    std::uint64_t cap = 0;
    std::uint64_t size() const noexcept { return words ? load(words[0]) : 0; }
    std::uint64_t* slots() const noexcept { return words + 1; }
    std::uint64_t item(std::uint64_t i) const noexcept { return load(slots()[i]); }
};

Array array_of(const Heap& heap, std::uint64_t off) noexcept {
    if (off == 0) return {};
    return {heap.at<std::uint64_t>(off), heap.payload_capacity(off) / sizeof(std::uint64_t) - 1};
}

/// The operations' view of one list; the caller holds its lock.
class List {
public:
    explicit List(const Target& t) : lock_(t, recover), t_(t), s_(t.state<ListState>()) {}

    static void recover(const Target& t) {
        // Nothing is derived; a remote sort in flight must not apply.
        ListState& s = t.state<ListState>();
        store(s.version, load(s.version) + 1);
    }

    Array array() const noexcept { return array_of(t_.heap, load(s_.array)); }
    std::uint64_t version() const noexcept { return load(s_.version); }
    void changing() noexcept { store(s_.version, load(s_.version) + 1); }

    /// A new array of `n` items, filled by fill(slots), switched in.
    template <class Fill>
    Array replace(std::uint64_t min_cap, std::uint64_t n, Fill fill) {
        const std::uint64_t off = t_.heap.alloc((std::max<std::uint64_t>(min_cap, 4) + 1) * sizeof(std::uint64_t));
        Array a = array_of(t_.heap, off);
        fill(a.slots());
        a.words[0] = n;
        changing();
        const std::uint64_t old = load(s_.array);
        os::fault_point("list.replace.unpublished");
        store(s_.array, off);  // publishes the new order
        os::fault_point("list.replace.published");
        t_.heap.free(old);
        return a;
    }
    /// The array with room for `more` appended items.
    Array room_for(std::uint64_t more) {
        Array a = array();
        const std::uint64_t n = a.size();
        if (n + more <= a.cap) return a;
        return replace(std::max(a.cap * 2, n + more), n, [&](std::uint64_t* s) {
            if (n) std::memcpy(s, a.slots(), n * sizeof(std::uint64_t));
        });
    }
    /// Drops item `at` (the caller frees its entry after).
    void drop(const Array& a, std::uint64_t at) {
        const std::uint64_t n = a.size();
        if (at == n - 1) {
            changing();
            os::fault_point("list.drop.unpublished");
            store(a.words[0], n - 1);
            return;
        }
        replace(a.cap, n - 1, [&](std::uint64_t* s) {
            std::memcpy(s, a.slots(), at * sizeof(std::uint64_t));
            std::memcpy(s + at, a.slots() + at + 1, (n - at - 1) * sizeof(std::uint64_t));
        });
    }
    /// Stores entry `e` as item i (whose old entry is freed).
    void put(const Array& a, std::uint64_t i, std::uint64_t e) {
        const std::uint64_t old = a.item(i);
        changing();
        store(a.slots()[i], e);
        os::fault_point("list.put.published");
        t_.heap.free(old);
    }
    /// The first item in [start, stop) whose bytes are `v`, or n.
    std::uint64_t find(const Array& a, Bytes v, std::uint64_t start, std::uint64_t stop) const {
        for (std::uint64_t i = start; i < stop; ++i)
            if (same_bytes(t_.heap.entry_value(a.item(i)), v)) return i;
        return a.size();
    }

private:
    Locked lock_;
    const Target& t_;
    ListState& s_;
};

/// Python's slice bounds: negative counts from the end, then clamped.
std::uint64_t clamp_bound(std::int64_t i, std::uint64_t n) {
    const auto sn = static_cast<std::int64_t>(n);
    if (i < 0) i = std::max<std::int64_t>(0, i + sn);
    return static_cast<std::uint64_t>(std::min(i, sn));
}

/// Entries made for `values` before taking the lock, freed unless published.
class MadeEntries {
public:
    MadeEntries(const Heap& heap, BytesList values) : heap_(heap) {
        offs_.reserve(values.size());
        for (Bytes v : values) offs_.push_back(heap.make_entry(0, {}, v));
    }
    ~MadeEntries() {
        for (std::uint64_t e : offs_) heap_.free(e);
    }
    MadeEntries(const MadeEntries&) = delete;
    MadeEntries& operator=(const MadeEntries&) = delete;
    const std::vector<std::uint64_t>& offsets() const noexcept { return offs_; }
    void published() noexcept { offs_.clear(); }

private:
    const Heap& heap_;
    std::vector<std::uint64_t> offs_;
};

}  // namespace

std::uint64_t impl::list_size(const Target& t) { return List(t).array().size(); }

void impl::list_extend(const Target& t, BytesList values) {
    if (values.empty()) return;
    MadeEntries made(t.heap, values);
    List l(t);
    const Array a = l.room_for(values.size());
    const std::uint64_t n = a.size();
    for (std::size_t i = 0; i < values.size(); ++i) store(a.slots()[n + i], made.offsets()[i]);
    l.changing();
    os::fault_point("list.extend.unpublished");
    store(a.words[0], n + values.size());  // one store makes them all visible
    made.published();
}

void impl::list_get(const Target& t, std::int64_t index, Sink value) {
    List l(t);
    const Array a = l.array();
    value(t.heap.entry_value(a.item(py_index(index, a.size(), "index"))));
}

void impl::list_set(const Target& t, std::int64_t index, Bytes value) {
    BlockGuard e(t.heap, t.heap.make_entry(0, {}, value));
    List l(t);
    const Array a = l.array();
    l.put(a, py_index(index, a.size(), "assignment"), e.release());
}

void impl::list_insert(const Target& t, std::int64_t index, Bytes value) {
    BlockGuard e(t.heap, t.heap.make_entry(0, {}, value));
    List l(t);
    const Array a = l.array();
    const std::uint64_t n = a.size();
    const std::uint64_t at = clamp_bound(index, n);  // insert(-100, x) on a short list: at 0, as Python
    if (at == n) {
        const Array r = l.room_for(1);
        store(r.slots()[n], e.get());
        l.changing();
        store(r.words[0], n + 1);
        e.release();
        return;
    }
    const std::uint64_t entry = e.get();
    l.replace(std::max(a.cap, n + 1), n + 1, [&](std::uint64_t* s) {
        std::memcpy(s, a.slots(), at * sizeof(std::uint64_t));
        s[at] = entry;
        std::memcpy(s + at + 1, a.slots() + at, (n - at) * sizeof(std::uint64_t));
    });
    e.release();
}

void impl::list_pop(const Target& t, std::int64_t index, Sink value) {
    List l(t);
    const Array a = l.array();
    if (a.size() == 0) throw IndexError("mproc list pop: pop from an empty list");
    const std::uint64_t at = py_index(index, a.size(), "pop");
    const std::uint64_t e = a.item(at);
    value(t.heap.entry_value(e));  // if this throws, the item stays
    l.drop(a, at);
    t.heap.free(e);
}

std::uint64_t impl::list_items(const Target& t, Sink value) {
    List l(t);
    const Array a = l.array();
    for (std::uint64_t i = 0, n = a.size(); i < n; ++i) value(t.heap.entry_value(a.item(i)));
    return l.version();
}

bool impl::list_cas(const Target& t, std::int64_t index, Bytes expected, Bytes value, Sink now) {
    BlockGuard e(t.heap, t.heap.make_entry(0, {}, value));
    List l(t);
    const Array a = l.array();
    const std::uint64_t i = py_index(index, a.size(), "modify");
    const Bytes cur = t.heap.entry_value(a.item(i));
    if (!same_bytes(cur, expected)) {
        now(cur);
        return false;
    }
    l.put(a, i, e.release());
    return true;
}

void impl::list_reverse(const Target& t) {
    List l(t);
    const Array a = l.array();
    const std::uint64_t n = a.size();
    if (n < 2) return;
    l.replace(a.cap, n, [&](std::uint64_t* s) {
        for (std::uint64_t i = 0; i < n; ++i) s[i] = a.item(n - 1 - i);
    });
}

std::uint64_t impl::list_index(const Target& t, Bytes value, std::int64_t start, std::int64_t stop) {
    List l(t);
    const Array a = l.array();
    const std::uint64_t n = a.size();
    const std::uint64_t i = l.find(a, value, clamp_bound(start, n), clamp_bound(stop, n));
    if (i == n) throw ValueError("mproc list index(): the value is not in the list");
    return i;
}

std::uint64_t impl::list_count(const Target& t, Bytes value) {
    List l(t);
    const Array a = l.array();
    std::uint64_t count = 0;
    for (std::uint64_t i = 0, n = a.size(); i < n; ++i) count += same_bytes(t.heap.entry_value(a.item(i)), value);
    return count;
}

void impl::list_remove(const Target& t, Bytes value) {
    List l(t);
    const Array a = l.array();
    const std::uint64_t i = l.find(a, value, 0, a.size());
    if (i == a.size()) throw ValueError("mproc list remove(x): x is not in the list");
    const std::uint64_t e = a.item(i);
    l.drop(a, i);
    t.heap.free(e);
}

namespace {
/// Checks that `order` is a permutation of [0, n).
void check_permutation(U64List order, std::uint64_t n) {
    if (order.size() != n)
        throw ValueError("mproc list sort: a new order of " + std::to_string(order.size()) + " items for a list of " +
                         std::to_string(n));
    std::vector<bool> seen(n);
    for (std::uint64_t i : order) {
        if (i >= n || seen[i]) throw ValueError("mproc list sort: the new order is not a permutation");
        seen[i] = true;
    }
}

void apply_order(List& l, const Array& a, U64List order) {
    const std::uint64_t n = a.size();
    check_permutation(order, n);
    l.replace(a.cap, n, [&](std::uint64_t* s) {
        for (std::uint64_t i = 0; i < n; ++i) s[i] = a.item(order[i]);
    });
}
}  // namespace

bool impl::list_reorder(const Target& t, std::uint64_t version, U64List order) {
    List l(t);
    if (l.version() != version) return false;  // changed since the order was computed
    const Array a = l.array();
    if (a.size() >= 2) apply_order(l, a, order);
    else check_permutation(order, a.size());
    return true;
}

void impl::list_clear(const Target& t) {
    List l(t);
    const Array a = l.array();
    if (!a.words) return;
    l.changing();
    ListState& s = t.state<ListState>();
    const std::uint64_t off = load(s.array);
    store(s.array, 0);  // unlinks every item at once: a kill below only leaks
    for (std::uint64_t i = 0, n = a.size(); i < n; ++i) t.heap.free(a.item(i));
    t.heap.free(off);
}

void list_rewrite(const Target& t, std::int64_t index, const Rewriter& rewrite) {
    List l(t);
    const Array a = l.array();
    const std::uint64_t i = py_index(index, a.size(), "modify");
    const Bytes now = t.heap.entry_value(a.item(i));
    const Bytes next = rewrite(&now);
    l.put(a, i, t.heap.make_entry(0, {}, next));
}

void list_reorder_here(const Target& t, const Reorderer& order) {
    List l(t);
    const Array a = l.array();
    const std::uint64_t n = a.size();
    if (n < 2) return;
    std::vector<Bytes> items;
    items.reserve(n);
    for (std::uint64_t i = 0; i < n; ++i) items.push_back(t.heap.entry_value(a.item(i)));
    std::vector<std::uint64_t> perm;
    order(items, perm);  // the caller's comparisons, under the lock
    apply_order(l, a, perm);
}

}  // namespace mproc::detail::mgr
