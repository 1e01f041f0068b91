// mproc::detail — the spawn half of Target: serializing a target and its
// arguments in the parent, and re-creating the call in a spawned or
// forkserver child. Not a public API; see process_target.hpp.
#pragma once

#include <array>
#include <cstddef>
#include <string>

#include "mproc/detail/process_target.hpp"
#include "mproc/serialization.hpp"

namespace mproc {

/// True if a spawn or forkserver child can run `F(Args...)`: F is a
/// function (pointer) or a capture-less lambda, and every argument is
/// serializable or an mproc handle. Process checks it when start() picks
/// one of those methods; use it in a static_assert to know at compile time.
template <class F, class... Args>
inline constexpr bool is_spawnable_v =
    detail::spawnable_callable_v<std::decay_t<F>> && (is_serializable_v<std::decay_t<Args>> && ...);

namespace detail {

/// Runs in the child: decodes the target and arguments that
/// Target<F, Args...>::spawn_target() encoded, and calls it.
template <class F, class... Args>
void spawn_entry(std::span<const std::byte> bytes) {
    InBuf in(bytes);
    F f = [&]() -> F {
        if constexpr (std::is_pointer_v<F>) return load_from<F>(in);
        else return F{};
    }();
    auto args = load_from<std::tuple<Args...>>(in);
    if (in.remaining() != 0) throw_trailing_bytes(in.remaining(), "mproc::Process arguments");
    invoke_stored(f, args);
}

/// The position of the first argument that cannot be serialized.
template <class... Args>
constexpr std::size_t first_unserializable() {
    constexpr std::array<bool, sizeof...(Args) + 1> ok{is_serializable_v<Args>..., false};
    std::size_t i = 0;
    while (ok[i]) ++i;
    return i;
}

template <class... Args>
std::string unserializable_name(std::size_t i) {
    constexpr std::array<std::string_view, sizeof...(Args) + 1> names{type_name<Args>()..., ""};
    return std::string(names[i]);
}

template <class F, class... Args>
SpawnTarget Target<F, Args...>::spawn_target() const {
    if constexpr (!spawnable_callable_v<F>) {
        throw Error(
            "mproc::Process: the spawn and forkserver start methods need a function or a "
            "capture-less lambda as target (it is sent by reference, as pickle sends functions "
            "by name), not a `" + std::string(type_name<F>()) +
            "`, whose state lives only in this process. Pass what it captures as arguments, or "
            "use StartMethod::fork");
    } else if constexpr (!(is_serializable_v<Args> && ...)) {
        constexpr std::size_t i = first_unserializable<Args...>();
        throw Error("mproc::Process: argument " + std::to_string(i + 1) + " of type `" +
                    unserializable_name<Args...>(i) +
                    "` cannot be sent to a spawn or forkserver child: pass a serializable "
                    "value (see <mproc/serialization.hpp>) or an mproc handle, or use "
                    "StartMethod::fork");
    } else {
        VectorOutBuf out(256 + size_estimate(args_));
        if constexpr (std::is_pointer_v<F>) dump_to(out, f_);
        dump_to(out, args_);
        return SpawnTarget{&spawn_entry<F, Args...>, out.take()};
    }
}

}  // namespace detail
}  // namespace mproc
