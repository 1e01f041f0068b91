// The os layer's process calls: fork, posix_spawn, waiting through pidfds,
// signals, parent-death signals, CPU affinity and fd shuffling for
// children (sockets, and messages that carry fds, are in socket.hpp). Every
// call retries EINTR and throws OSError naming the call.
//
// Internal header: never included by a public header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <span>
#include <string_view>
#include <vector>

#include <signal.h>
#include <sys/types.h>

#include "os/os.hpp"

namespace mproc::os {

// ---- creating processes -------------------------------------------------

/// fork(2): 0 in the child, the child's pid in the parent.
pid_t fork_process();

/// posix_spawn(path, argv, envp). Each fd in `inherit` appears in the child
/// under the same number with close-on-exec cleared (the parent's copy keeps
/// its flags). Returns once the child has exec'd (glibc spawns with
/// CLONE_VFORK), so the child holds the fds by then.
pid_t spawn(const char* path, char* const argv[], char* const envp[],
            std::span<const int> inherit);

/// _exit(2) after nothing else.
[[noreturn]] void exit_now(int code) noexcept;
/// pthread_atfork(3): handlers that run around every fork() of this process
/// (not around _Fork or posix_spawn).
void at_fork(void (*prepare)(), void (*parent)(), void (*child)());
/// A process-local mutex that fork() must never copy held. A thread that
/// forks while another holds such a mutex would give the child a copy that
/// no thread of the child will ever unlock; the child's first lock of it
/// then hangs (a pool worker forked by the watcher thread while the main
/// thread registered a segment did). Every fork() of this process takes
/// every registered mutex first, in ascending `rank`, and both sides release
/// them after, the child after running `in_child` (nullptr: nothing) under
/// them. A mutex taken while another registered one is held needs the
/// higher rank (ForkRank). Register before the mutex is first used, e.g.
/// where it is created; registrations are never undone (use it for mutexes
/// that live as long as the process).
enum ForkRank : int {
    kForkRankLog = 10,       // the log's state (creates its ring: a segment)
    kForkRankImport = 20,    // one handle import at a time (registers segments)
    kForkRankSegments = 30,  // the segment and descriptor registry
    kForkRankLeaf = 40,      // mutexes under which no registered one is taken
};
void hold_across_fork(std::mutex& m, int rank, void (*in_child)() = nullptr);
/// on_exit(3): `fn` runs at exit() with the exit status, before the
/// handlers registered earlier (atexit's order).
void call_on_exit(void (*fn)(int status, void* arg), void* arg);

// ---- waiting ------------------------------------------------------------

/// Reaps the exited child behind `pidfd` (waitid(P_PIDFD, WEXITED)); with
/// `block` false returns nullopt while it runs. The result uses Python's
/// convention: the exit status, or -N for death by signal N.
std::optional<int> reap(int pidfd, bool block);

/// SIGKILL and waitpid for one child (when a start fails half-way).
void kill_and_reap(pid_t pid) noexcept;

/// pidfd_send_signal(pidfd, sig). False if the process has already exited
/// (ESRCH): signalling a finished child is not an error.
bool send_signal(int pidfd, int sig);

/// A wait status from waitpid(2) in Python's convention (see reap).
int decode_wait_status(int status) noexcept;

// ---- this process -------------------------------------------------------

/// prctl(PR_SET_PDEATHSIG, sig): the kernel sends `sig` when the thread
/// that created this process exits.
void set_parent_death_signal(int sig);
pid_t parent_pid() noexcept;
/// Threads in this process (/proc/self/stat); 0 if it cannot be read.
/// 1 at no cost in a process that never started a thread.
int thread_count() noexcept;
/// CPUs in this process's affinity mask (sched_getaffinity), at least 1.
int affinity_cpu_count();
/// fflush(nullptr): every C stdio stream (iostreams synced with stdio
/// write through them).
void flush_stdio() noexcept;
/// fflush(stdout) and fflush(stderr), each only if it holds unwritten
/// bytes (an fflush writes its FILE's lock even when there is nothing to
/// do, which costs a page fault in a fresh fork).
void flush_stdout_stderr() noexcept;
/// getrandom(2) into `out`, blocking until the pool is ready.
void random_bytes(std::span<std::byte> out);
/// unsetenv(3).
void unset_env(const char* name) noexcept;

// ---- signals ------------------------------------------------------------

/// Blocks every signal for the calling thread; restore with the result.
/// Around fork, so that no handler runs in the child before libc has
/// finished setting it up (a handler that mallocs would deadlock there).
sigset_t block_all_signals();
void restore_signals(const sigset_t& mask) noexcept;
/// Blocks (or unblocks) one signal for the calling thread.
void block_signal(int sig, bool blocked);
/// Sets a signal to SIG_IGN (ignore) or SIG_DFL.
void ignore_signal(int sig, bool ignored);
/// raise(3): sends `sig` to the calling thread.
void raise_signal(int sig) noexcept;
/// signalfd(SFD_CLOEXEC|SFD_NONBLOCK) for one (already blocked) signal.
Fd signal_fd(int sig);
/// Reads every pending siginfo from a non-blocking signalfd.
void drain_signal_fd(int fd) noexcept;
/// waitpid(-1, WNOHANG): the next exited child and its decoded status.
std::optional<std::pair<pid_t, int>> reap_any() noexcept;

// ---- fds ----------------------------------------------------------------

/// fcntl(F_DUPFD_CLOEXEC, min): a copy of fd numbered at least `min`.
Fd dup_at_least(int fd, int min);
/// dup2(from, to); the copy is inheritable (no close-on-exec).
void dup_to(int from, int to);
/// close_range(first, last) (inclusive).
void close_range(unsigned first, unsigned last) noexcept;
/// Writes all of `data` (blocking).
void write_all(int fd, std::span<const std::byte> data, std::string_view what);
/// Reads until end of file (pipe, memfd positioned at its start).
std::vector<std::byte> read_all(int fd, std::string_view what);
/// open(".", O_PATH | O_DIRECTORY); an empty Fd if that fails (the
/// directory was removed, say).
Fd open_cwd() noexcept;
/// fchdir(fd).
void change_dir(int fd);
/// lseek(fd, 0, SEEK_SET).
void rewind(int fd, std::string_view what);

/// "SIGKILL" for 9 (sigabbrev_np), or "" for an unknown number.
std::string signal_name(int sig);

}  // namespace mproc::os
