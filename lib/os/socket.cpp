// Unix sockets: socket pairs, wake-up bytes, fd passing. See socket.hpp.
#include "os/socket.hpp"

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

namespace mproc::os {

std::pair<Fd, Fd> socket_pair(SocketKind kind) {
    int sv[2];
    int type = (kind == SocketKind::stream ? SOCK_STREAM : SOCK_SEQPACKET) | SOCK_CLOEXEC;
    if (::socketpair(AF_UNIX, type, 0, sv) != 0) throw_errno("socketpair", "AF_UNIX");
    return {Fd(sv[0]), Fd(sv[1])};
}

namespace {
// Waits for `events` on fd; false on timeout. Retries EINTR.
bool poll_one(int fd, short events, const Deadline& deadline, short* revents = nullptr) {
    for (;;) {
        pollfd p{fd, events, 0};
        int r = ::poll(&p, 1, deadline.poll_ms());
        if (r > 0) {
            if (revents) *revents = p.revents;
            return true;
        }
        if (r == 0) {
            if (deadline.expired()) return false;
            continue;
        }
        if (errno != EINTR) throw_errno("poll", "socket " + std::to_string(fd));
    }
}
}  // namespace

bool send_fd(int sock, int fd, std::span<const std::byte> payload, const Deadline& deadline) {
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    for (;;) {
        iovec iov{const_cast<std::byte*>(payload.data()), payload.size()};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
        ssize_t r = ::sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r >= 0) return true;
        if (errno == EINTR) continue;
        if (errno == EPIPE || errno == ECONNRESET)
            throw EOFError("the receiving end of the channel is closed");
        if (errno != EAGAIN) throw_errno("sendmsg(SCM_RIGHTS)", "socket " + std::to_string(sock));
        if (!poll_one(sock, POLLOUT, deadline)) return false;
    }
}

std::optional<FdPacket> recv_fd(int sock, std::span<std::byte> payload, bool peek,
                                const Deadline& deadline) {
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
    for (;;) {
        iovec iov{payload.data(), payload.size()};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        ssize_t r = ::recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC | (peek ? MSG_PEEK : 0));
        if (r > 0) {
            FdPacket p;
            p.length = static_cast<std::size_t>(r);
            for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
                std::size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (std::size_t i = 0; i < n; ++i) {
                    int got;
                    std::memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                    if (!p.fd) p.fd = Fd(got);
                    else Fd extra(got);  // never more than one is sent: close strays
                }
            }
            return p;
        }
        if (r == 0) throw EOFError("the sending end of the channel is closed");
        if (errno == EINTR) continue;
        if (errno != EAGAIN) throw_errno("recvmsg(SCM_RIGHTS)", "socket " + std::to_string(sock));
        if (!poll_one(sock, POLLIN, deadline)) return std::nullopt;
    }
}

bool send_wake(int sock) noexcept {
    char b = 1;
    for (;;) {
        ssize_t r = ::send(sock, &b, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r == 1) return true;
        if (r < 0 && errno == EINTR) continue;
        return !(r < 0 && (errno == EPIPE || errno == ECONNRESET));
    }
}

Readiness wait_and_drain(int sock, const Deadline& deadline) {
    short revents = 0;
    if (!poll_one(sock, POLLIN, deadline, &revents)) return Readiness::timed_out;
    char buf[256];
    for (;;) {
        ssize_t r = ::recv(sock, buf, sizeof buf, MSG_DONTWAIT);
        if (r > 0) continue;
        if (r == 0) return Readiness::hangup;
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return Readiness::ready;
        if (errno == ECONNRESET) return Readiness::hangup;
        throw_errno("recv", "socket " + std::to_string(sock));
    }
}

bool peer_closed(int sock) noexcept {
    pollfd p{sock, POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLHUP | POLLERR)) return true;
    char b;
    ssize_t r = ::recv(sock, &b, 1, MSG_DONTWAIT | MSG_PEEK);
    return r == 0;
}

std::vector<std::size_t> poll_readable(std::span<const int> fds, const Deadline& deadline) {
    std::vector<pollfd> ps;
    for (int fd : fds) ps.push_back(pollfd{fd, POLLIN, 0});
    for (;;) {
        int r = ::poll(ps.data(), ps.size(), deadline.poll_ms());
        if (r > 0) break;
        if (r == 0) {
            if (deadline.expired()) return {};
            continue;
        }
        if (errno != EINTR) throw_errno("poll", std::to_string(fds.size()) + " connections");
    }
    std::vector<std::size_t> ready;
    for (std::size_t i = 0; i < ps.size(); ++i)
        if (ps[i].revents) ready.push_back(i);
    return ready;
}

}  // namespace mproc::os
