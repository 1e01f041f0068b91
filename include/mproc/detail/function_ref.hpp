// mproc::detail::FunctionRef — a function pointer sent by reference, as
// pickle sends a function by its qualified name (DESIGN principle 6).
//
// A function pointer is encoded as the module it lives in (the main
// executable, or a shared object by the path it was loaded from), that
// module's identity (its ELF GNU build-id, or a hash of its code if it was
// linked without one) and the function's offset from the module's load
// address. A process running the same executable resolves the reference by
// adding its own load address of the same module. A reference resolves only
// if the module is loaded here with the same identity, the offset lies in
// one of its executable segments, the code there starts with the same bytes
// as the function did where it was encoded, and the function type matches;
// anything else is a SerializationError, never a jump to an arbitrary
// address.
//
// Like unpickling, resolving a reference from an untrusted peer lets that
// peer name any function of this program: only accept references from
// processes you trust (your own children).
//
// Lambdas without captures convert to function pointers and travel the same
// way; closures cannot (use the fork start method for them).
//
// Thread safety: all functions may be called from any thread. Nothing here
// blocks (module lookup takes the dynamic loader's lock briefly).
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>

#include "mproc/detail/type_name.hpp"

namespace mproc::detail {

struct FunctionRef {
    /// Empty for the main executable; otherwise the shared object's path
    /// as the loader reports it.
    std::string module;
    /// "build-id:<hex>" or "code:<hex>"; empty for a null function pointer.
    std::string identity;
    /// From the module's load address (its ELF virtual address).
    std::uint64_t offset = 0;
    /// type_hash of the function pointer type it was made from.
    std::uint32_t signature = 0;
    /// A hash of the function's first bytes of machine code: a reference
    /// whose offset was corrupted into the middle of other code does not
    /// resolve.
    std::uint32_t code_check = 0;

    bool operator==(const FunctionRef&) const = default;
};

/// Any function pointer type, for the type-erased calls below.
using AnyFunction = void (*)();

/// SerializationError if `fn` is not in an executable segment of a loaded
/// module (code generated at run time, say).
FunctionRef encode_function_address(AnyFunction fn, std::uint32_t signature);
/// SerializationError if `ref` does not resolve here (see above).
AnyFunction resolve_function_address(const FunctionRef& ref, std::uint32_t signature);

template <class T>
concept function_pointer = std::is_pointer_v<T> && std::is_function_v<std::remove_pointer_t<T>>;

/// A reference to a function: a function pointer, a function, or a lambda
/// without captures (encoded as the function pointer it converts to).
template <class F>
FunctionRef encode_function(const F& f) {
    if constexpr (function_pointer<F>) {
        return encode_function_address(reinterpret_cast<AnyFunction>(f), type_hash<F>());
    } else if constexpr (std::is_function_v<F>) {
        return encode_function(&f);
    } else if constexpr (requires { { +f } -> function_pointer; }) {
        return encode_function(+f);
    } else {
        static_assert(function_pointer<F>,
                      "only functions and lambdas without captures can be sent by reference; "
                      "a closure's captures live in this process (use the fork start method)");
    }
}

/// The function `ref` names, as a pointer of type Fn (e.g. `int (*)(int)`),
/// which must be the type it was encoded from. Throws SerializationError.
template <class Fn>
    requires function_pointer<Fn>
Fn resolve_function(const FunctionRef& ref) {
    return reinterpret_cast<Fn>(resolve_function_address(ref, type_hash<Fn>()));
}

}  // namespace mproc::detail
