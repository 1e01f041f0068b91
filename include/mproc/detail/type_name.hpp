// mproc::detail::type_name<T>() and type_hash<T>(): a type's name as the
// compiler spells it, and a 32-bit hash of that name, both at compile time.
// The hash is the same in every process running the same build, so
// encodings carry it to catch bytes loaded as the wrong type.
//
// Nothing here blocks; everything is constant.
#pragma once

#include <cstdint>
#include <string_view>

namespace mproc::detail {

template <class T>
constexpr const char* raw_type_name() noexcept {
    return __PRETTY_FUNCTION__;
}

template <class T>
constexpr std::string_view parse_type_name() noexcept {
    std::string_view s = raw_type_name<T>();
    auto b = s.find("T = ");
    auto e = s.rfind(']');
    if (b == std::string_view::npos || e == std::string_view::npos || e < b + 4) return s;
    return s.substr(b + 4, e - b - 4);
}

template <class T>
constexpr std::uint32_t fnv1a_of_type_name() noexcept {
    std::uint32_t h = 2166136261u;
    for (char c : parse_type_name<T>()) {
        h ^= static_cast<unsigned char>(c);
        h *= 16777619u;
    }
    return h;
}

// Constants, so that no call computes them: a constexpr function called
// outside a constant expression may run at run time, and the hash loop over
// a name like std::__cxx11::basic_string<...> was a fifth of a manager
// dict operation (perf, 2 processes on one dict).
template <class T>
inline constexpr std::string_view type_name_v = parse_type_name<T>();
template <class T>
inline constexpr std::uint32_t type_hash_v = fnv1a_of_type_name<T>();

/// "std::vector<int>" (GCC and clang spell some types differently).
template <class T>
constexpr std::string_view type_name() noexcept {
    return type_name_v<T>;
}

/// FNV-1a of type_name<T>().
template <class T>
constexpr std::uint32_t type_hash() noexcept {
    return type_hash_v<T>;
}

}  // namespace mproc::detail
