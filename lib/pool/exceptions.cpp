// Exceptions across the pool: a task's exception is written as (kind, type
// name, message); the parent re-creates the standard types listed in API.md
// as themselves and everything else as RemoteError.
#include <new>
#include <stdexcept>
#include <string>
#include <tuple>
#include <typeinfo>

#include "mproc/detail/pool_task.hpp"

namespace mproc::detail {

namespace {

enum Kind : std::uint32_t {
    k_remote, k_runtime, k_logic, k_invalid_argument, k_out_of_range, k_domain, k_length,
    k_overflow, k_range, k_bad_alloc,
};

template <class E>
bool is_exactly(const std::exception& e) {
    return typeid(e) == typeid(E);
}

Kind kind_of(const std::exception& e) {
    if (is_exactly<std::runtime_error>(e)) return k_runtime;
    if (is_exactly<std::logic_error>(e)) return k_logic;
    if (is_exactly<std::invalid_argument>(e)) return k_invalid_argument;
    if (is_exactly<std::out_of_range>(e)) return k_out_of_range;
    if (is_exactly<std::domain_error>(e)) return k_domain;
    if (is_exactly<std::length_error>(e)) return k_length;
    if (is_exactly<std::overflow_error>(e)) return k_overflow;
    if (is_exactly<std::range_error>(e)) return k_range;
    if (dynamic_cast<const std::bad_alloc*>(&e)) return k_bad_alloc;
    return k_remote;
}

using Wire = std::tuple<std::uint32_t, std::string, std::string>;

}  // namespace

void encode_exception(OutBuf& out, std::exception_ptr e) noexcept {
    Wire w{k_remote, "unknown exception", ""};
    try {
        std::rethrow_exception(e);
    } catch (const RemoteError& x) {
        w = Wire{k_remote, x.type_name(), x.what()};
    } catch (const std::exception& x) {
        w = Wire{kind_of(x), type_name(typeid(x)), x.what()};
    } catch (...) {
        w = Wire{k_remote, "unknown (not a std::exception)", "a task threw a value that is not a std::exception"};
    }
    try {
        dump_to(out, w);
    } catch (...) {
        // Only bad_alloc can get here; the parent then reports a corrupt message.
    }
}

std::exception_ptr decode_exception(InBuf& in) {
    auto [kind, type, what] = load_from<Wire>(in);
    switch (kind) {
        case k_runtime: return std::make_exception_ptr(std::runtime_error(what));
        case k_logic: return std::make_exception_ptr(std::logic_error(what));
        case k_invalid_argument: return std::make_exception_ptr(std::invalid_argument(what));
        case k_out_of_range: return std::make_exception_ptr(std::out_of_range(what));
        case k_domain: return std::make_exception_ptr(std::domain_error(what));
        case k_length: return std::make_exception_ptr(std::length_error(what));
        case k_overflow: return std::make_exception_ptr(std::overflow_error(what));
        case k_range: return std::make_exception_ptr(std::range_error(what));
        case k_bad_alloc: return std::make_exception_ptr(std::bad_alloc());
        default: return std::make_exception_ptr(RemoteError(type, what));
    }
}

}  // namespace mproc::detail
