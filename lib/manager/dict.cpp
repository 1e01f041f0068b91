// Manager dicts: the table (see dict.hpp) and the dict operations.
#include "manager/dict.hpp"
#include "manager/kinds.hpp"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "manager/ops_impl.hpp"
#include "mproc/errors.hpp"

namespace mproc::detail::mgr {

namespace {

constexpr std::uint64_t kEmpty = 0;
constexpr std::uint64_t kDeleted = 1;
constexpr unsigned kTagShift = 40;
constexpr std::uint64_t kPosMask = (std::uint64_t{1} << kTagShift) - 1;

std::uint64_t slot_for(std::uint64_t hash, std::uint64_t pos) noexcept {
    return (hash >> kTagShift << kTagShift) | (pos + 2);
}

struct Probe {
    std::uint64_t slot;  // the key's slot if found, else where to insert it
    bool found;
};

}  // namespace

DictTable* DictView::table() const noexcept {
    const std::uint64_t off = load(s_.table);
    return off ? heap_.at<DictTable>(off) : nullptr;
}
std::uint64_t* DictView::index(const DictTable* t) noexcept {
    return reinterpret_cast<std::uint64_t*>(const_cast<DictTable*>(t) + 1);
}
std::uint64_t* DictView::entries(const DictTable* t) noexcept { return index(t) + 2 * t->capacity; }

std::uint64_t DictView::size() const noexcept {
    const DictTable* t = table();
    return t ? load(t->live) : 0;
}

namespace {

Probe probe(const Heap& heap, const DictTable* t, const std::uint64_t* idx, const std::uint64_t* ent,
            std::uint64_t hash, Bytes key) noexcept {
    const std::uint64_t mask = 2 * t->capacity - 1;
    const std::uint64_t used = load(t->used);
    std::uint64_t insert_at = UINT64_MAX;
    for (std::uint64_t i = hash & mask, n = 0; n <= mask; i = (i + 1) & mask, ++n) {
        const std::uint64_t s = load(idx[i]);
        if (s == kEmpty) return {insert_at != UINT64_MAX ? insert_at : i, false};
        if (s == kDeleted) {
            if (insert_at == UINT64_MAX) insert_at = i;
            continue;
        }
        if ((s >> kTagShift) != (hash >> kTagShift)) continue;
        const std::uint64_t pos = (s & kPosMask) - 2;
        if (pos >= used) continue;
        const std::uint64_t e = load(ent[pos]);
        if (e == 0) continue;
        const EntryHeader& eh = heap.entry(e);
        if (eh.hash == hash && same_bytes(heap.entry_key(e), key)) return {i, true};
    }
    return {insert_at, false};
}

}  // namespace

std::uint64_t DictView::find(std::uint64_t hash, Bytes key) const noexcept {
    const DictTable* t = table();
    if (!t) return 0;
    const std::uint64_t* idx = index(t);
    const Probe p = probe(heap_, t, idx, entries(t), hash, key);
    return p.found ? load(entries(t)[(load(idx[p.slot]) & kPosMask) - 2]) : 0;
}

DictTable* DictView::rebuild(DictTable* old) {
    const std::uint64_t live = old ? load(old->live) : 0;
    std::uint64_t cap = old ? old->capacity : 4;
    if ((live + 1) * 4 > cap * 3) cap *= 2;  // else: the same size, compacted
    const std::uint64_t bytes = sizeof(DictTable) + 3 * cap * sizeof(std::uint64_t);
    const std::uint64_t off = heap_.alloc(bytes);
    auto* t = heap_.at<DictTable>(off);
    t->capacity = cap;
    std::uint64_t* idx = index(t);
    std::uint64_t* ent = entries(t);
    std::memset(idx, 0, 2 * cap * sizeof(std::uint64_t));
    std::uint64_t n = 0;
    if (old) {
        const std::uint64_t* oe = entries(old);
        for (std::uint64_t pos = 0, used = load(old->used); pos < used; ++pos) {
            const std::uint64_t e = load(oe[pos]);
            if (e == 0) continue;
            const std::uint64_t hash = heap_.entry(e).hash;
            std::uint64_t i = hash & (2 * cap - 1);
            while (idx[i] != kEmpty) i = (i + 1) & (2 * cap - 1);
            idx[i] = slot_for(hash, n);
            ent[n++] = e;
        }
    }
    t->used = n;
    t->live = n;
    t->tombs = 0;
    // Publish: one store switches every later holder to the whole new table.
    const std::uint64_t old_off = load(s_.table);
    os::fault_point("dict.rebuild.unpublished");
    store(s_.table, off);
    os::fault_point("dict.rebuild.published");
    heap_.free(old_off);
    return t;
}

std::uint64_t DictView::put(std::uint64_t hash, Bytes key, BlockGuard& e) {
    DictTable* t = table();
    Probe p{};
    if (t) {
        p = probe(heap_, t, index(t), entries(t), hash, key);
        if (p.found) {
            std::uint64_t& at = entries(t)[(load(index(t)[p.slot]) & kPosMask) - 2];
            const std::uint64_t old = load(at);
            store(at, e.release());  // publishes the new value
            os::fault_point("dict.replace.published");
            return old;
        }
    }
    // Room for one more slot: used + deleted slots stay under half the index.
    if (!t || load(t->used) + load(t->tombs) >= t->capacity) {
        t = rebuild(t);
        p = probe(heap_, t, index(t), entries(t), hash, key);
    }
    std::uint64_t* idx = index(t);
    const std::uint64_t pos = load(t->used);
    if (load(idx[p.slot]) == kDeleted) store(t->tombs, load(t->tombs) - 1);
    store(entries(t)[pos], e.release());
    store(idx[p.slot], slot_for(hash, pos));
    store(t->live, load(t->live) + 1);
    os::fault_point("dict.insert.unpublished");
    store(t->used, pos + 1);  // publishes it
    return 0;
}

std::uint64_t DictView::remove(std::uint64_t hash, Bytes key) noexcept {
    DictTable* t = table();
    if (!t) return 0;
    std::uint64_t* idx = index(t);
    const Probe p = probe(heap_, t, idx, entries(t), hash, key);
    if (!p.found) return 0;
    const std::uint64_t pos = (load(idx[p.slot]) & kPosMask) - 2;
    std::uint64_t& at = entries(t)[pos];
    const std::uint64_t e = load(at);
    store(idx[p.slot], kDeleted);
    store(t->tombs, load(t->tombs) + 1);
    store(t->live, load(t->live) - 1);
    os::fault_point("dict.remove.unpublished");
    store(at, 0);  // publishes the removal
    os::fault_point("dict.remove.published");
    // The last one (popitem): its position can be filled again.
    std::uint64_t used = load(t->used);
    while (used > 0 && load(entries(t)[used - 1]) == 0) store(t->used, --used);
    return e;
}

std::uint64_t DictView::last() const noexcept {
    const DictTable* t = table();
    if (!t) return 0;
    const std::uint64_t* ent = entries(t);
    for (std::uint64_t pos = load(t->used); pos > 0; --pos)
        if (const std::uint64_t e = load(ent[pos - 1])) return e;
    return 0;
}

void DictView::clear() noexcept {
    const std::uint64_t off = load(s_.table);
    if (off == 0) return;
    store(s_.table, 0);  // unlinks everything: a kill below only leaks
    os::fault_point("dict.clear.unlinked");
    const auto* t = heap_.at<DictTable>(off);
    const std::uint64_t* ent = entries(t);
    for (std::uint64_t pos = 0, n = load(t->used); pos < n; ++pos) heap_.free(load(ent[pos]));
    heap_.free(off);
}

void DictView::recover() noexcept {
    DictTable* t = table();
    if (!t) return;
    std::uint64_t* idx = index(t);
    const std::uint64_t* ent = entries(t);
    const std::uint64_t mask = 2 * t->capacity - 1;
    std::memset(idx, 0, (mask + 1) * sizeof(std::uint64_t));
    std::uint64_t live = 0;
    const std::uint64_t used = std::min(load(t->used), t->capacity);
    for (std::uint64_t pos = 0; pos < used; ++pos) {
        const std::uint64_t e = load(ent[pos]);
        if (e == 0) continue;
        const std::uint64_t hash = heap_.entry(e).hash;
        std::uint64_t i = hash & mask;
        while (idx[i] != kEmpty) i = (i + 1) & mask;
        idx[i] = slot_for(hash, pos);
        ++live;
        os::fault_point("dict.recover.midway");
    }
    store(t->live, live);
    store(t->tombs, 0);
}

void recover_dict(const Target& t) { DictView(t.heap, t.state<DictState>()).recover(); }

void dict_rewrite(const Target& t, Bytes key, const Rewriter& rewrite) {
    const std::uint64_t hash = hash_bytes(key);
    BlockGuard replaced(t.heap, 0);
    Locked g(t, recover_dict);
    DictView d(t.heap, t.state<DictState>());
    const std::uint64_t e = d.find(hash, key);
    const Bytes now = e ? t.heap.entry_value(e) : Bytes();
    const Bytes next = rewrite(e ? &now : nullptr);
    BlockGuard made(t.heap, t.heap.make_entry(hash, key, next));
    replaced.reset(d.put(hash, key, made));
}

// ---- the dict operations ------------------------------------------------------

namespace {
struct Dict {
    Locked lock;
    DictView view;
    explicit Dict(const Target& t) : lock(t, recover_dict), view(t.heap, t.state<DictState>()) {}
};
}  // namespace

std::uint64_t impl::dict_size(const Target& t) { return Dict(t).view.size(); }

void impl::dict_set(const Target& t, Bytes key, Bytes value) {
    const std::uint64_t hash = hash_bytes(key);
    BlockGuard e(t.heap, t.heap.make_entry(hash, key, value));
    // Freed after the Dict temporary (and its lock) is gone.
    BlockGuard replaced(t.heap, Dict(t).view.put(hash, key, e));
}

bool impl::dict_get(const Target& t, Bytes key, Sink value) {
    const std::uint64_t hash = hash_bytes(key);
    Dict d(t);
    const std::uint64_t e = d.view.find(hash, key);
    if (e == 0) return false;
    value(t.heap.entry_value(e));
    return true;
}

bool impl::dict_contains(const Target& t, Bytes key) {
    const std::uint64_t hash = hash_bytes(key);
    return Dict(t).view.find(hash, key) != 0;
}

bool impl::dict_erase(const Target& t, Bytes key) {
    const std::uint64_t hash = hash_bytes(key);
    const std::uint64_t e = Dict(t).view.remove(hash, key);
    t.heap.free(e);
    return e != 0;
}

bool impl::dict_pop(const Target& t, Bytes key, Sink value) {
    const std::uint64_t hash = hash_bytes(key);
    Dict d(t);
    const std::uint64_t e = d.view.find(hash, key);
    if (e == 0) return false;
    value(t.heap.entry_value(e));  // if this throws, the key stays
    t.heap.free(d.view.remove(hash, key));
    return true;
}

bool impl::dict_setdefault(const Target& t, Bytes key, Bytes value, Sink stored) {
    const std::uint64_t hash = hash_bytes(key);
    Dict d(t);
    if (const std::uint64_t e = d.view.find(hash, key)) {
        stored(t.heap.entry_value(e));
        return false;
    }
    BlockGuard e(t.heap, t.heap.make_entry(hash, key, value));
    const std::uint64_t off = e.get();
    t.heap.free(d.view.put(hash, key, e));  // 0: the key was absent
    stored(t.heap.entry_value(off));
    return true;
}

void impl::dict_update(const Target& t, BytesList keys, BytesList values) {
    if (keys.size() != values.size())
        throw ValueError("mproc dict update: " + std::to_string(keys.size()) + " keys but " +
                         std::to_string(values.size()) + " values");
    // The entries are made before the lock is taken (and freed if unused).
    std::vector<std::uint64_t> hashes(keys.size());
    std::vector<std::uint64_t> made;
    made.reserve(keys.size());
    struct FreeUnused {
        const Heap& heap;
        std::vector<std::uint64_t>& v;
        ~FreeUnused() {
            for (std::uint64_t e : v) heap.free(e);
        }
    } unused{t.heap, made};  // after the lock: the replaced ones too
    for (std::size_t i = 0; i < keys.size(); ++i) {
        hashes[i] = hash_bytes(keys[i]);
        made.push_back(t.heap.make_entry(hashes[i], keys[i], values[i]));
    }
    Dict d(t);
    for (std::size_t i = 0; i < keys.size(); ++i) {
        BlockGuard e(t.heap, std::exchange(made[i], 0));
        made[i] = d.view.put(hashes[i], keys[i], e);
    }
}

void impl::dict_items(const Target& t, Sink key_then_value) {
    Dict d(t);
    d.view.for_each([&](std::uint64_t e) {
        key_then_value(t.heap.entry_key(e));
        key_then_value(t.heap.entry_value(e));
    });
}

void impl::dict_keys(const Target& t, Sink key) {
    Dict d(t);
    d.view.for_each([&](std::uint64_t e) { key(t.heap.entry_key(e)); });
}

void impl::dict_values(const Target& t, Sink value) {
    Dict d(t);
    d.view.for_each([&](std::uint64_t e) { value(t.heap.entry_value(e)); });
}

void impl::dict_popitem(const Target& t, Sink key_then_value) {
    Dict d(t);
    const std::uint64_t e = d.view.last();
    if (e == 0) throw KeyError("mproc dict popitem(): dictionary is empty");
    const Bytes key = t.heap.entry_key(e);
    key_then_value(key);
    key_then_value(t.heap.entry_value(e));
    t.heap.free(d.view.remove(t.heap.entry(e).hash, key));
}

bool impl::dict_cas(const Target& t, Bytes key, bool present, Bytes expected, Bytes value, Sink now) {
    const std::uint64_t hash = hash_bytes(key);
    BlockGuard made(t.heap, t.heap.make_entry(hash, key, value));
    BlockGuard replaced(t.heap, 0);
    Dict d(t);
    const std::uint64_t e = d.view.find(hash, key);
    const bool match = present ? (e != 0 && same_bytes(t.heap.entry_value(e), expected)) : e == 0;
    if (!match) {
        if (e) now(t.heap.entry_value(e));
        return false;
    }
    replaced.reset(d.view.put(hash, key, made));
    return true;
}

void impl::dict_clear(const Target& t) { Dict(t).view.clear(); }

}  // namespace mproc::detail::mgr
