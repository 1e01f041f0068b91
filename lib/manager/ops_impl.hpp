// The local implementation of every manager operation, declared from the
// table in <mproc/detail/manager_ops.hpp>: row `name` with signature
// R(Args...) is the function `R impl::name(const Target&, Args...)`,
// defined once in the file of its kind (names.cpp, dict.cpp, list.cpp,
// value.cpp, queue.cpp, locks.cpp, signals.cpp). A definition whose
// signature drifts from its row fails to link.
//
// Both the local backend (local_backend.cpp) and the server dispatch
// (server.cpp) call them through Impl<Op>::fn. Internal header.
#pragma once

#include "manager/object.hpp"
#include "mproc/detail/manager_ops.hpp"

namespace mproc::detail::mgr {

using mop::Bytes;
using mop::BytesList;
using mop::Sink;
using mop::U64List;

template <class Signature>
struct ImplOf;
template <class R, class... A>
struct ImplOf<R(A...)> {
    using type = R(const Target&, A...);
};

namespace impl {
#define MPROC_MANAGER_OP_DECLARE(name, kinds, signature) typename ImplOf<signature>::type name;
MPROC_MANAGER_OPS(MPROC_MANAGER_OP_DECLARE)
#undef MPROC_MANAGER_OP_DECLARE
}  // namespace impl

/// Row O's local implementation.
template <class O>
struct Impl;
#define MPROC_MANAGER_OP_IMPL(name, kinds, signature) \
    template <>                                       \
    struct Impl<mop::op::name> {                      \
        static constexpr auto fn = &impl::name;       \
    };
MPROC_MANAGER_OPS(MPROC_MANAGER_OP_IMPL)
#undef MPROC_MANAGER_OP_IMPL

/// Calls row O's implementation with `args` (its Args tuple), storing the
/// result (if any) in `*result`.
template <class O>
void run_local(const Target& t, typename O::Args& args, void* result) {
    using R = typename O::Result;
    auto call = [&](auto&... a) -> R { return Impl<O>::fn(t, a...); };
    if constexpr (std::is_void_v<R>) std::apply(call, args);
    else *static_cast<R*>(result) = std::apply(call, args);
}

}  // namespace mproc::detail::mgr
