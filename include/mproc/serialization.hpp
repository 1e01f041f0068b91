// mproc serialization: dumps / loads, pickle's stand-in.
//
//   std::vector<std::byte> b = mproc::dumps(value);
//   auto value2 = mproc::loads<T>(b);      // SerializationError on bad bytes
//
// What can be serialized (mproc::is_serializable_v<T> says so at compile
// time; anything else is a static_assert that names the type and says why):
//   - numbers, enums, and trivially copyable structs (copied as their raw
//     bytes, no archive: the fast path; a pointer inside one, a function
//     pointer too, is not valid in a spawned child: see the caveats below);
//   - std::string, vector, array, deque, list, forward_list, map, multimap,
//     unordered_map, unordered_multimap, set, multiset, unordered_set,
//     unordered_multiset, pair, tuple, optional, variant, and any nesting
//     of them;
//   - any type with a Boost.Serialization `serialize(Archive&, unsigned)`
//     member (private is fine with `friend class boost::serialization::access`)
//     or free function; its members may be any of the above. A serialize()
//     wins over the raw-bytes path. Pointers inside are not supported;
//   - mproc handles (Lock, Queue, SharedMemory, Value, ...): what travels is
//     a reference to the shared object, which the receiving process must
//     already hold — in practice, pass handles to children as Process
//     arguments;
//   - function pointers and capture-less lambdas (as function pointers), by
//     reference: they resolve only in a process running the same build.
// Pointers, references, std::function, smart pointers and views
// (string_view, span, ...) are rejected at compile time.
//
// The bytes are for a process of the same program (numbers are in the
// machine's own byte order; the format may change between mproc versions).
// Every encoding starts with a small header carrying a hash of the type's
// name, so loading bytes as the wrong type is very likely caught. Loading
// never trusts the bytes: truncated, corrupted or hostile input — a length
// claiming 2^60 elements, a bad variant index, trailing garbage — throws
// mproc::SerializationError, without crashing and without allocating more
// than the input could justify: a length is checked against the bytes left
// before anything is sized by it, and what containers set aside for
// elements not yet decoded is at most 8 bytes per input byte for the whole
// load (past that they grow as elements actually decode). Containers that
// Boost's own headers serialize (valarray, Boost containers) are held to
// the first check only: Boost sizes them by their length.
//
// Caveats of the raw-bytes path, which C++ cannot see inside: a trivially
// copyable struct is sent as its raw bytes, with whatever it holds. So a
// pointer inside one — a data pointer, a `const char*`, and a function
// pointer too — arrives as an address in the sender's memory: it happens
// to stay valid in a forked child (a copy of the sender at the same
// addresses), but is NOT valid in a spawn or forkserver child or a pool
// worker started that way (a fresh process, laid out elsewhere by ASLR),
// where using it crashes or worse. (A function pointer sent on its own — a
// target, a task, an argument — travels by reference and is safe.)
// Likewise a `bool` member of such a struct can arrive as neither 0 nor 1
// from corrupt input. Give such a struct a serialize() (which then takes
// precedence) that sends what the pointer points to. And a collection
// whose elements encode to zero bytes (a user type whose serialize() writes
// nothing) cannot hold more elements than its encoding has bytes: lengths
// are checked against the bytes left.
//
// Thread safety: dumps and loads are reentrant and may run on any number of
// threads at once (each only reads its argument). Nothing here blocks.
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <span>
#include <type_traits>
#include <vector>

#include "mproc/detail/serialize_codec.hpp"
#include "mproc/errors.hpp"

namespace mproc {

/// True if mproc can serialize T (and everything T contains).
template <class T>
struct is_serializable : std::bool_constant<detail::codec_t<T>::ok> {};
template <class T>
inline constexpr bool is_serializable_v = is_serializable<T>::value;

/// pickle.dumps: the bytes that loads<T> turns back into a copy of `value`.
template <class T>
std::vector<std::byte> dumps(const T& value) {
    using U = std::remove_cv_t<T>;
    if constexpr (detail::is_bitwise_v<U>) {
        std::vector<std::byte> out(detail::bitwise_encoded_size<U>);
        detail::encode_header(out.data(), detail::type_hash<U>());
        std::memcpy(out.data() + detail::kHeaderSize, std::addressof(value), sizeof(U));
        return out;
    } else {
        detail::VectorOutBuf out(detail::size_estimate(value));
        detail::dump_to(out, value);
        return out.take();
    }
}

/// pickle.loads: the T encoded in `bytes`, which must hold exactly one
/// dumps<T> encoding. Throws SerializationError for anything else.
template <class T>
auto loads(std::span<const std::byte> bytes) {
    return detail::load_from<T>(bytes);
}

}  // namespace mproc
