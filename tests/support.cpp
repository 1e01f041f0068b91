#include "support.hpp"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <thread>

#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <poll.h>
#include <unistd.h>

namespace mproc_test {

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
