// The insertion-ordered hash table under manager dicts (and the manager's
// own table of published names). Internal header (lib/manager/).
//
// Layout, like CPython's compact dict: one block holds
//   [DictTable][index: 2 * capacity slots][entries: capacity slots]
// `entries` lists entry offsets in insertion order (0: deleted); `index`
// is open addressing with linear probing, a slot holding the position in
// `entries` + 2 and the top 24 bits of the key's hash (0: empty, 1:
// deleted). The block is the unit of publication: a grown or compacted
// table is built aside and switched in by one store of DictState::table.
//
// Primary state: `entries` and `used` (published by the store of `used`,
// after the entry and its index slot are written). Derived: `index` and
// `live` and `tombs`, rebuilt from the entries by recover() after a holder's death.
// Every change is one of:
//   insert   entries[used] = e; index slot; live + 1; used + 1  (publishes)
//   replace  entries[pos] = e                                   (publishes)
//   remove   index slot = deleted; counts; entries[pos] = 0     (publishes)
// and the entry it drops is freed only after the store that unlinks it.
#pragma once

#include <cstdint>

#include "manager/object.hpp"

namespace mproc::detail::mgr {

struct DictTable {
    std::uint64_t used;      // entries[0, used) have been filled
    std::uint64_t live;      // non-zero entries among them
    std::uint64_t tombs;     // deleted index slots
    std::uint64_t capacity;  // entries' length; the index has twice as many slots
};

/// Operations on one DictState; the caller holds the object's lock.
class DictView {
public:
    DictView(const Heap& heap, DictState& state) noexcept : heap_(heap), s_(state) {}

    std::uint64_t size() const noexcept;
    /// The entry stored for key, or 0.
    std::uint64_t find(std::uint64_t hash, Bytes key) const noexcept;
    /// Stores entry `e` (made with this hash and key), replacing the key's
    /// entry if it has one or appending it (last in order). Returns the
    /// entry it replaced (0 if none): unlinked, for the caller to free once
    /// it has let go of the lock (a BlockGuard declared before the lock),
    /// so that the lock is held for the table's stores only, not for the
    /// allocator's.
    [[nodiscard]] std::uint64_t put(std::uint64_t hash, Bytes key, BlockGuard& e);
    /// Unlinks key's entry and returns it (the caller frees it), or 0.
    std::uint64_t remove(std::uint64_t hash, Bytes key) noexcept;
    /// The entry inserted last, or 0.
    std::uint64_t last() const noexcept;
    /// f(entry) for every entry, in insertion order.
    template <class F>
    void for_each(F&& f) const {
        const DictTable* t = table();
        if (!t) return;
        const std::uint64_t* e = entries(t);
        for (std::uint64_t pos = 0, n = load(t->used); pos < n; ++pos)
            if (const std::uint64_t off = load(e[pos])) f(off);
    }
    /// Unlinks everything with one store, then frees it.
    void clear() noexcept;
    /// Rebuilds the derived index and count from the entries.
    void recover() noexcept;

private:
    DictTable* table() const noexcept;
    static std::uint64_t* index(const DictTable* t) noexcept;
    static std::uint64_t* entries(const DictTable* t) noexcept;
    DictTable* rebuild(DictTable* old);

    const Heap& heap_;
    DictState& s_;
};

/// Recovery hook for dict objects (Locked).
void recover_dict(const Target& t);

}  // namespace mproc::detail::mgr
