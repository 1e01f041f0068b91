// The remote manager: proxies on a connected Manager send each operation
// over TCP to the manager's server process, which runs it on the heap.
// Internal header (lib/manager/remote.cpp).
//
// Wire: frames of [u32 length][body], little-endian. A request is
// [op u8][object offset u64][kind u32][type tag u64][index i64][n u32]
// then n fields of [u32 length][bytes]; a reply is [status u8][n u32] and
// n fields. Authentication first, both ways, as Python's: a 32-byte random
// challenge answered with its HMAC-SHA256 under the authkey.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "mproc/detail/manager_core.hpp"

namespace mproc::detail {

struct RemoteOps {
    static SharedObject make(RemoteLinkPtr link, std::uint64_t off, ObjectKind kind, std::uint64_t tag);
    static void dict_set(const SharedObject& o, Bytes key, Bytes value);
    static void dict_set_many(const SharedObject& o, std::span<const Bytes> keys, std::span<const Bytes> values);
    static bool dict_get(const SharedObject& o, Bytes key, BytesSink sink);
    static bool dict_erase(const SharedObject& o, Bytes key, const BytesSink* sink);
    static bool dict_insert(const SharedObject& o, Bytes key, Bytes value);
    static void dict_rewrite(const SharedObject& o, Bytes key, Rewriter rewrite);
    static void dict_items(const SharedObject& o, PairSink sink);
    static void list_extend(const SharedObject& o, std::span<const Bytes> values);
    static void list_at(const SharedObject& o, std::int64_t index, BytesSink sink);
    static void list_set(const SharedObject& o, std::int64_t index, Bytes value);
    static void list_rewrite(const SharedObject& o, std::int64_t index, Rewriter rewrite);
    static void list_insert(const SharedObject& o, std::int64_t index, Bytes value);
    static void list_pop(const SharedObject& o, std::int64_t index, BytesSink sink);
    static void list_items(const SharedObject& o, BytesSink sink);
    static void value_set(const SharedObject& o, Bytes value);
    static void value_get(const SharedObject& o, BytesSink sink);
    static void value_rewrite(const SharedObject& o, Rewriter rewrite);
    static bool queue_put(const SharedObject& o, Bytes value, Timeout timeout);
    static bool queue_get(const SharedObject& o, BytesSink sink, Timeout timeout);
    static void queue_task_done(const SharedObject& o);
    static bool queue_join(const SharedObject& o, Timeout timeout);
    static std::size_t queue_maxsize(const SharedObject& o);
    static std::size_t size(const SharedObject& o);
    static void clear(const SharedObject& o);
    static void publish(const SharedObject& o, const std::string& name);
};

}  // namespace mproc::detail
