// Unix sockets: socket pairs, wake-up bytes, fd passing. See socket.hpp.
#include "os/socket.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

// ---- TCP --------------------------------------------------------------------

namespace {

std::pair<std::string, std::string> split_address(const std::string& address) {
    const auto colon = address.rfind(':');
    if (colon == std::string::npos)
        throw ValueError("mproc: address \"" + address + "\" is not host:port");
    std::string host = address.substr(0, colon), port = address.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    if (port.empty()) throw ValueError("mproc: address \"" + address + "\" has no port");
    return {host, port};
}

struct AddrInfo {
    addrinfo* list = nullptr;
    ~AddrInfo() { if (list) ::freeaddrinfo(list); }
};

void resolve(const std::string& address, bool passive, AddrInfo& out) {
    auto [host, port] = split_address(address);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    const int r = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &out.list);
    if (r != 0) throw OSError("getaddrinfo(\"" + address + "\") failed: " + ::gai_strerror(r), r == EAI_SYSTEM ? errno : 0);
}

void tune(int fd) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
}

std::string numeric(const sockaddr* sa, socklen_t len) {
    char host[NI_MAXHOST], port[NI_MAXSERV];
    if (::getnameinfo(sa, len, host, sizeof host, port, sizeof port, NI_NUMERICHOST | NI_NUMERICSERV) != 0)
        return "?";
    return sa->sa_family == AF_INET6 ? "[" + std::string(host) + "]:" + port : std::string(host) + ":" + port;
}

}  // namespace

std::pair<Fd, std::string> tcp_listen(const std::string& address) {
    AddrInfo ai;
    resolve(address, true, ai);
    int last = 0;
    for (addrinfo* a = ai.list; a; a = a->ai_next) {
        Fd fd(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
        if (!fd) { last = errno; continue; }
        int one = 1;
        ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (::bind(fd.get(), a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd.get(), 128) != 0) {
            last = errno;
            continue;
        }
        sockaddr_storage ss{};
        socklen_t len = sizeof ss;
        ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len);
        return {std::move(fd), numeric(reinterpret_cast<sockaddr*>(&ss), len)};
    }
    throw_errno("bind/listen", address, last ? last : EADDRNOTAVAIL);
}

Fd tcp_connect(const std::string& address, const Deadline& deadline) {
    AddrInfo ai;
    resolve(address, false, ai);
    int last = 0;
    for (addrinfo* a = ai.list; a; a = a->ai_next) {
        Fd fd(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol));
        if (!fd) { last = errno; continue; }
        int r = ::connect(fd.get(), a->ai_addr, a->ai_addrlen);
        if (r != 0 && errno == EINPROGRESS) {
            short rev = 0;
            if (!poll_one(fd.get(), POLLOUT, deadline, &rev))
                throw TimeoutError("mproc: connecting to " + address + " timed out");
            int err = 0;
            socklen_t len = sizeof err;
            ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
            r = err ? -1 : 0;
            errno = err;
        }
        if (r != 0) { last = errno; continue; }
        const int flags = ::fcntl(fd.get(), F_GETFL);
        ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
        tune(fd.get());
        return fd;
    }
    throw_errno("connect", address, last ? last : ECONNREFUSED);
}

Fd tcp_accept(int listener) {
    const int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
        if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED) return {};
        throw_errno("accept4", "manager listener");
    }
    tune(fd);
    return Fd(fd);
}

bool send_all(int fd, std::span<const std::byte> bytes) noexcept {
    while (!bytes.empty()) {
        const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        bytes = bytes.subspan(static_cast<std::size_t>(n));
    }
    return true;
}

bool recv_all(int fd, std::span<std::byte> bytes, const Deadline& deadline) {
    while (!bytes.empty()) {
        const ssize_t n = ::recv(fd, bytes.data(), bytes.size(), MSG_DONTWAIT);
        if (n > 0) {
            bytes = bytes.subspan(static_cast<std::size_t>(n));
            continue;
        }
        if (n == 0) return false;
        if (errno == EINTR) continue;
        if (errno == ECONNRESET || errno == EPIPE || errno == ENOTCONN) return false;
        if (errno != EAGAIN && errno != EWOULDBLOCK) throw_errno("recv", "manager connection");
        // Nothing yet: a reply usually follows within microseconds, and
        // sleeping costs a wake-up (25-45 us on a small VM), so look again
        // for a wake-up's worth of time before sleeping in poll.
        // Adaptive, per thread: after a spin that came up empty (the peer
        // is not running: too few CPUs), skip spinning for a while.
        thread_local unsigned skip = 0, backoff = 0;
        bool arrived = false;
        if (skip > 0) {
            --skip;
        } else {
            arrived = spin_until(
                [&] {
                    pollfd p{fd, POLLIN, 0};
                    return ::poll(&p, 1, 0) > 0;
                },
                spin_budget_ns());
            backoff = arrived ? 0 : std::min(2 * backoff + 1, 256u);
            skip = backoff;
        }
        if (!arrived && !poll_one(fd, POLLIN, deadline))
            throw TimeoutError("mproc: timed out waiting for the remote manager");
    }
    return true;
}

}  // namespace mproc::os
