// Helpers shared by mproc's tests: raw fork/wait (for the layers below
// Process), and the watchdog that turns a deadlock into a failure.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include <sys/types.h>

namespace mproc_test {

/// Forks a child that runs `fn` and exits 0, or 1 if it threw. The child
/// never returns into Catch.
pid_t fork_child(const std::function<void()>& fn);

/// Waits for a child; its exit code, or -N if signal N killed it. A child
/// still running after `timeout` is killed and the call returns nullopt.
std::optional<int> wait_child(pid_t pid, std::chrono::seconds timeout = std::chrono::seconds(60));

/// True while `pid` sleeps in the kernel in a futex (or poll, for a pipe):
/// from then on only a wake-up (or a timeout) moves it.
bool asleep(pid_t pid);
/// Polls /proc until `pid` is asleep (true) or `until` passes (false).
bool wait_asleep(pid_t pid, std::chrono::steady_clock::time_point until);

/// Runs program `argv[0]` (posix_spawn, this environment) with its stdout
/// (and, with `with_stderr`, its stderr) going to a memfd; returns its exit
/// code as wait_child does and what it wrote.
std::pair<std::optional<int>, std::string> run_capturing(char* const argv[], bool with_stderr = false);

/// A /dev/shm name no other test process uses: "mproc-test-<what>-<pid>-<n>".
std::string unique_shm_name(const std::string& what);
/// The /dev/shm entries, less the "mproc-test-" ones that tests running in
/// parallel make and remove meanwhile.
std::set<std::string> shm_entries();
/// The /dev/shm files this process maps or holds open: what an anonymous
/// segment must never add. Unlike shm_entries(), no other test can change it.
std::set<std::string> shm_files_held();
bool shm_exists(const std::string& name);

/// Becomes ready when a process exits — any process, not only a child (a
/// pidfd). Make it while the process is known to be alive.
class ExitWatch {
public:
    explicit ExitWatch(pid_t pid);
    ~ExitWatch();
    ExitWatch(const ExitWatch&) = delete;
    ExitWatch& operator=(const ExitWatch&) = delete;
    /// True once the process has exited; false if the timeout passed first.
    bool wait(std::chrono::seconds timeout) const;

private:
    int fd_;
};

/// Arms the whole-process watchdog: after `seconds`, print a message and
/// kill this process group (the test and every child it started).
void arm_watchdog(unsigned seconds);

}  // namespace mproc_test
