// Sockets: pairs, fd passing, wake-ups, stream sockets. See socket.hpp.
#include "os/socket.hpp"

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace mproc::os {

namespace {
std::string sock_name(int fd) { return "socket " + std::to_string(fd); }
}  // namespace

// ---- unix socket pairs and fd passing ---------------------------------------

std::pair<Fd, Fd> socket_pair(SocketKind kind) {
    int sv[2];
    int type = (kind == SocketKind::stream ? SOCK_STREAM : SOCK_SEQPACKET) | SOCK_CLOEXEC;
    if (::socketpair(AF_UNIX, type, 0, sv) != 0) throw_errno("socketpair", "AF_UNIX");
    return {Fd(sv[0]), Fd(sv[1])};
}

bool send_with_fds(int sock, std::span<const std::byte> data, std::span<const int> fds,
                   const Deadline& deadline) {
    if (fds.size() > kMaxFdsPerMessage)
        throw Error("mproc: a child can be given at most " + std::to_string(kMaxFdsPerMessage) +
                    " handles' file descriptors at once (got " + std::to_string(fds.size()) + ")");
    if (data.empty() && !fds.empty()) throw Error("mproc internal: fds need at least one byte");
    std::vector<char> control(fds.empty() ? 0 : CMSG_SPACE(sizeof(int) * fds.size()));
    std::size_t done = 0;
    while (done < data.size()) {
        iovec iov{const_cast<std::byte*>(data.data() + done), data.size() - done};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        if (done == 0 && !fds.empty()) {
            msg.msg_control = control.data();
            msg.msg_controllen = control.size();
            cmsghdr* c = CMSG_FIRSTHDR(&msg);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
            std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
        }
        const ssize_t r = ::sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r >= 0) {
            done += static_cast<std::size_t>(r);
            continue;
        }
        if (errno == EINTR) continue;
        if (errno == EPIPE || errno == ECONNRESET)
            throw EOFError("the receiving end of the socket is closed (its process may have exited)");
        if (errno != EAGAIN) throw_errno("sendmsg(SCM_RIGHTS)", sock_name(sock));
        if (!wait_writable(sock, deadline)) {
            if (done == 0) return false;
            throw TimeoutError("mproc: timed out half-way through a message on " + sock_name(sock));
        }
    }
    return true;
}

std::optional<std::size_t> recv_with_fds(int sock, std::span<std::byte> data, std::vector<Fd>& fds,
                                         const Deadline& deadline, bool peek) {
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * (kMaxFdsPerMessage + 3))];
    for (;;) {
        iovec iov{data.data(), data.size()};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        const ssize_t r = ::recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC | (peek ? MSG_PEEK : 0));
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno == ECONNRESET) return 0;
            if (errno != EAGAIN) throw_errno("recvmsg(SCM_RIGHTS)", sock_name(sock));
            if (!wait_readable(sock, deadline)) return std::nullopt;
            continue;
        }
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
            const std::size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (std::size_t i = 0; i < n; ++i) {
                int got;
                std::memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                fds.emplace_back(got);
            }
        }
        if (msg.msg_flags & MSG_CTRUNC) throw Error("mproc: too many fds in one message");
        return static_cast<std::size_t>(r);
    }
}

std::size_t recv_with_fds(int sock, std::span<std::byte> data, std::vector<Fd>& fds) {
    return *recv_with_fds(sock, data, fds, Deadline::never());
}

bool send_fd(int sock, int fd, std::span<const std::byte> payload, const Deadline& deadline) {
    return send_with_fds(sock, payload, std::span<const int>(&fd, 1), deadline);
}

std::optional<FdPacket> recv_fd(int sock, std::span<std::byte> payload, bool peek,
                                const Deadline& deadline) {
    std::vector<Fd> fds;
    const auto n = recv_with_fds(sock, payload, fds, deadline, peek);
    if (!n) return std::nullopt;
    if (*n == 0) throw EOFError("the sending end of the channel is closed");
    FdPacket p;
    p.length = *n;
    if (!fds.empty()) p.fd = std::move(fds.front());  // never more than one is sent: strays close here
    return p;
}

// ---- wake-ups and liveness ----------------------------------------------------

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
    if (!wait_readable(sock, deadline)) return Readiness::timed_out;
    char buf[256];
    for (;;) {
        ssize_t r = ::recv(sock, buf, sizeof buf, MSG_DONTWAIT);
        if (r > 0) continue;
        if (r == 0) return Readiness::hangup;
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return Readiness::ready;
        if (errno == ECONNRESET) return Readiness::hangup;
        throw_errno("recv", sock_name(sock));
    }
}

bool peer_closed(int sock) noexcept {
    const auto revents = poll_now(sock);
    if (!revents || *revents == 0) return false;
    if (*revents & (POLLHUP | POLLERR)) return true;
    char b;
    ssize_t r = ::recv(sock, &b, 1, MSG_DONTWAIT | MSG_PEEK);
    return r == 0;
}

// ---- stream sockets -------------------------------------------------------------

namespace {

bool is_unix_address(const std::string& address) {
    return (!address.empty() && address.front() == '@') || is_socket_path(address);
}

/// A unix address as a sockaddr_un: a path, or (leading '@') an abstract
/// name, whose sun_path starts with a NUL and is not NUL-terminated.
socklen_t unix_sockaddr(const std::string& address, sockaddr_un& sa) {
    sa = {};
    sa.sun_family = AF_UNIX;
    const bool abstract = address.front() == '@';
    const std::size_t n = address.size();
    if (n >= sizeof sa.sun_path || (abstract && n < 2))
        throw ValueError("mproc: unix socket address \"" + address + "\" must be 1 to " +
                         std::to_string(sizeof sa.sun_path - 1) + " bytes");
    std::memcpy(sa.sun_path, address.data(), n);
    if (abstract) {
        sa.sun_path[0] = '\0';
        return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + n);
    }
    return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + n + 1);
}

std::pair<std::string, std::string> split_address(const std::string& address) {
    const auto colon = address.rfind(':');
    if (colon == std::string::npos)
        throw ValueError("mproc: address \"" + address +
                         "\" is neither host:port, a unix socket path (with a '/') nor @name");
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

void tune_tcp(int fd) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
}

/// "host:port" (numeric) for an inet address, the path or "@name" for a
/// unix one ("" if unbound).
std::string address_string(const sockaddr* sa, socklen_t len) {
    if (sa->sa_family == AF_UNIX) {
        const auto* un = reinterpret_cast<const sockaddr_un*>(sa);
        const std::size_t off = offsetof(sockaddr_un, sun_path);
        if (len <= off) return {};
        std::size_t n = len - off;
        if (un->sun_path[0] == '\0') {
            std::string out(1, '@');  // appended, not "@" + ...: GCC 12 -O3's false -Wrestrict
            out.append(un->sun_path + 1, n - 1);
            return out;
        }
        return std::string(un->sun_path, strnlen(un->sun_path, n));
    }
    char host[NI_MAXHOST], port[NI_MAXSERV];
    if (::getnameinfo(sa, len, host, sizeof host, port, sizeof port, NI_NUMERICHOST | NI_NUMERICSERV) != 0)
        return "?";
    // Appended piece by piece: GCC 12 at -O3 warns (-Wrestrict, a false
    // positive) on the chained operator+ form.
    std::string out;
    if (sa->sa_family == AF_INET6) {
        out += '[';
        out += host;
        out += ']';
    } else {
        out += host;
    }
    out += ':';
    out += port;
    return out;
}

std::pair<Fd, std::string> listen_unix(const std::string& address, int backlog) {
    sockaddr_un sa;
    const socklen_t len = unix_sockaddr(address, sa);
    Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) throw_errno("socket", "AF_UNIX");
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&sa), len) != 0) {
        if (errno == EADDRINUSE && address.front() != '@')
            throw OSError("bind(\"" + address + "\") failed: " + std::strerror(EADDRINUSE) +
                              " (if no process listens there any more, remove the stale socket file)",
                          EADDRINUSE);
        throw_errno("bind", address);
    }
    if (::listen(fd.get(), backlog) != 0) throw_errno("listen", address);
    return {std::move(fd), address};
}

std::pair<Fd, std::string> listen_tcp(const std::string& address, int backlog) {
    AddrInfo ai;
    resolve(address, true, ai);
    int last = 0;
    for (addrinfo* a = ai.list; a; a = a->ai_next) {
        Fd fd(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol));
        if (!fd) { last = errno; continue; }
        int one = 1;
        ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (::bind(fd.get(), a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd.get(), backlog) != 0) {
            last = errno;
            continue;
        }
        sockaddr_storage ss{};
        socklen_t len = sizeof ss;
        ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len);
        return {std::move(fd), address_string(reinterpret_cast<sockaddr*>(&ss), len)};
    }
    throw_errno("bind/listen", address, last ? last : EADDRNOTAVAIL);
}

/// Connects a non-blocking TCP socket, waiting for the handshake until the
/// deadline; leaves the socket blocking. 0 or the errno it failed with.
int connect_tcp(int fd, const sockaddr* sa, socklen_t len, const std::string& address,
                const Deadline& deadline) {
    int r = ::connect(fd, sa, len);
    if (r != 0 && errno == EINPROGRESS) {
        if (!wait_writable(fd, deadline)) throw TimeoutError("mproc: connecting to " + address + " timed out");
        int err = 0;
        socklen_t elen = sizeof err;
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen);
        if (err) return err;
    } else if (r != 0) {
        return errno;
    }
    const int flags = ::fcntl(fd, F_GETFL);
    ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    return 0;
}

/// Connects a blocking unix socket. Its connect completes at once unless the
/// listener's backlog is full; then the kernel waits for room for as long as
/// the socket's send timeout (set to the time left, 0 = forever) allows.
void connect_unix(int fd, const sockaddr* sa, socklen_t len, const std::string& address,
                  const Deadline& deadline) {
    for (;;) {
        timeval tv{};
        if (const Timeout left = deadline.remaining()) {
            const auto us = std::max<long long>(
                1, std::chrono::duration_cast<std::chrono::microseconds>(*left).count());
            tv.tv_sec = static_cast<time_t>(us / 1000000);
            tv.tv_usec = static_cast<suseconds_t>(us % 1000000);
        }
        ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        const int r = ::connect(fd, sa, len);
        const int err = errno;
        const timeval zero{};
        ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &zero, sizeof zero);
        if (r == 0) return;
        if (err == EINTR) continue;
        if (err == EAGAIN) throw TimeoutError("mproc: connecting to " + address + " timed out (its backlog is full)");
        throw_errno("connect", address, err);
    }
}

}  // namespace

std::pair<Fd, std::string> listen_stream(const std::string& address, int backlog) {
    return is_unix_address(address) ? listen_unix(address, backlog) : listen_tcp(address, backlog);
}

Fd connect_stream(const std::string& address, const Deadline& deadline) {
    if (is_unix_address(address)) {
        sockaddr_un sa;
        const socklen_t len = unix_sockaddr(address, sa);
        Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (!fd) throw_errno("socket", "AF_UNIX");
        connect_unix(fd.get(), reinterpret_cast<const sockaddr*>(&sa), len, address, deadline);
        return fd;
    }
    AddrInfo ai;
    resolve(address, false, ai);
    int last = 0;
    for (addrinfo* a = ai.list; a; a = a->ai_next) {
        Fd fd(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol));
        if (!fd) { last = errno; continue; }
        if (int err = connect_tcp(fd.get(), a->ai_addr, a->ai_addrlen, address, deadline)) {
            last = err;
            continue;
        }
        tune_tcp(fd.get());
        return fd;
    }
    throw_errno("connect", address, last ? last : ECONNREFUSED);
}

Fd accept_stream(int listener, std::string* peer, int* error) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    const int fd = ::accept4(listener, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_CLOEXEC);
    if (fd < 0) {
        if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED) return {};
        if (error && (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)) {
            *error = errno;
            return {};
        }
        throw_errno("accept4", sock_name(listener));
    }
    const auto* sa = reinterpret_cast<const sockaddr*>(&ss);
    if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) tune_tcp(fd);
    if (peer) *peer = address_string(sa, len);
    return Fd(fd);
}

bool is_socket_path(const std::string& address) noexcept {
    return !address.empty() && address.front() != '@' && address.find('/') != std::string::npos;
}

std::optional<FileId> path_file_id(const std::string& path) noexcept {
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) return std::nullopt;
    return FileId{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino),
                  static_cast<std::uint64_t>(st.st_size)};
}

void remove_socket_file(const std::string& path, const FileId& id) noexcept {
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return;
    const FileId now{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino), 0};
    if (now.same_file(id)) ::unlink(path.c_str());
}

std::size_t send_gather(int fd, std::span<const std::span<const std::byte>> parts, const Deadline& deadline) {
    std::size_t total = 0;
    for (auto p : parts) total += p.size();
    std::size_t done = 0;
    while (done < total) {
        // The iovecs of what is left (a few parts: a frame header and its body).
        iovec iov[8];
        std::size_t n = 0, skip = done;
        for (auto p : parts) {
            if (skip >= p.size()) {
                skip -= p.size();
                continue;
            }
            if (n == std::size(iov)) break;
            iov[n++] = iovec{const_cast<std::byte*>(p.data() + skip), p.size() - skip};
            skip = 0;
        }
        msghdr msg{};
        msg.msg_iov = iov;
        msg.msg_iovlen = n;
        const ssize_t r = ::sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r >= 0) {
            done += static_cast<std::size_t>(r);
            continue;
        }
        if (errno == EINTR) continue;
        if (errno == EPIPE || errno == ECONNRESET)
            throw EOFError("the other end of the connection is closed (its process may have exited)");
        if (errno != EAGAIN) throw_errno("sendmsg", sock_name(fd));
        if (!wait_writable(fd, deadline)) break;
    }
    return done;
}

bool send_all(int fd, std::span<const std::byte> bytes) noexcept {
    try {
        return send_gather(fd, std::span<const std::span<const std::byte>>(&bytes, 1), Deadline::never()) ==
               bytes.size();
    } catch (const std::exception&) {
        return false;
    }
}

// recv_some (flags MSG_DONTWAIT) and recv_wait (0): the count, 0 at end of
// stream (the peer closed, or reset), nullopt if nothing yet.
static std::optional<std::size_t> recv_with(int fd, std::span<std::byte> into, int flags) {
    for (;;) {
        const ssize_t n = ::recv(fd, into.data(), into.size(), flags);
        if (n >= 0) return static_cast<std::size_t>(n);
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return std::nullopt;
        if (errno == ECONNRESET || errno == EPIPE || errno == ENOTCONN) return 0;
        throw_errno("recv", sock_name(fd));
    }
}

std::optional<std::size_t> recv_some(int fd, std::span<std::byte> into) { return recv_with(fd, into, MSG_DONTWAIT); }

std::optional<std::size_t> recv_wait(int fd, std::span<std::byte> into) { return recv_with(fd, into, 0); }

bool recv_exact(int fd, std::span<std::byte> data, const Deadline& deadline) {
    std::size_t done = 0;
    while (done < data.size()) {
        const auto n = recv_some(fd, data.subspan(done));
        if (!n) {
            if (!wait_readable(fd, deadline))
                throw TimeoutError("mproc: timed out waiting for data on " + sock_name(fd));
            continue;
        }
        if (*n == 0) {
            if (done == 0) return false;
            throw EOFError("the other end went away in the middle of a message");
        }
        done += *n;
    }
    return true;
}

bool recv_all(int fd, std::span<std::byte> bytes, const Deadline& deadline) {
    // A reply usually follows within microseconds, and sleeping costs a
    // wake-up (25-45 us on a small VM), so look for a wake-up's worth of time
    // before sleeping in poll. Adaptive, per thread: after a spin that came
    // up empty (the peer is not running: too few CPUs), skip spinning for a
    // while.
    thread_local unsigned skip = 0, backoff = 0;
    if (skip > 0) {
        --skip;
    } else {
        const bool arrived = spin_until([&] { return readable_now(fd); }, spin_budget_ns());
        backoff = arrived ? 0 : std::min(2 * backoff + 1, 256u);
        skip = backoff;
    }
    try {
        return recv_exact(fd, bytes, deadline);
    } catch (const EOFError&) {
        return false;
    }
}

std::size_t peek_some(int fd, std::span<std::byte> into) noexcept {
    for (;;) {
        const ssize_t n = ::recv(fd, into.data(), into.size(), MSG_DONTWAIT | MSG_PEEK);
        if (n >= 0) return static_cast<std::size_t>(n);
        if (errno != EINTR) return 0;
    }
}

bool send_nowait(int fd, std::span<const std::byte> bytes) noexcept {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    return n == static_cast<ssize_t>(bytes.size());
}

void shutdown_socket(int fd) noexcept { ::shutdown(fd, SHUT_RDWR); }

void shutdown_write(int fd) noexcept { ::shutdown(fd, SHUT_WR); }

std::vector<std::size_t> poll_wants(std::span<const PollWant> wants, const Deadline& deadline) {
    std::vector<pollfd> ps;
    ps.reserve(wants.size());
    for (const PollWant& w : wants)
        ps.push_back(pollfd{w.fd, static_cast<short>(w.hangup_only ? POLLRDHUP : POLLIN), 0});
    for (;;) {
        const int r = ::poll(ps.data(), ps.size(), deadline.poll_ms());
        if (r > 0) break;
        if (r == 0) {
            if (deadline.expired()) return {};
            continue;
        }
        if (errno != EINTR) throw_errno("poll", std::to_string(wants.size()) + " sockets");
    }
    std::vector<std::size_t> ready;
    for (std::size_t i = 0; i < ps.size(); ++i)
        if (ps[i].revents) ready.push_back(i);
    return ready;
}

std::size_t raise_fd_limit() noexcept {
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return 1024;
    if (lim.rlim_cur < lim.rlim_max) {
        rlimit want = lim;
        want.rlim_cur = lim.rlim_max;
        if (::setrlimit(RLIMIT_NOFILE, &want) == 0) lim = want;
    }
    return lim.rlim_cur == RLIM_INFINITY ? SIZE_MAX : static_cast<std::size_t>(lim.rlim_cur);
}

Fd open_devnull() {
    Fd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!fd) throw_errno("open", "/dev/null");
    return fd;
}

}  // namespace mproc::os
