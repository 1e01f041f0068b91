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
//   maps, sets          length, then each key (and value), in iteration order
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
//
// Thread safety: codecs are stateless; a Writer/Reader is per call. Nothing
// here blocks.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <deque>
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
        std::vector<HandleRef> refs(static_cast<std::size_t>(n));
        for (HandleRef& ref : refs) {
            in.read(&ref.fd, sizeof ref.fd);
            in.read(&ref.dev, sizeof ref.dev);
            in.read(&ref.ino, sizeof ref.ino);
            in.read(&ref.size, sizeof ref.size);
            in.read(&ref.offset, sizeof ref.offset);
            in.read(&ref.pid, sizeof ref.pid);
        }
        std::uint64_t m = in.get_varint();
        in.check_count(m, 1);
        std::vector<std::uint64_t> values(static_cast<std::size_t>(m));
        for (std::uint64_t& x : values) x = in.get_varint();
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

// ---- std types ------------------------------------------------------------

/// Shared by the std codecs: load_into by assignment.
template <class T, class Self>
struct LoadInto {
    static constexpr bool defined = true;
    static void load_into(Reader& r, T& v) { v = Self::load(r); }
};

template <class C, class Tr, class A>
struct StdCodec<std::basic_string<C, Tr, A>>
    : LoadInto<std::basic_string<C, Tr, A>, StdCodec<std::basic_string<C, Tr, A>>> {
    using T = std::basic_string<C, Tr, A>;
    static constexpr bool ok = is_raw_v<C>;
    static constexpr std::size_t min_size = 1;
    static constexpr void diagnose() { diagnose_one<C>(); }

    static void save(Writer& w, const T& s) {
        w.out().put_varint(s.size());
        w.out().write(s.data(), s.size() * sizeof(C));
    }
    static T load(Reader& r) {
        InBuf& in = r.in();
        std::uint64_t n = in.get_varint();
        in.check_count(n, sizeof(C));
        if constexpr (std::is_same_v<C, char> || std::is_same_v<C, unsigned char>) {
            if (const std::byte* p = in.contiguous(static_cast<std::size_t>(n)))
                return T(reinterpret_cast<const C*>(p), static_cast<std::size_t>(n));
        }
        T s(static_cast<std::size_t>(n), C{});
        in.read(s.data(), s.size() * sizeof(C));
        return s;
    }
};

template <>
struct StdCodec<FunctionRef> : LoadInto<FunctionRef, StdCodec<FunctionRef>> {
    using T = FunctionRef;
    static constexpr bool ok = true;
    static constexpr std::size_t min_size = 2 + 8 + 4 + 4;
    static constexpr void diagnose() {}

    static void save(Writer& w, const T& f) {
        codec_t<std::string>::save(w, f.module);
        codec_t<std::string>::save(w, f.identity);
        w.out().write(&f.offset, sizeof f.offset);
        w.out().write(&f.signature, sizeof f.signature);
        w.out().write(&f.code_check, sizeof f.code_check);
    }
    static T load(Reader& r) {
        T f;
        f.module = codec_t<std::string>::load(r);
        f.identity = codec_t<std::string>::load(r);
        r.in().read(&f.offset, sizeof f.offset);
        r.in().read(&f.signature, sizeof f.signature);
        r.in().read(&f.code_check, sizeof f.code_check);
        return f;
    }
};

/// A function pointer, by reference (function_ref.hpp).
template <class T>
struct Codec<T, Kind::function> {
    static constexpr bool ok = true;
    static constexpr std::size_t min_size = 4;

    static void save(Writer& w, T fn) { codec_t<FunctionRef>::save(w, encode_function(fn)); }
    static T load(Reader& r) { return resolve_function<T>(codec_t<FunctionRef>::load(r)); }
    static void load_into(Reader& r, T& v) { v = load(r); }
};

template <class E, class A>
struct StdCodec<std::vector<E, A>> : LoadInto<std::vector<E, A>, StdCodec<std::vector<E, A>>> {
    using T = std::vector<E, A>;
    static constexpr bool ok = codec_t<E>::ok;
    static constexpr std::size_t min_size = 1;
    static constexpr void diagnose() { diagnose_one<E>(); }

    static void save(Writer& w, const T& v) {
        w.out().put_varint(v.size());
        if constexpr (is_raw_v<E>) {
            w.out().write(v.data(), v.size() * sizeof(E));
        } else {
            for (const E& e : v) codec_t<E>::save(w, e);
        }
    }
    static T load(Reader& r) {
        InBuf& in = r.in();
        std::uint64_t n = in.get_varint();
        in.check_count(n, codec_t<E>::min_size);
        T v;
        if constexpr (is_raw_v<E> && std::is_default_constructible_v<E>) {
            v.resize(static_cast<std::size_t>(n));
            in.read(v.data(), v.size() * sizeof(E));
        } else {
            v.reserve(static_cast<std::size_t>(n));
            for (std::uint64_t i = 0; i < n; ++i) v.push_back(codec_t<E>::load(r));
        }
        return v;
    }
};

/// vector<bool>: packed 8 to a byte, unused bits zero.
template <class A>
struct StdCodec<std::vector<bool, A>> : LoadInto<std::vector<bool, A>, StdCodec<std::vector<bool, A>>> {
    using T = std::vector<bool, A>;
    static constexpr bool ok = true;
    static constexpr std::size_t min_size = 1;
    static constexpr void diagnose() {}

    static void save(Writer& w, const T& v) {
        w.out().put_varint(v.size());
        std::uint8_t byte = 0;
        for (std::size_t i = 0; i < v.size(); ++i) {
            if (v[i]) byte |= static_cast<std::uint8_t>(1u << (i % 8));
            if (i % 8 == 7) {
                w.out().put_byte(byte);
                byte = 0;
            }
        }
        if (v.size() % 8 != 0) w.out().put_byte(byte);
    }
    static T load(Reader& r) {
        InBuf& in = r.in();
        std::uint64_t n = in.get_varint();
        in.check_count(n / 8 + (n % 8 != 0), 1);
        T v(static_cast<std::size_t>(n));
        std::uint8_t byte = 0;
        for (std::size_t i = 0; i < v.size(); ++i) {
            if (i % 8 == 0) byte = in.get_byte();
            v[i] = (byte >> (i % 8)) & 1u;
        }
        if (n % 8 != 0 && (byte >> (n % 8)) != 0) throw_bad_data("vector<bool> padding bits set");
        return v;
    }
};

template <class E, std::size_t N>
struct StdCodec<std::array<E, N>> : LoadInto<std::array<E, N>, StdCodec<std::array<E, N>>> {
    using T = std::array<E, N>;
    static constexpr bool ok = codec_t<E>::ok;
    static constexpr std::size_t min_size = N * codec_t<E>::min_size;
    static constexpr void diagnose() { diagnose_one<E>(); }

    static void save(Writer& w, const T& a) {
        for (const E& e : a) codec_t<E>::save(w, e);
    }
    static T load(Reader& r) {
        if constexpr (std::is_default_constructible_v<E>) {
            T a{};
            for (E& e : a) codec_t<E>::load_into(r, e);
            return a;
        } else {
            return [&]<std::size_t... I>(std::index_sequence<I...>) {
                return T{(static_cast<void>(I), codec_t<E>::load(r))...};  // braces: in order
            }(std::make_index_sequence<N>{});
        }
    }
};

template <class A, class B>
struct StdCodec<std::pair<A, B>> : LoadInto<std::pair<A, B>, StdCodec<std::pair<A, B>>> {
    using T = std::pair<A, B>;
    static constexpr bool ok = codec_t<A>::ok && codec_t<B>::ok;
    static constexpr std::size_t min_size = codec_t<A>::min_size + codec_t<B>::min_size;
    static constexpr void diagnose() {
        diagnose_one<A>();
        diagnose_one<B>();
    }

    static void save(Writer& w, const T& p) {
        codec_t<A>::save(w, p.first);
        codec_t<B>::save(w, p.second);
    }
    static T load(Reader& r) { return T{codec_t<A>::load(r), codec_t<B>::load(r)}; }
};

template <class... Es>
struct StdCodec<std::tuple<Es...>> : LoadInto<std::tuple<Es...>, StdCodec<std::tuple<Es...>>> {
    using T = std::tuple<Es...>;
    static constexpr bool ok = (codec_t<Es>::ok && ...);
    static constexpr std::size_t min_size = (std::size_t{0} + ... + codec_t<Es>::min_size);
    static constexpr void diagnose() { (diagnose_one<Es>(), ...); }

    static void save(Writer& w, const T& t) {
        std::apply([&](const auto&... e) { (codec_t<Es>::save(w, e), ...); }, t);
    }
    static T load([[maybe_unused]] Reader& r) { return T{codec_t<Es>::load(r)...}; }
};

template <class E>
struct StdCodec<std::optional<E>> : LoadInto<std::optional<E>, StdCodec<std::optional<E>>> {
    using T = std::optional<E>;
    static constexpr bool ok = codec_t<E>::ok;
    static constexpr std::size_t min_size = 1;
    static constexpr void diagnose() { diagnose_one<E>(); }

    static void save(Writer& w, const T& o) {
        w.out().put_byte(o ? 1 : 0);
        if (o) codec_t<E>::save(w, *o);
    }
    static T load(Reader& r) {
        std::uint8_t flag = r.in().get_byte();
        if (flag == 0) return std::nullopt;
        if (flag != 1) throw_bad_data("an optional flag that is neither 0 nor 1");
        return T(std::in_place, codec_t<E>::load(r));
    }
};

[[noreturn]] void throw_valueless_variant();

template <class... Es>
struct StdCodec<std::variant<Es...>> : LoadInto<std::variant<Es...>, StdCodec<std::variant<Es...>>> {
    using T = std::variant<Es...>;
    static constexpr bool ok = (codec_t<Es>::ok && ...);
    static constexpr std::size_t min_size = 1;
    static constexpr void diagnose() { (diagnose_one<Es>(), ...); }

    static void save(Writer& w, const T& v) {
        if (v.valueless_by_exception()) throw_valueless_variant();
        w.out().put_varint(v.index());
        std::visit([&](const auto& x) { codec_t<std::remove_cvref_t<decltype(x)>>::save(w, x); }, v);
    }
    template <std::size_t I>
    static T load_alternative(Reader& r) {
        return T(std::in_place_index<I>, codec_t<std::variant_alternative_t<I, T>>::load(r));
    }
    static T load(Reader& r) {
        static constexpr auto table = []<std::size_t... I>(std::index_sequence<I...>) {
            return std::array<T (*)(Reader&), sizeof...(I)>{&load_alternative<I>...};
        }(std::index_sequence_for<Es...>{});
        std::uint64_t i = r.in().get_varint();
        if (i >= table.size()) throw_bad_data("a variant index out of range");
        return table[static_cast<std::size_t>(i)](r);
    }
};

/// deque, list: length, then each element.
template <class T, class E>
struct SequenceCodec : LoadInto<T, SequenceCodec<T, E>> {
    static constexpr bool ok = codec_t<E>::ok;
    static constexpr std::size_t min_size = 1;
    static constexpr void diagnose() { diagnose_one<E>(); }

    static void save(Writer& w, const T& c) {
        w.out().put_varint(c.size());
        for (const E& e : c) codec_t<E>::save(w, e);
    }
    static T load(Reader& r) {
        std::uint64_t n = r.in().get_varint();
        r.in().check_count(n, codec_t<E>::min_size);
        T c;
        for (std::uint64_t i = 0; i < n; ++i) c.push_back(codec_t<E>::load(r));
        return c;
    }
};
template <class E, class A>
struct StdCodec<std::deque<E, A>> : SequenceCodec<std::deque<E, A>, E> {};
template <class E, class A>
struct StdCodec<std::list<E, A>> : SequenceCodec<std::list<E, A>, E> {};

/// map, multimap, unordered_map, unordered_multimap: length, then key and
/// value of each entry. Ordered maps are rebuilt with end() hints (linear
/// for the sorted order they were written in); hash maps reserve first.
template <class T, class K, class V, bool Hashed>
struct MapCodec : LoadInto<T, MapCodec<T, K, V, Hashed>> {
    static constexpr bool ok = codec_t<K>::ok && codec_t<V>::ok;
    static constexpr std::size_t min_size = 1;
    static constexpr void diagnose() {
        diagnose_one<K>();
        diagnose_one<V>();
    }

    static void save(Writer& w, const T& m) {
        w.out().put_varint(m.size());
        for (const auto& [k, v] : m) {
            codec_t<K>::save(w, k);
            codec_t<V>::save(w, v);
        }
    }
    static T load(Reader& r) {
        std::uint64_t n = r.in().get_varint();
        r.in().check_count(n, codec_t<K>::min_size + codec_t<V>::min_size);
        T m;
        if constexpr (Hashed) m.reserve(static_cast<std::size_t>(n));
        for (std::uint64_t i = 0; i < n; ++i) {
            K k = codec_t<K>::load(r);
            V v = codec_t<V>::load(r);
            if constexpr (Hashed) m.emplace(std::move(k), std::move(v));
            else m.emplace_hint(m.end(), std::move(k), std::move(v));
        }
        return m;
    }
};
template <class K, class V, class C, class A>
struct StdCodec<std::map<K, V, C, A>> : MapCodec<std::map<K, V, C, A>, K, V, false> {};
template <class K, class V, class C, class A>
struct StdCodec<std::multimap<K, V, C, A>> : MapCodec<std::multimap<K, V, C, A>, K, V, false> {};
template <class K, class V, class H, class E, class A>
struct StdCodec<std::unordered_map<K, V, H, E, A>>
    : MapCodec<std::unordered_map<K, V, H, E, A>, K, V, true> {};
template <class K, class V, class H, class E, class A>
struct StdCodec<std::unordered_multimap<K, V, H, E, A>>
    : MapCodec<std::unordered_multimap<K, V, H, E, A>, K, V, true> {};

/// set, multiset, unordered_set, unordered_multiset.
template <class T, class K, bool Hashed>
struct SetCodec : LoadInto<T, SetCodec<T, K, Hashed>> {
    static constexpr bool ok = codec_t<K>::ok;
    static constexpr std::size_t min_size = 1;
    static constexpr void diagnose() { diagnose_one<K>(); }

    static void save(Writer& w, const T& s) {
        w.out().put_varint(s.size());
        for (const K& k : s) codec_t<K>::save(w, k);
    }
    static T load(Reader& r) {
        std::uint64_t n = r.in().get_varint();
        r.in().check_count(n, codec_t<K>::min_size);
        T s;
        if constexpr (Hashed) s.reserve(static_cast<std::size_t>(n));
        for (std::uint64_t i = 0; i < n; ++i) {
            if constexpr (Hashed) s.emplace(codec_t<K>::load(r));
            else s.emplace_hint(s.end(), codec_t<K>::load(r));
        }
        return s;
    }
};
template <class K, class C, class A>
struct StdCodec<std::set<K, C, A>> : SetCodec<std::set<K, C, A>, K, false> {};
template <class K, class C, class A>
struct StdCodec<std::multiset<K, C, A>> : SetCodec<std::multiset<K, C, A>, K, false> {};
template <class K, class H, class E, class A>
struct StdCodec<std::unordered_set<K, H, E, A>> : SetCodec<std::unordered_set<K, H, E, A>, K, true> {};
template <class K, class H, class E, class A>
struct StdCodec<std::unordered_multiset<K, H, E, A>>
    : SetCodec<std::unordered_multiset<K, H, E, A>, K, true> {};

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
