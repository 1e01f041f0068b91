// How Queue and Connection turn items into bytes and back: items the
// serializer would copy as raw bytes (detail::is_bitwise_v) are their own
// bytes here too, without its 8-byte header — one memcpy into the ring, one
// out; everything else goes through mproc::dumps and mproc::loads.
#pragma once

#include <cstddef>
#include <cstring>
#include <span>
#include <type_traits>
#include <vector>

#include "mproc/errors.hpp"
#include "mproc/serialization.hpp"

namespace mproc::detail {

/// Raw bytes exactly when the serializer would take its raw-bytes path
/// (trivially copyable, no serialize() of its own, not a handle, not bool,
/// not a pointer or view): the same rule on both sides of every channel.
template <class T>
inline constexpr bool is_raw_item = is_bitwise_v<T>;

/// Calls put(bytes) with the item's encoding.
template <class T, class Put>
decltype(auto) with_encoded(const T& item, Put&& put) {
    if constexpr (is_raw_item<T>) {
        return put(std::as_bytes(std::span<const T, 1>(&item, 1)));
    } else {
        std::vector<std::byte> bytes = mproc::dumps(item);
        return put(std::span<const std::byte>(bytes));
    }
}

/// Decodes into `out` (one memcpy for raw items).
template <class T>
void decode_item_into(std::span<const std::byte> bytes, T& out) {
    if constexpr (is_raw_item<T>) {
        if (bytes.size() != sizeof(T))
            throw SerializationError("received an item of " + std::to_string(bytes.size()) +
                                     " bytes where a " + std::to_string(sizeof(T)) +
                                     "-byte item was expected (sender and receiver disagree on T?)");
        std::memcpy(static_cast<void*>(&out), bytes.data(), sizeof(T));
    } else {
        out = mproc::loads<T>(bytes);
    }
}

template <class T>
T decode_item(std::span<const std::byte> bytes) {
    if constexpr (is_raw_item<T>) {
        T out;
        decode_item_into(bytes, out);
        return out;
    } else {
        return mproc::loads<T>(bytes);
    }
}

}  // namespace mproc::detail
