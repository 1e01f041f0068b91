// mproc::detail — how a Process holds its target and arguments, and how a
// spawned child re-creates them. Not a public API.
//
// A Process stores `Target<F, Args...>`: the callable and decayed copies of
// the arguments. A forked child (a copy of the parent) calls it directly.
// A spawned or forkserver child is a fresh process: the parent sends it a
// reference to the function template instantiation spawn_entry<F, Args...>
// (as a module + offset, like pickle sends a function's name) with the
// serialized arguments, and the child's copy of that instantiation decodes
// them and calls F — a function pointer that travelled beside them, or a
// default-constructed capture-less lambda.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/errors.hpp"

namespace mproc::detail {

/// What the child needs to re-create a target: `entry` (sent by reference,
/// resolved in the child) is called with `args`: the serialized target (a
/// function pointer; nothing for a capture-less lambda) and arguments.
using SpawnEntry = void (*)(std::span<const std::byte> args);
struct SpawnTarget {
    SpawnEntry entry = nullptr;
    std::vector<std::byte> args;
};

struct TargetBase {
    virtual ~TargetBase() = default;
    /// Calls the target (in a forked child).
    virtual void run() = 0;
    /// Serializes the target for a spawn or forkserver child; Error naming
    /// the offending target or argument type if it cannot travel.
    virtual SpawnTarget spawn_target() const = 0;
};

/// A target a fresh process can re-create: a pointer to function, or an
/// empty, default-constructible function object (a capture-less lambda).
template <class F>
inline constexpr bool spawnable_callable_v =
    (std::is_pointer_v<F> && std::is_function_v<std::remove_pointer_t<F>>) ||
    (std::is_class_v<F> && std::is_empty_v<F> && std::is_default_constructible_v<F>);

template <class F, class Tuple>
void invoke_stored(F& f, Tuple& args) {
    // Rvalues as std::thread passes them; lvalues for targets that take
    // non-const references (they see this process's copy).
    std::apply(
        [&f](auto&... a) {
            if constexpr (std::is_invocable_v<F&, decltype(std::move(a))...>)
                std::invoke(f, std::move(a)...);
            else
                std::invoke(f, a...);
        },
        args);
}

template <class F, class... Args>
class Target final : public TargetBase {
public:
    template <class G, class... A>
    explicit Target(G&& f, A&&... args) : f_(std::forward<G>(f)), args_(std::forward<A>(args)...) {}

    void run() override { invoke_stored(f_, args_); }
    SpawnTarget spawn_target() const override;

private:
    F f_;
    std::tuple<Args...> args_;
};

template <class F, class... Args>
std::unique_ptr<TargetBase> make_target(F&& f, Args&&... args) {
    using Fn = std::decay_t<F>;
    static_assert(std::is_invocable_v<Fn&, std::decay_t<Args>&&...> ||
                      std::is_invocable_v<Fn&, std::decay_t<Args>&...>,
                  "mproc::Process: the target cannot be called with these arguments (they are "
                  "stored as decayed copies, like std::thread's)");
    return std::make_unique<Target<Fn, std::decay_t<Args>...>>(std::forward<F>(f),
                                                                std::forward<Args>(args)...);
}

}  // namespace mproc::detail

#include "mproc/detail/process_spawn.hpp"
