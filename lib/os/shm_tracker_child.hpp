// The shared-memory tracker's process itself: the clone, and all that the
// child runs. Internal to lib/os/shm_tracker.cpp; see shm_tracker.hpp for
// the tracker, and shm_tracker_child.cpp for why this is a file of its own.
#pragma once

#include <sys/types.h>

namespace mproc::os::shm_tracker {

/// Clones this process (no exit signal, no atfork handlers) into a tracker
/// that serves `sock`, its end of the creator's socket pair, until the
/// creator's end closes. Returns the tracker's pid, or -1 with errno set;
/// never returns in the child.
pid_t clone_tracker(int sock) noexcept;

}  // namespace mproc::os::shm_tracker
