// Helpers shared by mproc's tests: raw fork/wait (for the layers below
// Process), and the watchdog that turns a deadlock into a failure.
#pragma once

#include <chrono>
#include <functional>
#include <optional>

#include <sys/types.h>

namespace mproc_test {

/// Forks a child that runs `fn` and exits 0, or 1 if it threw. The child
/// never returns into Catch.
pid_t fork_child(const std::function<void()>& fn);

/// Waits for a child; its exit code, or -N if signal N killed it. A child
/// still running after `timeout` is killed and the call returns nullopt.
std::optional<int> wait_child(pid_t pid, std::chrono::seconds timeout = std::chrono::seconds(60));

/// Arms the whole-process watchdog: after `seconds`, print a message and
/// kill this process group (the test and every child it started).
void arm_watchdog(unsigned seconds);

}  // namespace mproc_test
