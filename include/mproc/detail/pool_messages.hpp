// The pool's message layouts (internal; shared by the submitter, every
// worker transport and the worker loop). A task message: TaskHeader, the
// function reference bytes (entry + function), the items. A result message:
// ResultHeader, then the chunk's outcomes (or one exception).
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
    worker_died,  // from the transport: `code` is the exit code (-N: signal N)
    stop,         // from the submitter itself: the result thread ends
};

struct ResultHeader {
    std::uint64_t chunk = 0;
    ResultKind kind = ResultKind::outcomes;
    std::int32_t code = 0;
    std::int32_t pid = 0;    // worker_died: the dead worker's id
    std::uint32_t slot = 0;  // worker_died: its slot
};

}  // namespace mproc::detail
