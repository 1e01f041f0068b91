// mproc::ShareableList<T>: Python's multiprocessing.shared_memory.ShareableList,
// a fixed-length list whose elements live in a SharedMemory segment, for a
// trivially copyable T or std::string. Included by <mproc/shared_memory.hpp>
// (after SharedMemory); see there for naming, tracking and handles.
//
// Layout (in the segment, so that attach() in another process, or a child
// that received the handle, checks what it maps): a 64-byte header — magic
// "MPSL", version, element kind, element size, a type tag, count, where the
// elements start, the element type's name — then the elements: for T, the
// array of T; for std::string, a table of slot offsets and then one slot per
// element {u32 length, u32 capacity, capacity bytes}. A slot's capacity is
// fixed when the list is made: by default Python's rule, each slot sized
// from its initial value, 8 * (length / 8 + 1) bytes (so "" and "seven77"
// get 8, "eight888" 16); with ShareableListOptions::capacity = C, every
// slot holds C bytes. Assigning a longer string is a ValueError, as in
// Python; the list never grows.
//
// The tag identifies the element type: for arithmetic types it is the same
// in every program (kind and size: "int64", "float64"), so unrelated
// programs can share a list of double; for other trivially copyable types it
// is a hash of the type's name, the same in every process of one build.
// attach() with another T is a SerializationError naming both types.
//
// Thread and process safety: as in Python, the elements are not
// synchronized. An element written while another process reads it may be
// seen half-written (a string slot's length is checked against its capacity
// on every read, so a torn or hostile write is a SerializationError, never a
// read outside the segment). Guard read-modify-write with a Lock. Nothing
// blocks. A peer's death loses nothing already written.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <new>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "mproc/detail/type_name.hpp"

namespace mproc {

struct ShareableListOptions {
    /// Bytes of every std::string slot; 0 = Python's rule, each slot sized
    /// from its initial value (8 * (length / 8 + 1)). An initial value
    /// longer than a fixed capacity is a ValueError.
    std::size_t capacity = 0;
    /// For create(name, ...): SharedMemoryOptions::track.
    bool track = true;
};

namespace detail {

/// What a list holds, as its header records it.
struct ListType {
    std::uint16_t kind = 0;  // kTrivialList or kStringList
    std::uint32_t size = 0;  // sizeof(T); 0 for strings
    std::uint32_t align = 1;
    std::uint32_t tag = 0;
    std::string_view name;
};
inline constexpr std::uint16_t kTrivialList = 1;
inline constexpr std::uint16_t kStringList = 2;

template <class T>
constexpr ListType list_type() {
    if constexpr (std::is_same_v<T, std::string>) {
        return {kStringList, 0, 1, 0x53545231u, "std::string"};
    } else {
        static_assert(std::is_trivially_copyable_v<T>,
                      "mproc::ShareableList<T> holds a trivially copyable T or std::string: the "
                      "bytes live in shared memory and every process reads them in place. Share "
                      "other types through a Queue or a Manager.");
        static_assert(alignof(T) <= 64, "over-aligned T is not supported");
        constexpr std::uint32_t sz = sizeof(T);
        if constexpr (std::is_same_v<T, bool>) return {kTrivialList, sz, alignof(T), 0x6200u | sz, "bool"};
        else if constexpr (std::is_same_v<T, char>) return {kTrivialList, sz, alignof(T), 0x6300u | sz, "char"};
        else if constexpr (std::is_floating_point_v<T>)
            return {kTrivialList, sz, alignof(T), 0x6600u | sz, type_name<T>()};
        else if constexpr (std::is_integral_v<T>)
            return {kTrivialList, sz, alignof(T), (std::is_signed_v<T> ? 0x6900u : 0x7500u) | sz, type_name<T>()};
        else
            return {kTrivialList, sz, alignof(T), type_hash<T>(), type_name<T>()};
    }
}

/// The non-template half of ShareableList: the layout in the segment, and
/// every check on it (lib/memory/shareable_list.cpp).
class ListCore {
public:
    /// Bytes a list of `count` elements of trivially copyable `type` takes.
    static std::size_t trivial_bytes(const ListType& type, std::size_t count);
    /// Bytes a list of strings with these slot capacities takes.
    static std::size_t string_bytes(std::span<const std::size_t> capacities);
    /// The capacity of string slot `i` whose initial value has `length`
    /// bytes: `fixed` if given (ValueError if length exceeds it), else
    /// Python's 8 * (length / 8 + 1).
    static std::size_t slot_capacity(std::size_t length, std::size_t fixed, std::size_t i);
    /// Writes the header (and for strings the slot table) into `shm`, which
    /// is at least as large as trivial_bytes / string_bytes said.
    static ListCore format(SharedMemory shm, const ListType& type, std::size_t count,
                           std::span<const std::size_t> capacities);
    /// Checks that `shm` holds a list of `type`: SerializationError if not.
    static ListCore open(SharedMemory shm, const ListType& type);
    [[noreturn]] static void throw_not_found();

    std::size_t size() const noexcept { return count_; }
    /// std::out_of_range unless i < size().
    void check_index(std::size_t i) const;
    /// Trivially copyable lists: the first element.
    std::byte* elements() const noexcept { return shm_.data() + data_offset_; }
    /// String lists: element i's bytes (valid until the slot is written).
    std::string_view get(std::size_t i) const;
    /// ValueError if v does not fit element i.
    void set(std::size_t i, std::string_view v) const;
    std::size_t capacity(std::size_t i) const;
    const SharedMemory& shm() const noexcept { return shm_; }
    struct Slot;

private:
    ListCore(SharedMemory shm, std::size_t count, std::size_t data_offset)
        : shm_(std::move(shm)), count_(count), data_offset_(data_offset) {}
    Slot slot(std::size_t i) const;

    SharedMemory shm_;
    std::size_t count_;
    std::size_t data_offset_;
};

}  // namespace detail

/// multiprocessing.shared_memory.ShareableList.
template <class T>
class ShareableList {
    static constexpr bool kStrings = std::is_same_v<T, std::string>;
    static constexpr detail::ListType kType = detail::list_type<T>();

public:
    class StringRef;
    class StringIterator;
    using value_type = T;
    /// T& for trivially copyable T; for std::string a proxy that reads and
    /// assigns the slot (convertible to std::string, comparable with one).
    using reference = std::conditional_t<kStrings, StringRef, T&>;
    using iterator = std::conditional_t<kStrings, StringIterator, T*>;

    /// An anonymous list (children share it; nothing to unlink).
    template <std::ranges::input_range R>
        requires(!std::is_same_v<std::remove_cvref_t<R>, ShareableList>)
    explicit ShareableList(R&& values, ShareableListOptions options = {})
        : ShareableList(make_in([](std::size_t bytes) { return SharedMemory(bytes); },
                                std::forward<R>(values), options)) {}
    ShareableList(std::initializer_list<T> values, ShareableListOptions options = {})
        : ShareableList(std::span<const T>(values.begin(), values.size()), options) {}

    /// ShareableList(sequence, name=name): a new named list (tracked unless
    /// options.track is false). OSError (EEXIST) if the name exists.
    template <std::ranges::input_range R>
    static ShareableList create(const std::string& name, R&& values, ShareableListOptions options = {}) {
        return make_in(
            [&](std::size_t bytes) {
                return SharedMemory::create(name, bytes, SharedMemoryOptions{.track = options.track});
            },
            std::forward<R>(values), options);
    }
    static ShareableList create(const std::string& name, std::initializer_list<T> values,
                                ShareableListOptions options = {}) {
        return create(name, std::span<const T>(values.begin(), values.size()), options);
    }
    /// ShareableList(name=name): the list another process made. OSError
    /// (ENOENT) if missing; SerializationError if it is not a list of T.
    static ShareableList attach(const std::string& name) { return attach(SharedMemory::attach(name)); }
    /// The list that `shm` holds (SerializationError if it holds none of T).
    static ShareableList attach(SharedMemory shm) { return ShareableList(detail::ListCore::open(std::move(shm), kType)); }

    /// Builds a list in the memory `make(bytes)` returns (a SharedMemory of
    /// at least that size): how SharedMemoryManager makes its lists.
    template <class Make, std::ranges::input_range R>
    static ShareableList make_in(Make&& make, R&& values, ShareableListOptions options) {
        if constexpr (kStrings) {
            std::vector<std::string> v;
            for (auto&& x : values) v.emplace_back(std::forward<decltype(x)>(x));
            std::vector<std::size_t> caps;
            caps.reserve(v.size());
            for (std::size_t i = 0; i < v.size(); ++i)
                caps.push_back(detail::ListCore::slot_capacity(v[i].size(), options.capacity, i));
            detail::ListCore core = detail::ListCore::format(make(detail::ListCore::string_bytes(caps)), kType, v.size(), caps);
            for (std::size_t i = 0; i < v.size(); ++i) core.set(i, v[i]);
            return ShareableList(std::move(core));
        } else if constexpr (std::ranges::forward_range<R>) {
            const auto n = static_cast<std::size_t>(std::ranges::distance(values));
            detail::ListCore core = detail::ListCore::format(make(detail::ListCore::trivial_bytes(kType, n)), kType, n, {});
            T* out = elements(core);
            for (auto&& x : values) *out++ = static_cast<T>(x);
            return ShareableList(std::move(core));
        } else {
            std::vector<T> v;
            for (auto&& x : values) v.push_back(static_cast<T>(x));
            return make_in(std::forward<Make>(make), v, options);
        }
    }

    std::size_t size() const noexcept { return core_.size(); }
    /// std::out_of_range past the end (Python's IndexError).
    reference operator[](std::size_t i) const {
        core_.check_index(i);
        if constexpr (kStrings) return StringRef(&core_, i);
        else return elements(core_)[i];
    }
    iterator begin() const noexcept {
        if constexpr (kStrings) return StringIterator(&core_, 0);
        else return elements(core_);
    }
    iterator end() const noexcept {
        if constexpr (kStrings) return StringIterator(&core_, size());
        else return elements(core_) + size();
    }

    /// How many elements equal v.
    std::size_t count(const T& v) const
        requires std::equality_comparable<T>
    {
        std::size_t n = 0;
        for (std::size_t i = 0; i < size(); ++i) n += equals(i, v) ? 1 : 0;
        return n;
    }
    /// The first position of v; ValueError if it is not in the list.
    std::size_t index(const T& v) const
        requires std::equality_comparable<T>
    {
        for (std::size_t i = 0; i < size(); ++i)
            if (equals(i, v)) return i;
        detail::ListCore::throw_not_found();
    }
    /// Bytes element i can hold (strings only).
    std::size_t capacity(std::size_t i) const
        requires kStrings
    {
        return core_.capacity(i);
    }

    /// The segment's name (Python's sl.shm.name); empty if anonymous.
    const std::string& name() const noexcept { return core_.shm().name(); }
    /// The segment (Python's sl.shm): unlink() it to remove a named list.
    const SharedMemory& shm() const noexcept { return core_.shm(); }

    void mproc_export(detail::HandleWriter& w) const { core_.shm().mproc_export(w); }
    static ShareableList mproc_import(detail::HandleReader& r) { return attach(SharedMemory::mproc_import(r)); }

    /// One string element, read and written in place.
    class StringRef {
    public:
        operator std::string() const { return str(); }
        std::string str() const { return std::string(core_->get(i_)); }
        /// ValueError if v is longer than the slot's capacity.
        const StringRef& operator=(std::string_view v) const {
            core_->set(i_, v);
            return *this;
        }
        const StringRef& operator=(const StringRef& o) const { return *this = std::string_view(o.str()); }
        std::size_t capacity() const { return core_->capacity(i_); }
        friend bool operator==(const StringRef& a, std::string_view b) { return a.core_->get(a.i_) == b; }

    private:
        friend class ShareableList;
        StringRef(const detail::ListCore* core, std::size_t i) : core_(core), i_(i) {}
        const detail::ListCore* core_;
        std::size_t i_;
    };

    class StringIterator {
    public:
        using value_type = std::string;
        using reference = StringRef;
        using difference_type = std::ptrdiff_t;
        using iterator_category = std::input_iterator_tag;
        StringIterator() = default;
        StringRef operator*() const { return StringRef(core_, i_); }
        StringIterator& operator++() {
            ++i_;
            return *this;
        }
        StringIterator operator++(int) {
            StringIterator old = *this;
            ++i_;
            return old;
        }
        bool operator==(const StringIterator& o) const = default;

    private:
        friend class ShareableList;
        StringIterator(const detail::ListCore* core, std::size_t i) : core_(core), i_(i) {}
        const detail::ListCore* core_ = nullptr;
        std::size_t i_ = 0;
    };

private:
    explicit ShareableList(detail::ListCore core) : core_(std::move(core)) {}
    static T* elements(const detail::ListCore& core) noexcept {
        return std::launder(reinterpret_cast<T*>(core.elements()));
    }
    bool equals(std::size_t i, const T& v) const {
        if constexpr (kStrings) return core_.get(i) == v;
        else return elements(core_)[i] == v;
    }

    detail::ListCore core_;
};

}  // namespace mproc
