// The exception registry (see include/mproc/detail/remote_exception.hpp):
// type name -> factory, with mproc's own exceptions and the standard types
// of API.md registered before any user type can be looked up.
#include <cstdlib>
#include <cxxabi.h>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <unordered_map>

#include "mproc/errors.hpp"
#include "os/process.hpp"

namespace mproc {
namespace detail {

std::string type_name(const std::type_info& t) {
    int status = 0;
    char* d = abi::__cxa_demangle(t.name(), nullptr, nullptr, &status);
    std::string r = (status == 0 && d) ? d : t.name();
    std::free(d);
    return r;
}

namespace {

struct Registry {
    std::mutex mu;
    std::unordered_map<std::string, ExceptionFactory> by_name;
};

template <class E>
void add(Registry& r) {
    r.by_name[type_name(typeid(E))] = &make_remote_exception<E>;
}

Registry* make_registry() {
    auto* r = new Registry;  // never destroyed: exit handlers may encode exceptions
    add<Error>(*r);
    add<OSError>(*r);
    add<Empty>(*r);
    add<Full>(*r);
    add<TimeoutError>(*r);
    add<EOFError>(*r);
    add<BrokenProcessPool>(*r);
    add<CancelledError>(*r);
    add<SerializationError>(*r);
    add<AuthenticationError>(*r);
    add<ValueError>(*r);
    add<KeyError>(*r);
    add<IndexError>(*r);
    add<BrokenBarrierError>(*r);
    // RemoteError travels under the type name it carries, and an unknown
    // name becomes a RemoteError: it needs no entry.
    add<std::exception>(*r);
    add<std::runtime_error>(*r);
    add<std::logic_error>(*r);
    add<std::invalid_argument>(*r);
    add<std::out_of_range>(*r);
    add<std::domain_error>(*r);
    add<std::length_error>(*r);
    add<std::overflow_error>(*r);
    add<std::underflow_error>(*r);
    add<std::range_error>(*r);
    add<std::bad_alloc>(*r);
    return r;
}

Registry& registry() {
    static Registry* r = [] {
        Registry* reg = make_registry();
        os::hold_across_fork(reg->mu, os::kForkRankLeaf);  // a forked child throws too
        return reg;
    }();
    return *r;
}
const bool g_registry_ready = (registry(), true);  // registered before main

}  // namespace

bool register_exception_type(const std::string& name, ExceptionFactory make) noexcept {
    try {
        Registry& r = registry();
        std::lock_guard<std::mutex> g(r.mu);
        r.by_name[name] = make;
        return true;
    } catch (...) {
        return false;
    }
}

ExceptionFactory find_exception_type(const std::string& name) noexcept {
    Registry& r = registry();
    std::lock_guard<std::mutex> g(r.mu);
    auto it = r.by_name.find(name);
    return it == r.by_name.end() ? nullptr : it->second;
}

}  // namespace detail

std::optional<RemoteOrigin> remote_origin(const std::exception& e) noexcept {
    if (const auto* r = dynamic_cast<const detail::RemoteOriginBase*>(&e)) {
        try {
            return r->origin();
        } catch (...) {
        }
    }
    return std::nullopt;
}

std::optional<RemoteOrigin> remote_origin(const std::exception_ptr& e) noexcept {
    if (!e) return std::nullopt;
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& x) {
        return remote_origin(x);
    } catch (...) {
    }
    return std::nullopt;
}

}  // namespace mproc
