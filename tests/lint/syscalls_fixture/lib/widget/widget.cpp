// A fixture for lint.syscalls_finds_violations: each marked line must be
// reported by tools/check_syscalls.sh, and nothing else. Never compiled.
#include <unistd.h>                                // VIOLATION 1: system-call header
#include <signal.h>
#include "os/os.hpp"

// ::close(fd) in a comment is not a call, nor is "::write(" in a string.
/* ::read(fd, buf, n) in a block comment is not one either. */
void Widget::close() { os::close_fd(fd_); }
void Widget::kill() { signal_child(SIGKILL); }

int demo(int fd, char* buf) {
    const char* s = "::open(path)";
    (void)s;
    w.close();
    w->write(buf);
    kill();
    ssize_t n = ::read(fd, buf, 1);                // VIOLATION 2: ::read
    void* p = mmap(nullptr, 4096, 3, 1, fd, 0);    // VIOLATION 3: mmap
    kill(1234, SIGTERM);                           // VIOLATION 4: kill with arguments
    std::signal(SIGINT, SIG_IGN);                  // VIOLATION 5: std::signal
    long t = syscall(186);                         // VIOLATION 6: syscall
    return static_cast<int>(n + t) + (p != nullptr);
}
