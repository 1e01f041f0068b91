// Deterministic fault injection: named points in the library where a test
// can have the process kill itself (SIGKILL) or stop (SIGSTOP) at exactly
// that instruction, on the Nth time it gets there.
//
//     MPROC_FAULT=ring.put_published:3           SIGKILL at the 3rd hit
//     MPROC_FAULT=ring.woken:1:stop,...      SIGSTOP at the 1st hit
//
// The variable is read when a process starts (so spawned children and the
// fork server see their environment) and again in every forked child, which
// counts its hits from zero; a test can also arm the current process with
// mproc::detail::arm_fault() (include/mproc/detail/fault.hpp). Unarmed, a
// fault point costs one relaxed load and a branch that is never taken.
//
// The points (grep for fault_point to find them all):
//   ring.put_publish   a writer has written its item; the commit is next
//   ring.put_published its item is visible to readers; nothing done since
//   ring.get_looked    a reader has cached half of its look at the writers
//   ring.get_publish   a reader has read its item; the commit is next
//   ring.get_published its room is visible to writers; nothing done since
//   ring.woken         a ring waiter has just come back from its sleep
//   sync.publish / sync.published / sync.woken   the same for Semaphore,
//                   Event, Condition and Barrier
//   join.publish / join.published                JoinableQueue.task_done
//   lock.acquired   Lock/RLock/ring lock: just taken, nothing done under it yet
//   lock.releasing  ring lock (OwnerLock): unlock has found no waiter flagged; its
//                   plain store of 0 is next
//
// Internal header.
#pragma once

#include <atomic>
#include <string_view>

namespace mproc::os {

namespace fault_detail {
extern std::atomic<bool> armed;
void hit(const char* name) noexcept;
}  // namespace fault_detail

inline void fault_point(const char* name) noexcept {
    if (__builtin_expect(fault_detail::armed.load(std::memory_order_relaxed), false))
        fault_detail::hit(name);
}

/// Replaces this process's armed points with those of `spec`
/// ("name:N[:stop],..."; empty disarms). ValueError for a malformed spec.
void arm_faults(std::string_view spec);

}  // namespace mproc::os
