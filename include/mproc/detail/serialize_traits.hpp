// mproc::detail serialization traits: how each type is encoded (its Kind),
// the type names and hashes the framing uses, and the compile-time errors
// for types that cannot cross a process boundary.
//
// The order of the rules in kind_of() is the contract:
//   1. references, object pointers, member pointers, C arrays, std::function,
//      smart pointers and views (string_view, span, reference_wrapper, ...)
//      are rejected: their bytes mean nothing in another process;
//   2. function pointers travel by reference (module + offset, see
//      function_ref.hpp);
//   3. mproc handles (mproc_export / mproc_import) travel through the handle
//      protocol, never as raw bytes;
//   4. bool is checked on load; other arithmetic types and enums are raw
//      bytes, and so is a std::array of raw-byte elements;
//   5. the std types mproc knows (string, vector, map, optional, variant,
//      tuple, ...) have their own codecs (serialize_codec.hpp);
//   6. a class with a Boost.Serialization serialize() — member (any access)
//      or free function — uses it: an explicit serialize wins over rule 7;
//   7. any other trivially copyable class is copied as raw bytes, pointers
//      and all: a pointer member (a function pointer too) is an address in
//      the sender, not valid in a spawn or forkserver child (see the
//      caveats in <mproc/serialization.hpp>); give such a struct a
//      serialize(), which rule 6 then prefers;
//   8. everything else is a compile-time error.
//
// Nothing here blocks; everything is compile-time or constant.
#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <source_location>
#include <span>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <typeindex>

#include <boost/serialization/serialization.hpp>

#include "mproc/detail/segment.hpp"
#include "mproc/detail/type_name.hpp"

namespace mproc::detail {

// ---- categories -----------------------------------------------------------

enum class Kind {
    unsupported,
    reference,
    object_pointer,
    member_pointer,
    c_array,
    std_function,
    smart_pointer,
    view,
    partial_handle,
    handle,
    function,
    boolean,
    bitwise,
    structural,
    boost,
};

template <class T> struct is_std_function : std::false_type {};
template <class Sig> struct is_std_function<std::function<Sig>> : std::true_type {};

template <class T> struct is_smart_pointer : std::false_type {};
template <class T, class D> struct is_smart_pointer<std::unique_ptr<T, D>> : std::true_type {};
template <class T> struct is_smart_pointer<std::shared_ptr<T>> : std::true_type {};
template <class T> struct is_smart_pointer<std::weak_ptr<T>> : std::true_type {};

/// Trivially copyable types that hold addresses of this process.
template <class T> struct is_view : std::false_type {};
template <class C, class Tr> struct is_view<std::basic_string_view<C, Tr>> : std::true_type {};
template <class T, std::size_t N> struct is_view<std::span<T, N>> : std::true_type {};
template <class T> struct is_view<std::reference_wrapper<T>> : std::true_type {};
template <class T> struct is_view<std::initializer_list<T>> : std::true_type {};
template <> struct is_view<std::error_code> : std::true_type {};
template <> struct is_view<std::error_condition> : std::true_type {};
template <> struct is_view<std::type_index> : std::true_type {};
#if defined(__cpp_lib_source_location)
template <> struct is_view<std::source_location> : std::true_type {};
#endif

/// Types with a codec of their own (std containers, optional, ...).
/// serialize_codec.hpp specializes it with `defined = true` and the codec.
template <class T>
struct StdCodec {
    static constexpr bool defined = false;
};

template <class T>
concept exports_handle = requires(const T& t, HandleWriter& w) { t.mproc_export(w); };
template <class T>
concept imports_handle = requires(HandleReader& r) {
    { T::mproc_import(r) } -> std::same_as<T>;
};

// Does T have a Boost.Serialization serialize()? A member is found whatever
// its access (private + `friend class boost::serialization::access` is the
// usual idiom) by making its name ambiguous in a derived class; a free
// function (in T's namespace or in boost::serialization) by making the call
// ambiguous with a probe overload that only loses to a real one.
namespace probe {
struct archive {};
struct miss {};
template <class T>
miss serialize(archive&, T&, unsigned);

struct member_base {
    void serialize();
};
template <class T>
struct with_member : T, member_base {};

template <class T>
concept free_serialize = !requires(archive& ar, T& t, boost::serialization::version_type v) {
    { serialize(ar, t, v) } -> std::same_as<miss>;
};
template <class T>
concept member_serialize =
    std::is_class_v<T> &&
    (std::is_final_v<T> ? requires(T& t, archive& ar) { t.serialize(ar, 0u); }
                        : !requires { &with_member<T>::serialize; });
}  // namespace probe

template <class T>
concept has_boost_serialize = probe::member_serialize<T> || probe::free_serialize<T>;

template <class T>
consteval Kind kind_of();

template <class T> struct is_raw_std_array : std::false_type {};
template <class E, std::size_t N>
struct is_raw_std_array<std::array<E, N>>
    : std::bool_constant<kind_of<E>() == Kind::bitwise && sizeof(std::array<E, N>) == N * sizeof(E)> {};

template <class T>
consteval Kind kind_of() {
    if constexpr (std::is_reference_v<T>) return Kind::reference;
    else if constexpr (std::is_pointer_v<T>)
        return std::is_function_v<std::remove_pointer_t<T>> ? Kind::function : Kind::object_pointer;
    else if constexpr (std::is_null_pointer_v<T>) return Kind::object_pointer;
    else if constexpr (std::is_member_pointer_v<T>) return Kind::member_pointer;
    else if constexpr (std::is_array_v<T>) return Kind::c_array;
    else if constexpr (std::is_void_v<T> || std::is_function_v<T> || std::is_const_v<T> ||
                       std::is_volatile_v<T>)
        return Kind::unsupported;
    else if constexpr (is_std_function<T>::value) return Kind::std_function;
    else if constexpr (is_smart_pointer<T>::value) return Kind::smart_pointer;
    else if constexpr (is_view<T>::value) return Kind::view;
    else if constexpr (exports_handle<T> && imports_handle<T>) return Kind::handle;
    else if constexpr (exports_handle<T> || imports_handle<T>) return Kind::partial_handle;
    else if constexpr (std::is_same_v<T, bool>) return Kind::boolean;
    else if constexpr (std::is_arithmetic_v<T> || std::is_enum_v<T>) return Kind::bitwise;
    else if constexpr (is_raw_std_array<T>::value) return Kind::bitwise;
    else if constexpr (StdCodec<T>::defined) return Kind::structural;
    else if constexpr (has_boost_serialize<T>) return Kind::boost;
    else if constexpr ((std::is_class_v<T> || std::is_union_v<T>) && std::is_trivially_copyable_v<T>)
        return Kind::bitwise;
    else return Kind::unsupported;
}

/// Instantiating this names T in the compiler's error and says why it
/// cannot be serialized.
template <class T>
struct cannot_serialize {
    static constexpr Kind kind = kind_of<T>();
    static_assert(kind != Kind::reference,
                  "mproc cannot serialize a reference: use the value type (T, not T&)");
    static_assert(kind != Kind::object_pointer,
                  "mproc cannot serialize a pointer: an address means nothing in another "
                  "process. Send the value itself (std::optional<T> for one that may be "
                  "missing, std::vector<T> for several)");
    static_assert(kind != Kind::member_pointer, "mproc cannot serialize a pointer to member");
    static_assert(kind != Kind::c_array,
                  "mproc cannot serialize a C array on its own: use std::array<T, N> (or "
                  "std::string for text)");
    static_assert(kind != Kind::std_function,
                  "mproc cannot serialize a std::function: it may hold a closure. Pass a "
                  "plain function or a capture-less lambda (sent by reference, as pickle "
                  "sends functions by name), or use the fork start method for closures");
    static_assert(kind != Kind::smart_pointer,
                  "mproc cannot serialize a smart pointer: send the object it points to "
                  "(std::optional<T> for one that may be missing)");
    static_assert(kind != Kind::view,
                  "mproc cannot serialize a view (string_view, span, reference_wrapper, "
                  "initializer_list, error_code, type_index, ...): it points into this "
                  "process's memory. Send an owning type (std::string, std::vector)");
    static_assert(kind != Kind::partial_handle,
                  "this type has only half of the mproc handle protocol: a handle needs both "
                  "`void mproc_export(mproc::detail::HandleWriter&) const` and "
                  "`static T mproc_import(mproc::detail::HandleReader&)` returning T");
    static_assert(kind != Kind::unsupported,
                  "mproc cannot serialize this type: give it a Boost.Serialization "
                  "`template <class Archive> void serialize(Archive&, unsigned)` member (or "
                  "a free serialize function), make it trivially copyable (copied as bytes), "
                  "or build it from supported types (numbers, enums, std::string, vector, "
                  "array, map, unordered_map, set, pair, tuple, optional, variant)");
};

}  // namespace mproc::detail
