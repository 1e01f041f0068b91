// mproc::detail codecs: how each kind of type (serialize_traits.hpp) is
// written to an OutBuf and read back from an InBuf, and the entry points the
// channel layers use to serialize straight into shared memory.
//
// Encoding (after the 8-byte header, see serialize_buffers.hpp):
//   raw-byte types      their object representation, sizeof(T) bytes
//   bool                one byte, 0 or 1 (anything else is rejected)
//   lengths, indices    unsigned LEB128 varints
//   string, vector<raw> length, then the elements' bytes in one block
//   other sequences     length, then each element
//   ordered maps, sets  length, then each key (and value), last first (so
//                       the load inserts each at the front: one comparison)
//   hash maps, sets     length, then each key (and value), in iteration order
//   optional            0 or 1, then the value
//   variant             the index, then the alternative
//   pair, tuple, array  each element in order
//   handles             the HandleWriter's refs and values
//   function pointers   a FunctionRef (module, identity, offset, signature,
//                       code check)
//   user types          whatever their serialize() writes through the archive
//
// Loading checks every length against the bytes that remain before it
// allocates (a length claiming 2^60 elements fails at once), every bool,
// optional flag and variant index, and the nesting depth of user types.
// What a container reserves before its elements are decoded comes out of
// the load's bounded allowance (Speculation, serialize_archive.hpp), so no
// claim makes a load hold more than a constant times its input beyond what
// the decoded elements need. Elements go through the shared loops of
// serialize_flat.hpp (a fast path for runs of simple elements).
//
// Thread safety: codecs are stateless; a Writer/Reader is per call. Nothing
// here blocks.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <forward_list>
#include <iterator>
#include <list>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "mproc/detail/function_ref.hpp"
#include "mproc/detail/segment.hpp"
#include "mproc/detail/serialize_archive.hpp"
#include "mproc/detail/serialize_buffers.hpp"
#include "mproc/detail/serialize_flat.hpp"
#include "mproc/detail/serialize_traits.hpp"

namespace mproc::detail {

template <class T>
using codec_t = Codec<std::remove_cv_t<T>>;

template <class T>
constexpr void diagnose_one() {
    if constexpr (!codec_t<T>::ok) codec_t<T>::diagnose();
}

template <class T>
inline constexpr bool is_raw_v = kind_of<std::remove_cv_t<T>>() == Kind::bitwise;

// ---- kinds ----------------------------------------------------------------

/// Types that cannot be serialized: only diagnose() is usable, and it is a
/// static_assert that names the type and says why.
template <class T, Kind K>
struct Codec {
    static constexpr bool ok = false;
    static constexpr std::size_t min_size = 0;
    static constexpr void diagnose() { (void)sizeof(cannot_serialize<T>); }
};

template <class T>
struct Codec<T, Kind::bitwise> {
    static constexpr bool ok = true;
    static constexpr std::size_t min_size = sizeof(T);

    static void save(Writer& w, const T& v) { w.out().write(std::addressof(v), sizeof(T)); }
    static void load_into(Reader& r, T& v) { r.in().read(std::addressof(v), sizeof(T)); }
    static T load(Reader& r) {
        if constexpr (std::is_default_constructible_v<T>) {
            T v{};
            load_into(r, v);
            return v;
        } else {
            std::array<std::byte, sizeof(T)> b;
            r.in().read(b.data(), b.size());
            return std::bit_cast<T>(b);
        }
    }
};

template <class T>
struct Codec<T, Kind::boolean> {
    static constexpr bool ok = true;
    static constexpr std::size_t min_size = 1;

    static void save(Writer& w, bool v) { w.out().put_byte(v ? 1 : 0); }
    static bool load(Reader& r) {
        std::uint8_t b = r.in().get_byte();
        if (b > 1) throw_bad_data("a bool byte that is neither 0 nor 1");
        return b == 1;
    }
    static void load_into(Reader& r, bool& v) { v = load(r); }
};

/// An mproc handle: what its mproc_export writes, re-attached on load by
/// its mproc_import (which checks that the segments' fds are here).
template <class T>
struct Codec<T, Kind::handle> {
    static constexpr bool ok = true;
    static constexpr std::size_t min_size = 2;
    static constexpr std::size_t kRefSize = 4 + 4 * 8 + 4;

    static void save(Writer& w, const T& v) {
        HandleWriter hw;
        v.mproc_export(hw);
        OutBuf& out = w.out();
        out.put_varint(hw.refs.size());
        for (const HandleRef& ref : hw.refs) {
            out.write(&ref.fd, sizeof ref.fd);
            out.write(&ref.dev, sizeof ref.dev);
            out.write(&ref.ino, sizeof ref.ino);
            out.write(&ref.size, sizeof ref.size);
            out.write(&ref.offset, sizeof ref.offset);
            out.write(&ref.pid, sizeof ref.pid);
        }
        out.put_varint(hw.values.size());
        for (std::uint64_t x : hw.values) out.put_varint(x);
    }
    static T load(Reader& r) {
        InBuf& in = r.in();
        std::uint64_t n = in.get_varint();
        in.check_count(n, kRefSize);
        std::vector<HandleRef> refs;
        Speculation refs_room(r, n, sizeof(HandleRef));
        refs.reserve(refs_room.count());
        for (std::uint64_t i = 0; i < n; ++i) {
            HandleRef& ref = refs.emplace_back();
            in.read(&ref.fd, sizeof ref.fd);
            in.read(&ref.dev, sizeof ref.dev);
            in.read(&ref.ino, sizeof ref.ino);
            in.read(&ref.size, sizeof ref.size);
            in.read(&ref.offset, sizeof ref.offset);
            in.read(&ref.pid, sizeof ref.pid);
        }
        std::uint64_t m = in.get_varint();
        in.check_count(m, 1);
        std::vector<std::uint64_t> values;
        Speculation values_room(r, m, sizeof(std::uint64_t));
        values.reserve(values_room.count());
        for (std::uint64_t i = 0; i < m; ++i) values.push_back(in.get_varint());
        HandleReader hr(refs, values);
        return T::mproc_import(hr);
    }
    static void load_into(Reader& r, T& v) { v = load(r); }
};

/// A user type with a Boost.Serialization serialize(), called directly with
/// mproc's archive and the type's BOOST_CLASS_VERSION.
template <class T>
struct Codec<T, Kind::boost> {
    static constexpr bool ok = true;
    static constexpr std::size_t min_size = 0;
    static constexpr unsigned version = boost::serialization::version<T>::value;

    static void save(Writer& w, const T& v) {
        DepthGuard<Writer> g(w);
        // Boost's own convention: one serialize() for both directions.
        boost::serialization::serialize_adl(w.archive(), const_cast<T&>(v), version);
    }
    static void load_into(Reader& r, T& v) {
        DepthGuard<Reader> g(r);
        boost::serialization::serialize_adl(r.archive(), v, version);
    }
    static T load(Reader& r) {
        if constexpr (std::is_default_constructible_v<T>) {
            T v{};
            load_into(r, v);
            return v;
        } else {
            // A default constructor Boost may reach (private, with
            // `friend class boost::serialization::access`).
            alignas(T) std::byte storage[sizeof(T)];
            T* p = reinterpret_cast<T*>(storage);
            boost::serialization::access::construct(p);
            struct Destroy {
                T* p;
                ~Destroy() { p->~T(); }
            } destroy{p};
            load_into(r, *p);
            return std::move(*p);
        }
    }
};

template <class T>
struct Codec<T, Kind::structural> : StdCodec<T> {};

}  // namespace mproc::detail

// ---- std types: serialize_std.hpp ------------------------------------------
#include "mproc/detail/serialize_std.hpp"

namespace mproc::detail {

// ---- entry points ---------------------------------------------------------

/// True if T is copied as its raw bytes (one memcpy each way, no archive):
/// numbers, enums, trivially copyable structs without a serialize(), and
/// std::arrays of those. Never true for mproc handles.
template <class T>
inline constexpr bool is_bitwise_v = is_raw_v<T>;
template <class T>
struct is_bitwise : std::bool_constant<is_bitwise_v<T>> {};

/// The exact size of dump_to's / dumps' output for a bitwise T.
template <class T>
    requires is_bitwise_v<T>
inline constexpr std::size_t bitwise_encoded_size = kHeaderSize + sizeof(T);

/// Rethrows the exception being handled as a SerializationError naming
/// `type` (Boost archive errors, bad_alloc and length_error from corrupt
/// lengths, user serialize() exceptions); mproc::Error passes unchanged.
[[noreturn]] void rethrow_as_serialization_error(std::string_view what, std::string_view type);

/// Writes the header and the encoding of `v` to `out`.
template <class T>
void dump_to(OutBuf& out, const T& v) {
    using U = std::remove_cv_t<T>;
    if constexpr (!Codec<U>::ok) {
        Codec<U>::diagnose();
    } else {
        write_header(out, type_hash<U>());
        if constexpr (is_raw_v<U>) {
            out.write(std::addressof(v), sizeof(U));
        } else {
            Writer w(out);
            try {
                Codec<U>::save(w, v);
            } catch (const boost::archive::archive_exception&) {
                rethrow_as_serialization_error("mproc::dumps", type_name<U>());
            }
        }
    }
}

/// The same into any std::streambuf (an OutBuf is written to directly,
/// any other through a small buffer that is flushed before returning).
template <class T>
void dump_to(std::streambuf& sb, const T& v) {
    if (auto* direct = dynamic_cast<OutBuf*>(&sb)) {
        dump_to(*direct, v);
    } else {
        StreambufOutBuf out(sb);
        dump_to(out, v);
        out.finish();
    }
}

/// The number of bytes dump_to would write for `v`.
template <class T>
std::size_t encoded_size(const T& v) {
    if constexpr (is_bitwise_v<T>) {
        return bitwise_encoded_size<T>;
    } else {
        CountingOutBuf out;
        dump_to(out, v);
        return out.written();
    }
}

/// Reads one encoded T from `in` (header included) and leaves the rest of
/// the input unread. SerializationError on any bad bytes.
template <class T>
auto load_from(InBuf& in) {
    using U = std::remove_cv_t<T>;
    if constexpr (!Codec<U>::ok) {
        Codec<U>::diagnose();
    } else {
        try {
            read_header(in, type_hash<U>(), type_name<U>());
            Reader r(in);
            return Codec<U>::load(r);
        } catch (...) {
            rethrow_as_serialization_error("mproc::loads", type_name<U>());
        }
    }
}

[[noreturn]] void throw_trailing_bytes(std::size_t n, std::string_view type);

/// Loads a T that must fill `bytes` exactly (trailing bytes are an error).
template <class T>
auto load_from(std::span<const std::byte> bytes) {
    using U = std::remove_cv_t<T>;
    if constexpr (!Codec<U>::ok) {
        Codec<U>::diagnose();
    } else {
        InBuf in(bytes);
        U v = load_from<U>(in);
        if (in.remaining() != 0) throw_trailing_bytes(in.remaining(), type_name<U>());
        return v;
    }
}

/// A size to allocate before dumping `v`: exact for strings and vectors of
/// raw elements, a guess otherwise.
template <class T>
std::size_t size_estimate(const T& v) {
    if constexpr (is_bitwise_v<T>) {
        return bitwise_encoded_size<T>;
    } else if constexpr (requires { v.size(); v.data(); typename T::value_type; }) {
        if constexpr (is_raw_v<typename T::value_type>)
            return kHeaderSize + 10 + v.size() * sizeof(typename T::value_type);
        else
            return kHeaderSize + 16 * v.size();
    } else if constexpr (requires { v.size(); }) {
        return kHeaderSize + 16 * v.size();
    } else {
        return 256;
    }
}

}  // namespace mproc::detail
