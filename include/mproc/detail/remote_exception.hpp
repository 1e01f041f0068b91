// mproc::detail — exceptions re-created from another process, and the
// registry that MPROC_REGISTER_EXCEPTION fills. Not a public API beyond the
// macro; see errors.hpp for the rules and exception_codec.hpp for the wire.
//
// The registry maps a type's demangled name (stable across processes of the
// same build and across builds by the same compiler, unlike an address) to a
// factory that builds the exception from the fields that travelled. The
// factory wraps the object in FromRemote<E>, which derives from E and from
// RemoteOriginBase, so `catch (const E&)` matches and remote_origin() finds
// where it came from.
//
// Thread safety: registering and looking up may run on any thread at once.
#pragma once

#include <cstdint>
#include <exception>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>

namespace mproc::detail {

/// The demangled name of a type ("mproc::Empty", "std::out_of_range").
std::string type_name(const std::type_info& t);

/// What travels for one exception.
struct ExceptionFields {
    std::string type;        // the type's registered (demangled) name
    std::string what;        // its message (cut at 1 MiB)
    std::int64_t code = 0;   // OSError's errno; 0 otherwise
    RemoteOrigin origin;     // where it was raised
};

/// The part of a re-created exception that says where it came from.
class RemoteOriginBase {
public:
    explicit RemoteOriginBase(RemoteOrigin origin) : origin_(std::move(origin)) {}
    virtual ~RemoteOriginBase() = default;
    const RemoteOrigin& origin() const noexcept { return origin_; }

private:
    RemoteOrigin origin_;
};

/// An exception of type E re-created from another process.
template <class E>
class FromRemote final : public E, public RemoteOriginBase {
public:
    FromRemote(E e, RemoteOrigin origin) : E(std::move(e)), RemoteOriginBase(std::move(origin)) {}
};

/// E from the fields: its message (OSError: and errno; the standard types
/// without a message constructor, bad_alloc and exception: nothing).
template <class E>
E exception_from_fields(const ExceptionFields& f) {
    if constexpr (std::is_same_v<E, OSError>) return OSError(f.what, static_cast<int>(f.code));
    else if constexpr (std::is_constructible_v<E, std::string>) return E(f.what);
    else return E();
}

/// E with its origin, as an exception_ptr (E itself if E is final).
template <class E>
std::exception_ptr make_remote_exception(const ExceptionFields& f) {
    if constexpr (std::is_final_v<E>) return std::make_exception_ptr(exception_from_fields<E>(f));
    else return std::make_exception_ptr(FromRemote<E>(exception_from_fields<E>(f), f.origin));
}

using ExceptionFactory = std::exception_ptr (*)(const ExceptionFields& f);

/// Records `make` as the way to re-create the type called `name`. A second
/// registration of the same name replaces the first (harmless: a header
/// with MPROC_REGISTER_EXCEPTION registers once per translation unit).
bool register_exception_type(const std::string& name, ExceptionFactory make) noexcept;
/// The factory for `name`, or nullptr if none is registered.
ExceptionFactory find_exception_type(const std::string& name) noexcept;

template <class E>
bool register_exception() noexcept {
    static_assert(std::is_base_of_v<std::exception, E>,
                  "MPROC_REGISTER_EXCEPTION(E): E must derive from std::exception (its what() is "
                  "the message that travels)");
    static_assert(std::is_constructible_v<E, std::string>,
                  "MPROC_REGISTER_EXCEPTION(E): E must be constructible from a std::string (the "
                  "message), e.g. `using std::runtime_error::runtime_error;`");
    static_assert(std::is_copy_constructible_v<E>, "MPROC_REGISTER_EXCEPTION(E): E must be copyable");
    try {
        return register_exception_type(type_name(typeid(E)), &make_remote_exception<E>);
    } catch (...) {
        return false;
    }
}

}  // namespace mproc::detail

#define MPROC_DETAIL_CAT2(a, b) a##b
#define MPROC_DETAIL_CAT(a, b) MPROC_DETAIL_CAT2(a, b)

/// At namespace scope: exceptions of type E thrown in another process are
/// re-thrown here as E (see <mproc/errors.hpp>).
#define MPROC_REGISTER_EXCEPTION(E)                                                           \
    [[maybe_unused]] static const bool MPROC_DETAIL_CAT(mproc_registered_exception_, __COUNTER__) = \
        ::mproc::detail::register_exception<E>()
