// mproc::detail codecs for the standard library's types: strings, vectors
// (vector<bool> too), arrays, pairs, tuples, optional, variant, the other
// sequences, ordered and hashed maps and sets, and function pointers. The
// encoding and the load-time checks are described in serialize_codec.hpp,
// which includes this header at the point where these specializations of
// StdCodec belong (after the kinds, before the entry points); it is not
// meant to be included on its own.
//
// Thread safety: codecs are stateless. Nothing here blocks.
#pragma once

#include <array>
#include <deque>
#include <forward_list>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "mproc/detail/function_ref.hpp"

namespace mproc::detail {

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
            save_elements<E>(w, v.begin(), v.end());
        }
    }
    static T load(Reader& r) {
        InBuf& in = r.in();
        std::uint64_t n = in.get_varint();
        in.check_count(n, codec_t<E>::min_size);
        T v;
        if constexpr (is_raw_v<E> && std::is_default_constructible_v<E>) {
            // The bytes are all there (checked): one block, sized exactly.
            v.resize(static_cast<std::size_t>(n));
            in.read(v.data(), v.size() * sizeof(E));
        } else {
            Speculation room(r, n, sizeof(E));
            v.reserve(room.count());
            load_elements<E>(r, n, [&](auto&&... a) { v.emplace_back(std::forward<decltype(a)>(a)...); });
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

/// deque, list, forward_list: length, then each element (they allocate
/// as elements arrive, so nothing is reserved).
template <class T, class E>
struct SequenceCodec : LoadInto<T, SequenceCodec<T, E>> {
    static constexpr bool ok = codec_t<E>::ok;
    static constexpr std::size_t min_size = 1;
    static constexpr void diagnose() { diagnose_one<E>(); }

    static void save(Writer& w, const T& c) {
        if constexpr (requires { c.size(); }) w.out().put_varint(c.size());
        else w.out().put_varint(static_cast<std::uint64_t>(std::distance(c.begin(), c.end())));
        save_elements<E>(w, c.begin(), c.end());
    }
    static T load(Reader& r) {
        std::uint64_t n = r.in().get_varint();
        r.in().check_count(n, codec_t<E>::min_size);
        T c;
        if constexpr (requires { c.before_begin(); }) {
            auto last = c.before_begin();
            load_elements<E>(r, n, [&](auto&&... a) { last = c.emplace_after(last, std::forward<decltype(a)>(a)...); });
        } else {
            load_elements<E>(r, n, [&](auto&&... a) { c.emplace_back(std::forward<decltype(a)>(a)...); });
        }
        return c;
    }
};
template <class E, class A>
struct StdCodec<std::deque<E, A>> : SequenceCodec<std::deque<E, A>, E> {};
template <class E, class A>
struct StdCodec<std::list<E, A>> : SequenceCodec<std::list<E, A>, E> {};
template <class E, class A>
struct StdCodec<std::forward_list<E, A>> : SequenceCodec<std::forward_list<E, A>, E> {};

/// Associative containers: length, then each element. An ordered one is
/// written last element first and rebuilt by inserting each at the front
/// (begin() as the hint: one comparison, no search, for the order it was
/// written in; any other order still loads, at the usual cost); a hash one
/// is written in iteration order and reserves its buckets first.
/// (E: what an element loads as, pair<K, V> for a map.)
template <class T, class E, bool Hashed>
struct AssociativeCodec {
    using Stored = typename T::value_type;  // pair<const K, V> in a map

    static void save(Writer& w, const T& c) {
        w.out().put_varint(c.size());
        save_elements<Stored, !Hashed>(w, c.begin(), c.end());
    }
    static T load(Reader& r, std::size_t min_size) {
        std::uint64_t n = r.in().get_varint();
        r.in().check_count(n, min_size);
        T c;
        if constexpr (Hashed) {
            Speculation room(r, n, sizeof(void*));  // a bucket per element
            c.reserve(room.count());
            load_elements<E>(r, n, [&](auto&&... a) { c.emplace(std::forward<decltype(a)>(a)...); });
        } else {
            load_elements<E>(r, n, [&](auto&&... a) { c.emplace_hint(c.begin(), std::forward<decltype(a)>(a)...); });
        }
        return c;
    }
};

/// map, multimap, unordered_map, unordered_multimap: key and value of each
/// entry (an element is a pair<K, V>).
template <class T, class K, class V, bool Hashed>
struct MapCodec : LoadInto<T, MapCodec<T, K, V, Hashed>> {
    static constexpr bool ok = codec_t<K>::ok && codec_t<V>::ok;
    static constexpr std::size_t min_size = 1;
    static constexpr void diagnose() {
        diagnose_one<K>();
        diagnose_one<V>();
    }
    using Elements = AssociativeCodec<T, std::pair<K, V>, Hashed>;

    static void save(Writer& w, const T& m) { Elements::save(w, m); }
    static T load(Reader& r) { return Elements::load(r, codec_t<K>::min_size + codec_t<V>::min_size); }
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

    using Elements = AssociativeCodec<T, K, Hashed>;

    static void save(Writer& w, const T& s) { Elements::save(w, s); }
    static T load(Reader& r) { return Elements::load(r, codec_t<K>::min_size); }
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

}  // namespace mproc::detail
