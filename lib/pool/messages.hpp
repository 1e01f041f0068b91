// The pool's message layouts (internal). A task message: TaskHeader, the
// reference bytes (entry + function), the items. A result message:
// ResultHeader, then the chunk's outcomes. Both travel as raw bytes through
// a PoolChannel.
#pragma once

#include <cstdint>

namespace mproc::detail {

struct TaskHeader {
    std::uint64_t chunk = 0;  // 0: stop
    std::uint32_t count = 0;
    std::uint32_t ref_size = 0;
};

enum class ResultKind : std::uint32_t {
    outcomes,     // the chunk's outcomes follow
    chunk_error,  // the worker could not run the chunk: one exception follows
    worker_died,  // from the watcher: `code` is the exit code (-N: signal N)
    stop,         // from the pool itself: the result thread ends
};

struct ResultHeader {
    std::uint64_t chunk = 0;
    ResultKind kind = ResultKind::outcomes;
    std::int32_t code = 0;
    std::int32_t pid = 0;  // worker_died: the dead worker
};

}  // namespace mproc::detail
