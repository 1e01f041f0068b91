// mproc::detail: what tests and diagnostics may ask of the shared-memory
// tracker, the helper process that unlinks this process's tracked
// SharedMemory names when it exits (see lib/os/shm_tracker.hpp for how).
//
// Thread safety: both calls may be made from any thread. Nothing blocks.
#pragma once

namespace mproc::detail {

/// The pid of this process's tracker; 0 while it has none (it starts on the
/// first tracked SharedMemory::create).
int shm_tracker_pid() noexcept;

/// Fault injection for tests: `hook(point)` runs at each named point of a
/// tracked create. Points: "reserved" (the tracker has made and recorded
/// the name; this process has not yet opened or sized it). nullptr clears.
using ShmFaultHook = void (*)(const char* point);
void set_shm_fault_hook(ShmFaultHook hook) noexcept;

}  // namespace mproc::detail
