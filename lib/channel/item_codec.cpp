// Type-erased item encoding for channels. See mproc/detail/item_codec.hpp.
#include "mproc/detail/item_codec.hpp"

#include <chrono>

namespace mproc::detail {

bool put_encoded(ChannelCore& core, const ItemEncoder& item, Timeout timeout) {
    const auto start = std::chrono::steady_clock::now();
    switch (core.put_in_place(item.in_place, item.item, timeout)) {
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
    const std::vector<std::byte> bytes = item.to_bytes(item.item);
    return core.put(std::span<const std::byte>(bytes), timeout);
}

}  // namespace mproc::detail
