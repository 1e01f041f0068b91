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

#include "mproc/detail/channel.hpp"
#include "mproc/errors.hpp"
#include "mproc/serialization.hpp"

namespace mproc::detail {

/// Raw bytes exactly when the serializer would take its raw-bytes path
/// (trivially copyable, no serialize() of its own, not a handle, not bool,
/// not a pointer or view): the same rule on both sides of every channel.
template <class T>
inline constexpr bool is_raw_item = is_bitwise_v<T>;

/// A serializable item with its type erased, for the code that does not
/// know T (a Connection's transport): it can write itself straight into a
/// buffer, or into bytes of its own.
struct ItemEncoder {
    ChannelCore::Encoder in_place;
    std::vector<std::byte> (*to_bytes)(const void* item);
    const void* item;
};

template <class T>
ItemEncoder item_encoder(const T& item) {
    auto encode = [](const void* p, std::span<std::byte> into, bool& fits) -> std::size_t {
        SpanOutBuf out(into);
        dump_to(out, *static_cast<const T*>(p));
        fits = out.fits();
        return out.written();
    };
    auto to_bytes = [](const void* p) { return mproc::dumps(*static_cast<const T*>(p)); };
    return ItemEncoder{encode, to_bytes, &item};
}

/// Puts an encoded item on a channel; false on timeout. It is serialized
/// straight into the ring (copy once, no allocation); only when the ring has
/// no contiguous room for it right now (nearly full, at its wrap point, or
/// an item too large for it) is it encoded into a buffer first and put()
/// the usual way, which waits or spills.
bool put_encoded(ChannelCore& core, const ItemEncoder& item, Timeout timeout);

/// Puts one item on a channel; false on timeout. Raw items are one memcpy;
/// others go through put_encoded.
template <class T>
bool put_item(ChannelCore& core, const T& item, Timeout timeout) {
    if constexpr (is_raw_item<T>) {
        return core.put(std::as_bytes(std::span<const T, 1>(&item, 1)), timeout);
    } else {
        return put_encoded(core, item_encoder(item), timeout);
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
