// mproc::detail — how a pool task travels to a worker and its result comes
// back. Not a public API; see pool.hpp and futures.hpp.
//
// A task message names a TaskEntry — the instantiation task_entry<F, Item,
// Spread> — by reference (module + offset, as a spawn target is sent), plus
// the function pointer F when F is not a capture-less lambda, followed by
// `count` encoded items. The worker resolves the reference once and caches
// it; task_entry decodes each item, calls F, and writes a status byte and
// the result (or the exception) for each.
//
// Items and results that are bitwise (numbers, trivially copyable structs,
// tuples of them) are copied as raw bytes with no serialization header; all
// others are written by dump_to, which is self-delimiting, so a chunk needs
// no per-item framing.
//
// Exceptions: the standard types listed in API.md come back as the same
// type; anything else as mproc::RemoteError(type name, what()).
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <span>
#include <tuple>
#include <type_traits>
#include <utility>

#include "mproc/detail/function_ref.hpp"
#include "mproc/detail/process_target.hpp"
#include "mproc/serialization.hpp"

namespace mproc::detail {

/// What a worker passes to a TaskEntry. Resolve mode (`ref` set): read the
/// function reference from `ref` and return it. Run mode: run the chunk.
struct TaskCall {
    InBuf* ref = nullptr;
    AnyFunction fn = nullptr;
    std::span<const std::byte> items;
    std::uint32_t count = 0;
    OutBuf* out = nullptr;
};
using TaskEntry = AnyFunction (*)(TaskCall& call);

enum : std::uint8_t { kItemValue = 0, kItemError = 1 };

/// Writes the exception `e` (worker side).
void encode_exception(OutBuf& out, std::exception_ptr e) noexcept;
/// Reads what encode_exception wrote, as an exception to rethrow (parent side).
std::exception_ptr decode_exception(InBuf& in);

template <class T>
struct is_tuple : std::false_type {};
template <class... Ts>
struct is_tuple<std::tuple<Ts...>> : std::true_type {};

/// Items and results: raw bytes when bitwise (tuples of bitwise types
/// element by element), dump_to otherwise.
template <class T>
T get_bitwise(InBuf& in) {
    std::array<std::byte, sizeof(T)> raw;
    in.read(raw.data(), raw.size());
    return std::bit_cast<T>(raw);
}

template <class T>
struct all_bitwise_tuple : std::false_type {};
template <class... Ts>
struct all_bitwise_tuple<std::tuple<Ts...>>
    : std::bool_constant<(sizeof...(Ts) > 0) && (is_bitwise_v<Ts> && ...)> {};

template <class T>
T get_value(InBuf& in) {
    if constexpr (is_bitwise_v<T>) {
        return get_bitwise<T>(in);
    } else if constexpr (all_bitwise_tuple<T>::value) {
        return [&in]<class... Ts>(std::type_identity<std::tuple<Ts...>>) {
            return std::tuple<Ts...>{get_bitwise<Ts>(in)...};  // braces: left to right
        }(std::type_identity<T>{});
    } else {
        return load_from<T>(in);
    }
}

template <class T>
void put_item(OutBuf& out, const T& v) {
    if constexpr (is_bitwise_v<T>) {
        out.write(std::addressof(v), sizeof(T));
    } else if constexpr (all_bitwise_tuple<T>::value) {
        std::apply([&out](const auto&... e) { (out.write(std::addressof(e), sizeof(e)), ...); }, v);
    } else {
        dump_to(out, v);
    }
}

template <class F, class Item, bool Spread>
struct task_result {
    using type = std::invoke_result_t<F&, Item&&>;
};
template <class F, class... A>
struct task_result<F, std::tuple<A...>, true> {
    using type = std::invoke_result_t<F&, A&&...>;
};
template <class F, class Item, bool Spread>
using task_result_t = typename task_result<F, Item, Spread>::type;

/// Runs in the worker: see the top of this file.
template <class F, class Item, bool Spread>
AnyFunction task_entry(TaskCall& call) {
    if (call.ref) {
        if constexpr (std::is_pointer_v<F>) return reinterpret_cast<AnyFunction>(load_from<F>(*call.ref));
        else return nullptr;
    }
    using R = std::decay_t<task_result_t<F, Item, Spread>>;
    F f = [&]() -> F {
        if constexpr (std::is_pointer_v<F>) return reinterpret_cast<F>(call.fn);
        else return F{};
    }();
    InBuf in(call.items);
    OutBuf& out = *call.out;
    std::exception_ptr decode_error;
    for (std::uint32_t i = 0; i < call.count; ++i) {
        if (!decode_error) {
            try {
                Item item = get_value<Item>(in);
                try {
                    auto call_it = [&]() -> decltype(auto) {
                        if constexpr (Spread) return std::apply(f, std::move(item));
                        else return std::invoke(f, std::move(item));
                    };
                    if constexpr (std::is_void_v<R>) {
                        call_it();
                        out.put_byte(kItemValue);
                    } else {
                        R r = call_it();
                        out.put_byte(kItemValue);
                        put_item(out, r);
                    }
                } catch (...) {
                    out.put_byte(kItemError);
                    encode_exception(out, std::current_exception());
                }
                continue;
            } catch (...) {
                decode_error = std::current_exception();  // the rest cannot be located
            }
        }
        out.put_byte(kItemError);
        encode_exception(out, decode_error);
    }
    return nullptr;
}

/// Parent side: reads one item's outcome. Returns the exception, or sets
/// `value` (for non-void R).
template <class R>
std::exception_ptr read_outcome(InBuf& in, std::optional<R>* value) {
    std::uint8_t status = in.get_byte();
    if (status == kItemError) return decode_exception(in);
    if (status != kItemValue) throw SerializationError("mproc pool: a result message is corrupt");
    if constexpr (!std::is_void_v<R>) value->emplace(get_value<R>(in));
    return nullptr;
}

/// The reference a worker resolves: the entry, then F when it is a pointer.
template <class F, class Item, bool Spread>
std::vector<std::byte> task_ref(AnyFunction fn) {
    VectorOutBuf out(128);
    dump_to(out, &task_entry<F, Item, Spread>);
    if constexpr (std::is_pointer_v<F>) dump_to(out, reinterpret_cast<F>(fn));
    return out.take();
}

/// The function pointer that travels beside the entry (none for lambdas).
template <class F>
AnyFunction task_function(const F& f) {
    if constexpr (std::is_pointer_v<F>) return reinterpret_cast<AnyFunction>(f);
    else return nullptr;
}

template <class F>
inline constexpr bool pool_callable_v = spawnable_callable_v<F>;

template <class F>
constexpr void check_pool_callable() {
    static_assert(spawnable_callable_v<F>,
                  "mproc pools run tasks in worker processes that may be fresh (spawn, "
                  "forkserver): the task must be a function or a capture-less lambda, sent by "
                  "reference as pickle sends functions by name. Pass what a closure would capture "
                  "as arguments instead");
}

}  // namespace mproc::detail
