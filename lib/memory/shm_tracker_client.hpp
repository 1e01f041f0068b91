// This process's side of the shared-memory tracker (lib/os/shm_tracker.hpp):
// starts it on first use, asks it to make tracked names, tells it which
// names to forget, and at normal exit waits until it has unlinked them.
//
// Per process: a forked child does not inherit its parent's tracking (Python
// 3.13's rule, that only the creator tracks): the atfork child handler
// closes the parent's socket end there, so the parent's death alone ends its
// tracker, and the child starts its own if it creates tracked names. A
// tracker that died (someone killed it) is restarted on next use and told
// the names this process still tracks.
//
// Thread safety: every call may be made from any thread. reserve() blocks
// for one round trip to the tracker. Internal header.
#pragma once

#include <cstdint>
#include <string>

namespace mproc::detail::shm_tracker {

struct Inode {
    std::uint64_t dev = 0;
    std::uint64_t ino = 0;
};

/// Makes /dev/shm/<name> (O_EXCL, mode 0600) through this process's
/// tracker, which unlinks it when this process ends unless forget() is
/// called first. OSError as shm_open would give (EEXIST, EACCES, ...).
Inode reserve(const std::string& name);

/// Stops tracking `name`; nothing if this process does not track it.
void forget(const std::string& name) noexcept;

/// Runs the test fault hook, if one is set, at `point`.
void fault_point(const char* point) noexcept;

}  // namespace mproc::detail::shm_tracker
