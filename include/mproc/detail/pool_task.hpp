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
// Exceptions travel through the one exception codec (exception_codec.hpp):
// registered types, mproc's and the standard ones come back as themselves,
// anything else as mproc::RemoteError(type name, what()).
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/detail/exception_codec.hpp"
#include "mproc/detail/function_ref.hpp"
#include "mproc/detail/process_target.hpp"
#include "mproc/serialization.hpp"

namespace mproc::detail {

/// A chunk's items, decoded (by TaskCall::Op::decode).
struct DecodedItems {
    virtual ~DecodedItems() = default;
};

/// What a worker passes to a TaskEntry. resolve: read the function
/// reference from `ref` and return it. decode: decode `count` items from
/// `items` (the task message, still in the ring) into `decoded`. run: run
/// the decoded items, writing each outcome to `out`.
struct TaskCall {
    enum class Op { resolve, decode, run };
    Op op = Op::resolve;
    InBuf* ref = nullptr;
    AnyFunction fn = nullptr;
    std::span<const std::byte> items;
    std::uint32_t count = 0;
    VectorOutBuf* out = nullptr;
    std::unique_ptr<DecodedItems> decoded;
};
using TaskEntry = AnyFunction (*)(TaskCall& call);

enum : std::uint8_t { kItemValue = 0, kItemError = 1 };

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

/// Instantiated for each argument of a pool or executor task: a type that
/// cannot be serialized fails here, first, with its name in the
/// instantiation line ("In instantiation of task_argument<T>").
template <class T>
struct task_argument {
    static constexpr bool ok = is_serializable_v<T>;
    static_assert(is_serializable_v<T>,
                  "mproc pool task: this argument type (named in the instantiation above) "
                  "cannot be sent to a worker process. Give it a Boost.Serialization "
                  "`template <class Archive> void serialize(Archive&, unsigned)` member, make it "
                  "trivially copyable, or build it from supported types (<mproc/serialization.hpp>)");
};
template <class R>
struct task_return {
    static constexpr bool ok = std::is_void_v<R> || is_serializable_v<R>;
    static_assert(std::is_void_v<R> || is_serializable_v<R>,
                  "mproc pool task: the task's return type (named in the instantiation above) "
                  "cannot be sent back from a worker process. Give it a Boost.Serialization "
                  "serialize() member, make it trivially copyable, or return supported types "
                  "(<mproc/serialization.hpp>)");
};

/// True if a task F over Item can travel; false after a static_assert above
/// named the offending type. Entry points say
/// `static_assert(task_types_ok<F, Item, Spread>(), ...)` first, so that
/// this is the first error a user sees.
template <class F, class Item, bool Spread>
constexpr bool task_types_ok() {
    bool args_ok;
    if constexpr (Spread && is_tuple<Item>::value) {
        args_ok = []<class... Ts>(std::type_identity<std::tuple<Ts...>>) {
            return (task_argument<Ts>::ok && ...);
        }(std::type_identity<Item>{});
    } else {
        args_ok = task_argument<Item>::ok;
    }
    if (!args_ok) return false;
    return task_return<std::decay_t<task_result_t<F, Item, Spread>>>::ok;
}

template <class Item>
struct DecodedChunk final : DecodedItems {
    std::vector<Item> items;
    std::exception_ptr error;  // items past items.size() fail with it
};

/// task_entry's work (below), for types that can travel.
template <class F, class Item, bool Spread>
AnyFunction run_task(TaskCall& call) {
    if (call.op == TaskCall::Op::resolve) {
        if constexpr (std::is_pointer_v<F>) return reinterpret_cast<AnyFunction>(load_from<F>(*call.ref));
        else return nullptr;
    }
    if (call.op == TaskCall::Op::decode) {
        auto d = std::make_unique<DecodedChunk<Item>>();
        d->items.reserve(call.count);
        InBuf in(call.items);
        try {
            for (std::uint32_t i = 0; i < call.count; ++i) d->items.push_back(get_value<Item>(in));
        } catch (...) {
            d->error = std::current_exception();  // the rest cannot be located
        }
        call.decoded = std::move(d);
        return nullptr;
    }
    using R = std::decay_t<task_result_t<F, Item, Spread>>;
    F f = [&]() -> F {
        if constexpr (std::is_pointer_v<F>) return reinterpret_cast<F>(call.fn);
        else return F{};
    }();
    auto& d = static_cast<DecodedChunk<Item>&>(*call.decoded);
    VectorOutBuf& out = *call.out;
    for (Item& item : d.items) {
        const std::size_t mark = out.written();
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
                put_item(out, r);  // may throw half-way: rewound below
            }
        } catch (...) {
            out.rewind(mark);
            out.put_byte(kItemError);
            encode_exception(out, std::current_exception());
        }
    }
    for (std::size_t i = d.items.size(); i < call.count; ++i) {
        out.put_byte(kItemError);
        encode_exception(out, d.error);
    }
    return nullptr;
}

/// Runs in the worker: see the top of this file.
template <class F, class Item, bool Spread>
AnyFunction task_entry(TaskCall& call) {
    if constexpr (!task_types_ok<F, Item, Spread>()) return nullptr;  // reported by task_argument
    else return run_task<F, Item, Spread>(call);
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
