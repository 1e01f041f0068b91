// How Queue and Connection turn items into bytes and back: items the
// serializer would copy as raw bytes (detail::is_bitwise_v) are their own
// bytes here too, without its 8-byte header — one memcpy into the ring, one
// out; everything else goes through mproc::dumps and mproc::loads.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstring>
#include <span>
#include <type_traits>
#include <vector>

#include "mproc/detail/channel.hpp"
#include "mproc/errors.hpp"
#include "mproc/serialization.hpp"

namespace mproc::detail {

/// Raw bytes exactly when the serializer would take its raw-bytes path
/// (trivially copyable, no serialize() of its own, not a handle, not bool,
/// not a pointer or view): the same rule on both sides of every channel.
template <class T>
inline constexpr bool is_raw_item = is_bitwise_v<T>;

/// Puts one item on a channel; false on timeout. Raw items are one memcpy.
/// Others are serialized straight into the ring (copy once, no allocation);
/// only when the ring has no contiguous room for them right now (nearly
/// full, at its wrap point, or an item too large for it) are they encoded
/// into a buffer first and put() the usual way, which waits or spills.
template <class T>
bool put_item(ChannelCore& core, const T& item, Timeout timeout) {
    if constexpr (is_raw_item<T>) {
        return core.put(std::as_bytes(std::span<const T, 1>(&item, 1)), timeout);
    } else {
        const auto start = std::chrono::steady_clock::now();
        auto encode = [](const void* p, std::span<std::byte> into, bool& fits) -> std::size_t {
            SpanOutBuf out(into);
            dump_to(out, *static_cast<const T*>(p));
            fits = out.fits();
            return out.written();
        };
        switch (core.put_in_place(encode, &item, timeout)) {
            case ChannelCore::InPlace::done:
                return true;
            case ChannelCore::InPlace::timed_out:
                return false;
            case ChannelCore::InPlace::no_room:
                break;
        }
        if (timeout) {
            timeout = *timeout - std::chrono::duration_cast<Duration>(std::chrono::steady_clock::now() - start);
            if (timeout->count() < 0) timeout = Duration(0);
        }
        std::vector<std::byte> bytes = mproc::dumps(item);
        return core.put(std::span<const std::byte>(bytes), timeout);
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
