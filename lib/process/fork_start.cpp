// The fork start method: the child is a copy of this process that calls
// run() on its copy of the Process object (the target, or a subclass's
// override) and exits. And the one-time warning about forking a process
// that runs other threads.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "os/process.hpp"
#include "process/internal.hpp"

namespace mproc {
namespace detail {

thread_local int t_quiet_fork = 0;
QuietForkScope::QuietForkScope() noexcept { ++t_quiet_fork; }
QuietForkScope::~QuietForkScope() { --t_quiet_fork; }

std::atomic<int> g_fork_warning{-1};  // -1: not decided yet

namespace {

std::atomic<bool> g_fork_warned{false};

bool fork_warning_enabled() {
    int v = g_fork_warning.load(std::memory_order_relaxed);
    if (v < 0) {
        const char* e = std::getenv("MPROC_NO_FORK_WARNING");
        v = (e && *e && std::string_view(e) != "0") ? 0 : 1;
        g_fork_warning.store(v, std::memory_order_relaxed);
    }
    return v == 1;
}

void maybe_warn_threads() {
    if (t_quiet_fork > 0) return;
    if (g_fork_warned.load(std::memory_order_relaxed) || !fork_warning_enabled()) return;
    int n = os::thread_count();
    if (n <= 1 || g_fork_warned.exchange(true)) return;
    std::fprintf(stderr,
                 "mproc: warning: process %d runs %d threads and forks a child; the child gets a "
                 "copy of every lock those threads hold and may deadlock. Use "
                 "StartMethod::forkserver (or spawn) in multi-threaded programs. "
                 "(MPROC_NO_FORK_WARNING=1 or mproc::set_fork_warning(false) silences this.)\n",
                 static_cast<int>(os::pid()), n);
}

}  // namespace

std::pair<pid_t, os::Fd> start_fork(Process& self, ChildInfo info) {
    const pid_t parent = info.parent;
    maybe_warn_threads();
    flush_std_streams();  // or the child would print the parent's buffered output again
    // The Process's mutex is not held here: a target that uses its own
    // Process (a copy made by fork) must find it free.
    const sigset_t mask = os::block_all_signals();
    pid_t pid;
    try {
        pid = os::fork_process();
    } catch (...) {
        os::restore_signals(mask);
        throw;
    }
    if (pid == 0) {
        // Signals wait until the child is set up (a terminate() right
        // after start() still lands, just not inside libc's fork).
        int code = 1;
        try {
            become_child(std::move(info), /*forked=*/true, parent);
            os::restore_signals(mask);
            code = run_guarded([&self] { self.run(); });
        } catch (const std::exception& e) {
            std::fprintf(stderr, "mproc: a forked child could not start: %s\n", e.what());
        }
        finish_child(code, /*forked=*/true);
    }
    os::restore_signals(mask);
    try {
        return {pid, os::pidfd_open(pid)};
    } catch (...) {
        os::kill_and_reap(pid);
        throw;
    }
}

}  // namespace detail

void set_fork_warning(bool enabled) { detail::g_fork_warning.store(enabled ? 1 : 0); }

}  // namespace mproc
