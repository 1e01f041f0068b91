#include "support.hpp"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <atomic>
#include <exception>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>

#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <poll.h>
#include <unistd.h>

extern char** environ;

namespace mproc_test {

std::pair<std::optional<int>, std::string> run_capturing(char* const argv[], bool with_stderr) {
    const int out = ::memfd_create("mproc-test-output", MFD_CLOEXEC);
    if (out < 0) throw std::runtime_error("memfd_create failed");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out, 1);
    if (with_stderr) posix_spawn_file_actions_adddup2(&fa, out, 2);
    pid_t pid;
    const int e = ::posix_spawn(&pid, argv[0], &fa, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (e != 0) {
        ::close(out);
        throw std::runtime_error(std::string("posix_spawn ") + argv[0] + ": " + std::strerror(e));
    }
    std::optional<int> code = wait_child(pid);
    std::string text;
    char buf[4096];
    ssize_t n;
    ::lseek(out, 0, SEEK_SET);
    while ((n = ::read(out, buf, sizeof buf)) > 0) text.append(buf, static_cast<std::size_t>(n));
    ::close(out);
    return {code, text};
}

pid_t fork_child(const std::function<void()>& fn) {
    const pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) {
        std::perror("fork");
        std::abort();
    }
    if (pid == 0) {
        // Die with the test: a failed REQUIRE in the parent must not leave
        // children running (the leak check would flag them, rightly).
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(98);  // it died before prctl took effect
        int code = 0;
        try {
            fn();
        } catch (const std::exception& e) {
            std::fprintf(stderr, "child %d: %s\n", ::getpid(), e.what());
            code = 1;
        } catch (...) {
            code = 1;
        }
        std::fflush(nullptr);
        ::_exit(code);
    }
    return pid;
}

std::optional<int> wait_child(pid_t pid, std::chrono::seconds timeout) {
    int pfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (pfd >= 0) {
        pollfd p{pfd, POLLIN, 0};
        int r;
        do r = ::poll(&p, 1, static_cast<int>(timeout.count() * 1000));
        while (r < 0 && errno == EINTR);
        ::close(pfd);
        if (r == 0) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, nullptr, 0);
            return std::nullopt;
        }
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return -WTERMSIG(status);
    return std::nullopt;
}

namespace {

// The syscall a process is blocked in, or -1 if it is running (or gone).
long blocked_syscall(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/syscall");
    std::string first;
    if (!(f >> first) || first == "running") return -1;
    try {
        return std::stol(first);
    } catch (...) {
        return -1;
    }
}

}  // namespace

bool asleep(pid_t pid) {
    std::ifstream st("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(st, line);
    auto close = line.rfind(')');
    if (close == std::string::npos || close + 2 >= line.size() || line[close + 2] != 'S') return false;
    long nr = blocked_syscall(pid);
    return nr == SYS_futex || nr == SYS_poll || nr == SYS_ppoll;
}

bool wait_asleep(pid_t pid, std::chrono::steady_clock::time_point until) {
    while (!asleep(pid)) {
        if (std::chrono::steady_clock::now() > until) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));  // polling /proc, not synchronizing the library
    }
    return true;
}

std::string unique_shm_name(const std::string& what) {
    static std::atomic<int> n{0};
    return "mproc-test-" + what + "-" + std::to_string(::getpid()) + "-" + std::to_string(n++);
}

std::set<std::string> shm_entries() {
    std::set<std::string> s;
    for (const auto& e : std::filesystem::directory_iterator("/dev/shm")) {
        std::string name = e.path().filename();
        // Not this test's: other tests' names, and the shared-memory files
        // of an MPI job that runs meanwhile (Open MPI's vader transport).
        if (name.rfind("mproc-test-", 0) == 0 || name.rfind("vader_segment.", 0) == 0) continue;
        s.insert(name);
    }
    return s;
}

std::set<std::string> shm_files_held() {
    std::set<std::string> held;
    std::ifstream maps("/proc/self/maps");
    for (std::string line; std::getline(maps, line);)
        if (auto at = line.find("/dev/shm/"); at != std::string::npos) held.insert(line.substr(at));
    for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
        std::error_code ec;
        auto target = std::filesystem::read_symlink(e.path(), ec).string();
        if (!ec && target.rfind("/dev/shm/", 0) == 0) held.insert(target);
    }
    return held;
}

bool shm_exists(const std::string& name) { return std::filesystem::exists("/dev/shm/" + name); }

ExitWatch::ExitWatch(pid_t pid) : fd_(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0))) {
    if (fd_ < 0) throw std::runtime_error("pidfd_open(" + std::to_string(pid) + ") failed");
}

ExitWatch::~ExitWatch() { ::close(fd_); }

bool ExitWatch::wait(std::chrono::seconds timeout) const {
    pollfd p{fd_, POLLIN, 0};
    int r;
    do r = ::poll(&p, 1, static_cast<int>(timeout.count() * 1000));
    while (r < 0 && errno == EINTR);
    return r == 1;
}

namespace {
void on_alarm(int) {
    static const char msg[] = "\n*** mproc test watchdog: the test ran too long (deadlock?); "
                              "killing it and its children ***\n";
    ssize_t ignored = ::write(2, msg, sizeof msg - 1);
    (void)ignored;
    ::kill(0, SIGKILL);
    ::_exit(99);
}
}  // namespace

void arm_watchdog(unsigned seconds) {
    // Own process group, so the watchdog's kill reaches every child and
    // nothing else.
    if (::getpgrp() != ::getpid()) ::setpgid(0, 0);
    struct sigaction sa {};
    sa.sa_handler = on_alarm;
    ::sigaction(SIGALRM, &sa, nullptr);
    ::alarm(seconds);
}

}  // namespace mproc_test
