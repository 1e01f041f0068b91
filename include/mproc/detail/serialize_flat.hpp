// mproc::detail flat codecs: the hot loops of containers whose elements are
// "flat" — raw-byte values, bools, strings of char / unsigned char, and
// pairs of flat types (so map<string, int> entries are flat) — and the
// element loops every container codec shares.
//
// A flat element's encoding is the same as its codec's (serialize_codec.hpp:
// the raw bytes, one 0/1 byte, a varint length and the characters), so the
// wire format does not depend on which path wrote or reads it. The flat
// path only changes how the bytes are moved:
//   - dumping, a run of elements is written through a local cursor into the
//     buffer's free area, one room check per element (against the largest
//     size the element can take), then committed at once; an element that
//     does not fit goes through its codec, which makes the buffer grow;
//   - loading, a run of elements is decoded from the current piece of input
//     through a local cursor and each is constructed in place in the
//     container from views of the input bytes (a map's string key is built
//     in its node, no temporary string); an element that is not wholly in
//     the piece — it straddles a ring's wrap, or the input ends — or that
//     is malformed (a bool byte of 2, an overlong varint) is left to its
//     codec, which reads across pieces or throws the SerializationError.
// So the flat path never reads outside [piece_begin, piece_end), and every
// error is raised by the same code as on the general path.
//
// Thread safety: stateless. Nothing here blocks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "mproc/detail/serialize_archive.hpp"
#include "mproc/detail/serialize_buffers.hpp"
#include "mproc/detail/serialize_traits.hpp"

namespace mproc::detail {

/// Flat<T>: how one T is written at / read from a raw cursor.
///   max_size(v)      the most bytes put() can write for v
///   put(p, v)        writes v at p, returns the end
///   get(p, e, view)  reads one T's view from [p, e), advancing p; false if
///                    it is not wholly there or malformed
///   args(view)       the constructor arguments that build the T
template <class T>
struct Flat {
    static constexpr bool ok = false;
};

template <class T>
    requires(kind_of<T>() == Kind::bitwise && std::is_default_constructible_v<T> &&
             std::is_copy_constructible_v<T>)
struct Flat<T> {
    static constexpr bool ok = true;
    using View = T;
    static constexpr std::size_t max_size(const T&) noexcept { return sizeof(T); }
    static std::byte* put(std::byte* p, const T& v) noexcept {
        std::memcpy(p, std::addressof(v), sizeof(T));
        return p + sizeof(T);
    }
    static bool get(const std::byte*& p, const std::byte* e, View& v) noexcept {
        if (static_cast<std::size_t>(e - p) < sizeof(T)) return false;
        std::memcpy(std::addressof(v), p, sizeof(T));
        p += sizeof(T);
        return true;
    }
    static std::tuple<const T&> args(const View& v) noexcept { return std::tuple<const T&>(v); }
};

template <>
struct Flat<bool> {
    static constexpr bool ok = true;
    using View = bool;
    static constexpr std::size_t max_size(bool) noexcept { return 1; }
    static std::byte* put(std::byte* p, bool v) noexcept {
        *p = static_cast<std::byte>(v ? 1 : 0);
        return p + 1;
    }
    static bool get(const std::byte*& p, const std::byte* e, View& v) noexcept {
        if (p == e || static_cast<std::uint8_t>(*p) > 1) return false;
        v = *p++ == std::byte{1};
        return true;
    }
    static std::tuple<const bool&> args(const View& v) noexcept { return std::tuple<const bool&>(v); }
};

/// Strings of char or unsigned char (the types that may view the input's
/// bytes); wider characters may sit misaligned in the input, so their
/// strings take the general path, which copies.
template <class C, class Tr, class A>
    requires(std::is_same_v<C, char> || std::is_same_v<C, unsigned char>)
struct Flat<std::basic_string<C, Tr, A>> {
    using T = std::basic_string<C, Tr, A>;
    static constexpr bool ok = true;
    struct View {
        const C* data = nullptr;
        std::size_t size = 0;
    };
    static std::size_t max_size(const T& s) noexcept { return kMaxVarint + s.size(); }
    static std::byte* put(std::byte* p, const T& s) noexcept {
        p = encode_varint(p, s.size());
        if (!s.empty()) std::memcpy(p, s.data(), s.size());
        return p + s.size();
    }
    static bool get(const std::byte*& p, const std::byte* e, View& v) noexcept {
        std::uint64_t n = 0;
        if (!decode_varint(p, e, n) || n > static_cast<std::uint64_t>(e - p)) return false;
        v = {reinterpret_cast<const C*>(p), static_cast<std::size_t>(n)};
        p += n;
        return true;
    }
    static std::tuple<const C*, std::size_t> args(const View& v) noexcept { return {v.data, v.size}; }
};

/// Pairs of flat types (A may be const: a map's value_type).
template <class A, class B>
    requires(Flat<std::remove_cv_t<A>>::ok && Flat<std::remove_cv_t<B>>::ok)
struct Flat<std::pair<A, B>> {
    using FA = Flat<std::remove_cv_t<A>>;
    using FB = Flat<std::remove_cv_t<B>>;
    static constexpr bool ok = true;
    struct View {
        typename FA::View first{};
        typename FB::View second{};
    };
    static std::size_t max_size(const std::pair<A, B>& v) noexcept {
        return FA::max_size(v.first) + FB::max_size(v.second);
    }
    static std::byte* put(std::byte* p, const std::pair<A, B>& v) noexcept {
        return FB::put(FA::put(p, v.first), v.second);
    }
    static bool get(const std::byte*& p, const std::byte* e, View& v) noexcept {
        return FA::get(p, e, v.first) && FB::get(p, e, v.second);
    }
    static auto args(const View& v) noexcept {
        return std::tuple(std::piecewise_construct, FA::args(v.first), FB::args(v.second));
    }
};

template <class T>
inline constexpr bool is_flat_v = Flat<std::remove_cv_t<T>>::ok;

// ---- the element loops of every container codec --------------------------

/// Writes the elements of [first, last) one after another — from the last
/// back to the first if Backward — each as codec_t<E> writes it (E: the
/// container's value_type).
template <class E, bool Backward = false, class It>
void save_elements(Writer& w, It first, It last) {
    using C = Codec<std::remove_cv_t<E>>;
    auto next = [&]() -> decltype(auto) {
        if constexpr (Backward) return *--last;  // not reverse_iterator: one tree step, not two
        else return *first++;
    };
    if constexpr (is_flat_v<E>) {
        using F = Flat<std::remove_cv_t<E>>;
        OutBuf& out = w.out();
        std::byte* p = out.room_begin();
        std::byte* e = out.room_end();
        while (first != last) {
            const auto& x = next();
            if (static_cast<std::size_t>(e - p) >= F::max_size(x)) {
                p = F::put(p, x);
                continue;
            }
            out.commit(p);
            C::save(w, x);  // too big for the room left: the buffer makes more
            p = out.room_begin();
            e = out.room_end();
        }
        out.commit(p);
    } else {
        while (first != last) C::save(w, next());
    }
}

/// Decodes `n` elements of E and hands each to `add`, as the arguments of
/// its constructor: views of the input for flat elements wholly in the
/// current piece, an E from codec_t<E>::load otherwise.
template <class E, class Add>
void load_elements(Reader& r, std::uint64_t n, Add&& add) {
    using C = Codec<std::remove_cv_t<E>>;
    for (std::uint64_t i = 0; i < n; ++i) {
        if constexpr (is_flat_v<E>) {
            using F = Flat<std::remove_cv_t<E>>;
            InBuf& in = r.in();
            const std::byte* p = in.piece_begin();
            const std::byte* const e = in.piece_end();
            for (; i < n; ++i) {
                typename F::View v{};
                const std::byte* q = p;
                if (!F::get(q, e, v)) break;
                p = q;
                std::apply(add, F::args(v));
            }
            in.consume(p);
            if (i == n) break;
        }
        add(C::load(r));  // not wholly in this piece, or malformed: the codec reads on or throws
    }
}

}  // namespace mproc::detail
