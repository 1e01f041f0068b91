// The os layer's process calls. See process.hpp.
#include "os/process.hpp"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <stdio_ext.h>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/single_threaded.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#if !defined(__GLIBC__) || !__GLIBC_PREREQ(2, 29)
#error "mproc needs glibc 2.29 or later: posix_spawn_file_actions_adddup2(fd, fd) must clear close-on-exec"
#endif

namespace mproc::os {

// ---- creating processes -------------------------------------------------

pid_t fork_process() {
    pid_t p = ::fork();
    if (p < 0) throw_errno("fork");
    return p;
}

namespace {
struct FileActions {
    posix_spawn_file_actions_t fa;
    FileActions() {
        if (int e = ::posix_spawn_file_actions_init(&fa)) throw_errno("posix_spawn_file_actions_init", {}, e);
    }
    ~FileActions() { ::posix_spawn_file_actions_destroy(&fa); }
};
}  // namespace

pid_t spawn(const char* path, char* const argv[], char* const envp[], std::span<const int> inherit) {
    FileActions actions;
    for (int fd : inherit) {
        // glibc >= 2.29: dup2 onto itself clears FD_CLOEXEC in the child.
        if (int e = ::posix_spawn_file_actions_adddup2(&actions.fa, fd, fd))
            throw_errno("posix_spawn_file_actions_adddup2", std::to_string(fd), e);
    }
    pid_t pid = -1;
    int e;
    do e = ::posix_spawn(&pid, path, &actions.fa, nullptr, argv, envp);
    while (e == EINTR);
    if (e != 0) throw_errno("posix_spawn", path, e);
    return pid;
}

namespace {
// Calls that only a forked child makes. The parent never calls them, so a
// lazily bound PLT entry would be bound afresh in every child: the dynamic
// linker's symbol lookup reads a dozen pages that a new copy-on-write
// address space has yet to fault in (about 10% of a fork+exit). Pointers
// taken at load time (volatile, so calls are not folded back into PLT
// calls) are bound once, by the loader, before any fork.
decltype(&::_exit) volatile g_exit = ::_exit;
decltype(&::getppid) volatile g_getppid = ::getppid;
decltype(&::prctl) volatile g_prctl = ::prctl;
decltype(&::on_exit) volatile g_on_exit = ::on_exit;
}  // namespace

void exit_now(int code) noexcept {
    g_exit(code);
    __builtin_unreachable();
}

void at_fork(void (*prepare)(), void (*parent)(), void (*child)()) {
    if (int e = ::pthread_atfork(prepare, parent, child)) throw_errno("pthread_atfork", {}, e);
}

namespace {
struct ForkLock {
    std::mutex* m;
    int rank;
    void (*in_child)();
};
struct ForkLocks {
    std::mutex mu;                // the list; held across fork too
    std::vector<ForkLock> locks;  // ascending rank
};
ForkLocks& fork_locks();

void take_fork_locks() {
    ForkLocks& fl = fork_locks();
    fl.mu.lock();
    for (ForkLock& k : fl.locks) k.m->lock();
}
void release_fork_locks() {
    ForkLocks& fl = fork_locks();
    for (auto it = fl.locks.rbegin(); it != fl.locks.rend(); ++it) it->m->unlock();
    fl.mu.unlock();
}
void release_fork_locks_in_child() {
    for (ForkLock& k : fork_locks().locks)
        if (k.in_child) k.in_child();
    release_fork_locks();
}

ForkLocks& fork_locks() {
    static ForkLocks* f = [] {
        auto* l = new ForkLocks;  // never destroyed: forks may come from exit paths
        at_fork(take_fork_locks, release_fork_locks, release_fork_locks_in_child);
        return l;
    }();
    return *f;
}
}  // namespace

void hold_across_fork(std::mutex& m, int rank, void (*in_child)()) {
    ForkLocks& fl = fork_locks();
    std::lock_guard<std::mutex> g(fl.mu);
    auto at = std::find_if(fl.locks.begin(), fl.locks.end(), [&](const ForkLock& k) { return k.rank > rank; });
    fl.locks.insert(at, ForkLock{&m, rank, in_child});
}

void call_on_exit(void (*fn)(int status, void* arg), void* arg) {
    if (g_on_exit(fn, arg) != 0) throw Error("on_exit: no room for another exit handler");
}

// ---- waiting ------------------------------------------------------------

int decode_wait_status(int status) noexcept {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return -WTERMSIG(status);
    return 255;
}

std::optional<int> reap(int pidfd, bool block) {
    for (;;) {
        siginfo_t info{};
        int r = ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &info,
                         WEXITED | (block ? 0 : WNOHANG));
        if (r == 0) {
            if (info.si_pid == 0) return std::nullopt;  // WNOHANG: still running
            if (info.si_code == CLD_EXITED) return info.si_status;
            return -info.si_status;  // CLD_KILLED, CLD_DUMPED
        }
        if (errno == EINTR) continue;
        // ECHILD: someone else reaped it (SIGCHLD set to SIG_IGN, or a
        // waitpid(-1) elsewhere in the program). The status is lost.
        if (errno == ECHILD) return 255;
        throw_errno("waitid(P_PIDFD)", std::to_string(pidfd));
    }
}

void kill_and_reap(pid_t pid) noexcept {
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
}

bool send_signal(int pidfd, int sig) {
    if (::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0) == 0) return true;
    if (errno == ESRCH) return false;
    throw_errno("pidfd_send_signal", std::to_string(sig));
}

// ---- this process -------------------------------------------------------

void set_parent_death_signal(int sig) {
    if (g_prctl(PR_SET_PDEATHSIG, static_cast<unsigned long>(sig), 0, 0, 0) != 0)
        throw_errno("prctl(PR_SET_PDEATHSIG)");
}

pid_t parent_pid() noexcept { return g_getppid(); }

int thread_count() noexcept {
    // glibc clears this at the first pthread_create and never sets it again.
    if (__libc_single_threaded) return 1;
    // Field 20 of /proc/self/stat, counted after the ")" that closes the
    // command name (which may itself contain spaces and parentheses).
    int fd;
    do fd = ::open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) return 0;
    char buf[1024];
    ssize_t n;
    do n = ::read(fd, buf, sizeof buf - 1);
    while (n < 0 && errno == EINTR);
    ::close(fd);
    if (n <= 0) return 0;
    buf[n] = '\0';
    const char* p = std::strrchr(buf, ')');
    if (!p) return 0;
    // After ")": field 3 (state) is the first; num_threads is field 20.
    int field = 2;
    for (++p; *p; ++p) {
        if (*p == ' ') {
            ++field;
            if (field == 20) return std::atoi(p + 1);
        }
    }
    return 0;
}

int affinity_cpu_count() {
    for (int ncpus = 1024;; ncpus *= 2) {
        cpu_set_t* set = CPU_ALLOC(ncpus);
        if (!set) throw std::bad_alloc();
        std::size_t size = CPU_ALLOC_SIZE(ncpus);
        int r = ::sched_getaffinity(0, size, set);
        if (r == 0) {
            int n = CPU_COUNT_S(size, set);
            CPU_FREE(set);
            return n > 0 ? n : 1;
        }
        int err = errno;
        CPU_FREE(set);
        if (err != EINVAL || ncpus > (1 << 20)) throw_errno("sched_getaffinity", "self", err);
    }
}

void flush_stdio() noexcept { std::fflush(nullptr); }

void flush_stdout_stderr() noexcept {
    if (::__fpending(stdout) > 0) std::fflush(stdout);
    if (::__fpending(stderr) > 0) std::fflush(stderr);
}

void random_bytes(std::span<std::byte> out) {
    std::size_t done = 0;
    while (done < out.size()) {
        ssize_t r = ::getrandom(out.data() + done, out.size() - done, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            throw_errno("getrandom");
        }
        done += static_cast<std::size_t>(r);
    }
}

void unset_env(const char* name) noexcept { ::unsetenv(name); }

// ---- signals ------------------------------------------------------------

sigset_t block_all_signals() {
    sigset_t all, old;
    sigfillset(&all);
    if (int e = ::pthread_sigmask(SIG_SETMASK, &all, &old)) throw_errno("pthread_sigmask", "all", e);
    return old;
}

void restore_signals(const sigset_t& mask) noexcept { ::pthread_sigmask(SIG_SETMASK, &mask, nullptr); }

void block_signal(int sig, bool blocked) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    if (int e = ::pthread_sigmask(blocked ? SIG_BLOCK : SIG_UNBLOCK, &set, nullptr))
        throw_errno("pthread_sigmask", std::to_string(sig), e);
}

void ignore_signal(int sig, bool ignored) {
    struct sigaction sa {};
    sa.sa_handler = ignored ? SIG_IGN : SIG_DFL;
    sigemptyset(&sa.sa_mask);
    if (::sigaction(sig, &sa, nullptr) != 0) throw_errno("sigaction", std::to_string(sig));
}

void raise_signal(int sig) noexcept { ::raise(sig); }

Fd signal_fd(int sig) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    int fd = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (fd < 0) throw_errno("signalfd", std::to_string(sig));
    return Fd(fd);
}

void drain_signal_fd(int fd) noexcept {
    signalfd_siginfo info[8];
    for (;;) {
        ssize_t r = ::read(fd, info, sizeof info);
        if (r > 0) continue;
        if (r < 0 && errno == EINTR) continue;
        return;
    }
}

std::optional<std::pair<pid_t, int>> reap_any() noexcept {
    for (;;) {
        int status = 0;
        pid_t p = ::waitpid(-1, &status, WNOHANG);
        if (p > 0) return std::pair<pid_t, int>{p, decode_wait_status(status)};
        if (p < 0 && errno == EINTR) continue;
        return std::nullopt;
    }
}

// ---- fds ----------------------------------------------------------------

Fd dup_at_least(int fd, int min) {
    int r = ::fcntl(fd, F_DUPFD_CLOEXEC, min);
    if (r < 0) throw_errno("fcntl(F_DUPFD_CLOEXEC)", std::to_string(fd));
    return Fd(r);
}

void dup_to(int from, int to) {
    int r;
    do r = ::dup2(from, to);
    while (r < 0 && errno == EINTR);
    if (r < 0) throw_errno("dup2", std::to_string(from) + " -> " + std::to_string(to));
}

void close_range(unsigned first, unsigned last) noexcept {
    if (first > last) return;
    if (::syscall(SYS_close_range, first, last, 0) == 0) return;
    for (unsigned fd = first; fd <= last && fd < 65536; ++fd) ::close(static_cast<int>(fd));
}

void write_all(int fd, std::span<const std::byte> data, std::string_view what) {
    std::size_t done = 0;
    while (done < data.size()) {
        ssize_t r = ::write(fd, data.data() + done, data.size() - done);
        if (r < 0) {
            if (errno == EINTR) continue;
            throw_errno("write", what);
        }
        done += static_cast<std::size_t>(r);
    }
}

std::vector<std::byte> read_all(int fd, std::string_view what) {
    std::vector<std::byte> out(4096);
    std::size_t have = 0;
    for (;;) {
        if (have == out.size()) out.resize(out.size() * 2);
        ssize_t r = ::read(fd, out.data() + have, out.size() - have);
        if (r < 0) {
            if (errno == EINTR) continue;
            throw_errno("read", what);
        }
        if (r == 0) break;
        have += static_cast<std::size_t>(r);
    }
    out.resize(have);
    return out;
}

Fd open_cwd() noexcept {
    int fd;
    do fd = ::open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    return Fd(fd < 0 ? -1 : fd);
}

void change_dir(int fd) {
    if (::fchdir(fd) != 0) throw_errno("fchdir", std::to_string(fd));
}

void rewind(int fd, std::string_view what) {
    if (::lseek(fd, 0, SEEK_SET) < 0) throw_errno("lseek", what);
}

std::string signal_name(int sig) {
    const char* name = sigabbrev_np(sig);
    return name ? std::string("SIG") + name : std::string();
}

}  // namespace mproc::os
