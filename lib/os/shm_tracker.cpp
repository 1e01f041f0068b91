// The creator's side of the shared-memory name tracker: starting it,
// talking to it, reaping it. See shm_tracker.hpp; the tracker process
// itself is shm_tracker_child.cpp.
#include "os/shm_tracker.hpp"

#include <cerrno>

#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "os/shm_tracker_child.hpp"
#include "os/socket.hpp"

namespace mproc::os::shm_tracker {

Started start(const Deadline& deadline) {
    auto [mine, theirs] = socket_pair(SocketKind::seqpacket);
    const pid_t pid = clone_tracker(theirs.get());  // the child never returns from here
    if (pid < 0) throw_errno("clone", "shared-memory tracker");
    theirs.reset();
    std::optional<Reply> hello;
    try {
        hello = receive(mine.get(), deadline);
    } catch (...) {
        ::kill(pid, SIGKILL);
        reap(pid, true);
        throw;
    }
    if (!hello || hello->pid != pid) {
        reap(pid, true);
        throw OSError("mproc's shared-memory tracker process died as it started; tracked "
                      "SharedMemory::create needs one: create with {.track = false} and unlink() "
                      "yourself",
                      EIO);
    }
    return Started{std::move(mine), pid};
}

bool send(int sock, const Request& r) noexcept {
    for (;;) {
        if (::send(sock, &r, sizeof r, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof r)) return true;
        if (errno != EINTR) return false;
    }
}

std::optional<Reply> receive(int sock, const Deadline& deadline) {
    for (;;) {
        Reply r;
        ssize_t n = ::recv(sock, &r, sizeof r, MSG_DONTWAIT);
        if (n == static_cast<ssize_t>(sizeof r)) return r;
        if (n == 0 || (n < 0 && errno == ECONNRESET)) return std::nullopt;
        if (n > 0) throw Error("mproc internal: a short reply from the shared-memory tracker");
        if (errno == EINTR) continue;
        if (errno != EAGAIN) throw_errno("recv", "shared-memory tracker socket");
        if (!wait_readable(sock, deadline))
            throw TimeoutError("mproc's shared-memory tracker did not answer in time (is it stopped?)");
    }
}

bool finish(int sock, const Deadline& deadline) noexcept {
    ::shutdown(sock, SHUT_WR);
    try {
        while (receive(sock, deadline)) {
        }
        return true;
    } catch (...) {
        return false;  // timed out: it still unlinks at our exit, only later
    }
}

void reap(pid_t pid, bool block) noexcept {
    if (pid <= 0) return;
    // ECHILD is fine: a __WALL waiter of the program's may have reaped it.
    while (::waitpid(pid, nullptr, __WCLONE | (block ? 0 : WNOHANG)) < 0 && errno == EINTR) {
    }
}

}  // namespace mproc::os::shm_tracker
