// mproc-top's census: every live mproc object the caller may see, found by
// scanning /proc/*/fd and /proc/*/maps for mproc's memfds (their names say
// what they are: "mproc-queue", "mproc-pool-tasks", "mproc-manager", ...)
// and POSIX shared memory (/dev/shm), then reading each object's own header
// through a read-only mapping. No registry: an object is listed exactly
// while some process holds it, so a crash can leave nothing stale behind.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

#include "channel/inspect.hpp"
#include "manager/inspect.hpp"

namespace mproc::top {

struct Holder {
    pid_t pid = 0;
    std::string command;  // /proc/pid/comm
    bool has_fd = false;  // holds an fd on it; false: only maps it (a fork
                          // that closed its fds, like the shm tracker)
};

struct Object {
    std::string kind;  // "queue", "joinable-queue", "pipe", "pool-tasks", "pool-results",
                       // "manager", "lock", "value", ..., "named-segment"
    std::string name;  // the memfd's name, or the segment's path
    std::uint64_t dev = 0, ino = 0, size = 0;
    bool size_known = false;  // a holder had an fd on it (a mapping alone does not say)
    std::vector<Holder> holders;  // ascending pid
    std::optional<detail::RingView> ring;
    std::optional<detail::HeapView> heap;
    // Processes of the ring's lock holders (from their thread ids).
    pid_t reader_pid = 0, writer_pid = 0;
};

struct Pool {
    pid_t owner = 0;                 // the process that made it
    std::vector<pid_t> workers;      // the other processes with an fd on its rings
    std::uint64_t queued = 0;        // chunks in the task ring, not yet taken
    std::uint64_t running = 0;       // taken and not yet answered (at most one per worker)
    std::uint64_t results_waiting = 0;  // answers in the result ring, not yet read by the owner
    std::uint64_t tasks_ino = 0, results_ino = 0;
};

struct Census {
    std::vector<Object> objects;  // ordered by kind, then first holder
    std::vector<Pool> pools;
};

/// Takes the census; `only_pid` (if nonzero) keeps the objects it holds.
Census take_census(pid_t only_pid = 0);

}  // namespace mproc::top
