// ShareableList's layout and checks. See include/mproc/detail/shareable_list.hpp.
//
// Every number read from the segment is checked against the segment's size
// as this process mapped it before it is used as an offset: the header once
// at open(), a string slot's offset, capacity and length on every access
// (another process may write them at any time).
#include "mproc/shared_memory.hpp"

#include <atomic>
#include <cstring>
#include <limits>
#include <stdexcept>

namespace mproc::detail {

namespace {

constexpr std::uint32_t kListMagic = 0x4c53504d;  // "MPSL"
constexpr std::uint16_t kListVersion = 1;

struct ListHeader {
    std::uint32_t magic;
    std::uint16_t version;
    std::uint16_t kind;
    std::uint32_t elem_size;
    std::uint32_t tag;
    std::uint64_t count;
    std::uint64_t data_offset;  // trivially copyable: first element; strings: the slot table
    char type_name[32];
};
static_assert(sizeof(ListHeader) == 64);

constexpr std::size_t kHeaderBytes = sizeof(ListHeader);
constexpr std::size_t kSlotHeader = 8;  // u32 length, u32 capacity

std::size_t round8(std::size_t n) { return (n + 7) & ~std::size_t{7}; }

// a * b + c, or a ValueError if that does not fit a size_t.
std::size_t checked_size(std::size_t a, std::size_t b, std::size_t c) {
    if (b != 0 && a > (std::numeric_limits<std::size_t>::max() - c) / b)
        throw ValueError("ShareableList: too many elements for one shared memory segment");
    return a * b + c;
}

std::string held_type(const ListHeader& h) {
    if (h.kind == kStringList) return "std::string";
    std::size_t n = 0;
    while (n < sizeof h.type_name && h.type_name[n] != '\0') ++n;
    return std::string(h.type_name, n);
}

[[noreturn]] void bad_list(const SharedMemory& shm, const std::string& why) {
    throw SerializationError("ShareableList" + (shm.name().empty() ? std::string() : " \"" + shm.name() + "\"") +
                             ": " + why);
}

}  // namespace

struct ListCore::Slot {
    std::byte* at;  // {u32 length, u32 capacity, bytes}, 4-aligned
    std::uint32_t capacity;
};

namespace {
std::atomic_ref<std::uint32_t> length(const ListCore::Slot& s) {
    return std::atomic_ref<std::uint32_t>(*std::launder(reinterpret_cast<std::uint32_t*>(s.at)));
}
}  // namespace

std::size_t ListCore::trivial_bytes(const ListType& type, std::size_t count) {
    return checked_size(count, type.size, kHeaderBytes);
}

std::size_t ListCore::string_bytes(std::span<const std::size_t> capacities) {
    std::size_t total = checked_size(capacities.size(), 8, kHeaderBytes);
    for (std::size_t c : capacities) total = checked_size(1, round8(kSlotHeader + c), total);
    return total;
}

std::size_t ListCore::slot_capacity(std::size_t length, std::size_t fixed, std::size_t i) {
    std::size_t cap = fixed != 0 ? fixed : 8 * (length / 8 + 1);
    if (length > cap)
        throw ValueError("ShareableList: element " + std::to_string(i) + " has " + std::to_string(length) +
                         " bytes, more than the capacity of " + std::to_string(fixed) + " asked for");
    if (cap > std::numeric_limits<std::uint32_t>::max() - 16)
        throw ValueError("ShareableList: a string slot holds at most 4 GiB");
    return cap;
}

ListCore ListCore::format(SharedMemory shm, const ListType& type, std::size_t count,
                          std::span<const std::size_t> capacities) {
    ListHeader h{};
    h.magic = kListMagic;
    h.version = kListVersion;
    h.kind = type.kind;
    h.elem_size = type.size;
    h.tag = type.tag;
    h.count = count;
    h.data_offset = kHeaderBytes;  // alignof(T) <= 64, and segments are page-aligned
    std::memcpy(h.type_name, type.name.data(), std::min(type.name.size(), sizeof h.type_name - 1));
    std::byte* base = shm.data();
    if (type.kind == kStringList) {
        std::size_t at = kHeaderBytes + 8 * count;
        for (std::size_t i = 0; i < count; ++i) {
            const std::uint64_t off = at;
            const std::uint32_t zero = 0, cap = static_cast<std::uint32_t>(capacities[i]);
            std::memcpy(base + kHeaderBytes + 8 * i, &off, 8);
            std::memcpy(base + at, &zero, 4);
            std::memcpy(base + at + 4, &cap, 4);
            at += round8(kSlotHeader + capacities[i]);
        }
    }
    std::memcpy(base, &h, sizeof h);
    return ListCore(std::move(shm), count, h.data_offset);
}

ListCore ListCore::open(SharedMemory shm, const ListType& type) {
    const std::size_t bytes = shm.size();
    ListHeader h{};
    if (bytes < kHeaderBytes) bad_list(shm, "the segment is too small to hold a list");
    std::memcpy(&h, shm.data(), sizeof h);
    if (h.magic != kListMagic) bad_list(shm, "the segment does not hold a ShareableList");
    if (h.version != kListVersion)
        bad_list(shm, "made by another version of mproc (layout " + std::to_string(h.version) + ")");
    if (h.kind != type.kind || h.tag != type.tag || h.elem_size != type.size)
        bad_list(shm, "it holds " + held_type(h) + ", not " + std::string(type.name) +
                          ": attach it as ShareableList<" + held_type(h) + ">");
    if (h.data_offset < kHeaderBytes || h.data_offset > bytes || h.data_offset % std::max<std::uint32_t>(type.align, 1) != 0)
        bad_list(shm, "its header is corrupt (element offset " + std::to_string(h.data_offset) + ")");
    const std::size_t room = bytes - h.data_offset;
    const std::size_t per = type.kind == kStringList ? 8 : type.size;
    if (per != 0 && h.count > room / per)
        bad_list(shm, "its header is corrupt (" + std::to_string(h.count) + " elements in " +
                          std::to_string(bytes) + " bytes)");
    ListCore core(std::move(shm), h.count, h.data_offset);
    if (type.kind == kStringList)
        for (std::size_t i = 0; i < core.count_; ++i) core.slot(i);  // throws on a bad slot
    return core;
}

void ListCore::throw_not_found() { throw ValueError("ShareableList.index(x): x not in list"); }

void ListCore::check_index(std::size_t i) const {
    if (i >= count_)
        throw std::out_of_range("ShareableList index " + std::to_string(i) + " out of range (size " +
                                std::to_string(count_) + ")");
}

ListCore::Slot ListCore::slot(std::size_t i) const {
    check_index(i);
    std::byte* base = shm_.data();
    const std::size_t bytes = shm_.size();
    std::uint64_t off;
    std::memcpy(&off, base + data_offset_ + 8 * i, 8);
    std::uint32_t cap;
    if (off < data_offset_ + 8 * count_ || off > bytes - kSlotHeader || off % 4 != 0 ||
        (std::memcpy(&cap, base + off + 4, 4), cap > bytes - kSlotHeader - off))
        bad_list(shm_, "string slot " + std::to_string(i) + " lies outside the segment");
    return Slot{base + off, cap};
}

std::string_view ListCore::get(std::size_t i) const {
    Slot s = slot(i);
    const std::uint32_t len = length(s).load(std::memory_order_acquire);
    if (len > s.capacity)
        bad_list(shm_, "string slot " + std::to_string(i) + " says " + std::to_string(len) +
                           " bytes, more than its capacity of " + std::to_string(s.capacity));
    return {reinterpret_cast<const char*>(s.at + kSlotHeader), len};
}

void ListCore::set(std::size_t i, std::string_view v) const {
    Slot s = slot(i);
    if (v.size() > s.capacity)
        throw ValueError("ShareableList: a string of " + std::to_string(v.size()) + " bytes does not fit element " +
                         std::to_string(i) + ", which holds at most " + std::to_string(s.capacity) +
                         " (fixed when the list was made; use ShareableListOptions::capacity for more)");
    // Bytes first, then the length (release; get() loads it with acquire):
    // a reader never sees a length past what was written. It may see old
    // and new bytes mixed, as in Python.
    std::memcpy(s.at + kSlotHeader, v.data(), v.size());
    length(s).store(static_cast<std::uint32_t>(v.size()), std::memory_order_release);
}

std::size_t ListCore::capacity(std::size_t i) const { return slot(i).capacity; }

}  // namespace mproc::detail
