// The os layer's socket calls, each said once: unix socket pairs, messages
// that carry fds (SCM_RIGHTS), wake-up bytes, and
// stream sockets — TCP ("host:port"), unix paths ("/path") and Linux
// abstract names ("@name") — to listen on, connect to, accept from, and move
// bytes over with deadlines. Every call retries EINTR, opens fds close-on-exec
// and sends with MSG_NOSIGNAL (a dead peer is an error, never a SIGPIPE).
//
// Internal header: never included by a public header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "os/os.hpp"

namespace mproc::os {

// ---- unix socket pairs and fd passing ---------------------------------------

enum class SocketKind { stream, seqpacket };

/// socketpair(AF_UNIX, kind | SOCK_CLOEXEC).
std::pair<Fd, Fd> socket_pair(SocketKind kind);

/// The most fds one message may carry (the kernel's SCM_MAX_FD is 253).
inline constexpr std::size_t kMaxFdsPerMessage = 250;

/// Sends `data` on a unix socket, the fds attached to its first byte
/// (SCM_RIGHTS), waiting for buffer space until the deadline. False if the
/// deadline passed before anything was sent; TimeoutError if it passed
/// half-way (a stream socket only: a seqpacket message goes whole).
/// EOFError if the peer is gone.
bool send_with_fds(int sock, std::span<const std::byte> data, std::span<const int> fds,
                   const Deadline& deadline = Deadline::never());
/// Receives (with peek: looks at, leaving it there) up to data.size()
/// bytes — one message on a SOCK_SEQPACKET socket — and the fds that came
/// with them (close-on-exec), waiting until the deadline. nullopt on
/// timeout; 0 at end of stream (every peer closed, or reset).
std::optional<std::size_t> recv_with_fds(int sock, std::span<std::byte> data, std::vector<Fd>& fds,
                                         const Deadline& deadline, bool peek = false);
/// recv_with_fds without a deadline.
std::size_t recv_with_fds(int sock, std::span<std::byte> data, std::vector<Fd>& fds);

/// One packet with (at most) one fd, for the channel ring's spill socket:
/// send_with_fds of one fd, false on timeout.
bool send_fd(int sock, int fd, std::span<const std::byte> payload, const Deadline& deadline);
/// recv_with_fds keeping the first fd (strays are closed); nullopt on
/// timeout; EOFError if every sender is gone and nothing is left.
struct FdPacket {
    std::size_t length = 0;
    Fd fd;
};
std::optional<FdPacket> recv_fd(int sock, std::span<std::byte> payload, bool peek,
                                const Deadline& deadline);

// ---- wake-ups and liveness ----------------------------------------------------

/// Sends one byte without blocking; a full buffer means a wake-up is already
/// pending, so it is not an error. Returns false if the peer is gone.
bool send_wake(int sock) noexcept;

enum class Readiness { ready, hangup, timed_out };
/// Waits for a byte (or hang-up) on `sock`, then drains every pending byte.
/// hangup when the peer has closed its end (every copy of it) and no byte
/// is left.
Readiness wait_and_drain(int sock, const Deadline& deadline);
/// Non-blocking check: has the peer closed its end?
bool peer_closed(int sock) noexcept;

// ---- stream sockets: TCP, unix paths, abstract names --------------------------
//
// An address is "@name" (Linux abstract socket), a path containing '/'
// (unix socket file; "./name" for a relative one), or "host:port" (TCP;
// "[v6addr]:port"; empty host = every interface; port 0 = any free port).

/// A listening socket (non-blocking, so accept never blocks) on `address`,
/// and the address it is bound to: "host:port" numeric for TCP, else as
/// given. A unix path that already exists is EADDRINUSE (a stale socket file
/// must be removed by whoever knows it is stale).
std::pair<Fd, std::string> listen_stream(const std::string& address, int backlog = 128);
/// Connects to `address` before the deadline; TCP gets TCP_NODELAY and
/// keep-alive. Throws OSError (refused, no such file, ...) or TimeoutError.
Fd connect_stream(const std::string& address, const Deadline& deadline);
/// accept4(CLOEXEC) on a listening socket, TCP_NODELAY and keep-alive for
/// TCP; an invalid Fd when no connection is waiting (or it was aborted).
/// `peer`, if given, receives the peer's address ("host:port", a unix path,
/// "@name", or "" for an unbound unix peer). With `error`, running out of
/// fds or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) is an invalid Fd and the
/// errno there instead of an OSError (a server that must keep serving).
Fd accept_stream(int listener, std::string* peer = nullptr, int* error = nullptr);

/// True for an address that names a unix socket file (not "@name", not TCP).
bool is_socket_path(const std::string& address) noexcept;

/// The identity of the file at a path (a unix socket's, lstat: the link
/// itself), to remove it only while it is still the one this process made.
std::optional<FileId> path_file_id(const std::string& path) noexcept;
/// unlink(path) if it is a socket and still names `id`; quietly nothing
/// otherwise.
void remove_socket_file(const std::string& path, const FileId& id) noexcept;

/// Sends the parts back to back (sendmsg with an iovec per part), waiting
/// for room until the deadline. Returns how many bytes went out: all of them
/// unless the deadline passed. EOFError if the peer is gone.
std::size_t send_gather(int fd, std::span<const std::span<const std::byte>> parts, const Deadline& deadline);
/// Writes every byte, blocking; false if the peer is gone.
bool send_all(int fd, std::span<const std::byte> bytes) noexcept;
/// What has arrived, up to into.size() bytes, without waiting: the count,
/// 0 at end of stream (the peer closed, or reset), nullopt if nothing yet.
std::optional<std::size_t> recv_some(int fd, std::span<std::byte> into);
/// recv_some, but sleeping in the read itself until something arrives on a
/// blocking socket (one system call where a poll and a read would be two):
/// the count, 0 at end of stream; nullopt on a non-blocking socket with
/// nothing yet (then wait_readable, and recv_some).
std::optional<std::size_t> recv_wait(int fd, std::span<std::byte> into);
/// Reads exactly data.size() bytes before the deadline: false at a clean end
/// of stream before the first byte, EOFError at one in the middle,
/// TimeoutError when the deadline passes.
bool recv_exact(int fd, std::span<std::byte> data, const Deadline& deadline = Deadline::never());
/// recv_exact for a request-reply peer (the remote manager): spins briefly
/// (adaptively) for the reply before sleeping, and reports any end of stream
/// as false.
bool recv_all(int fd, std::span<std::byte> bytes, const Deadline& deadline);
/// What has arrived, up to into.size() bytes, left to be read again
/// (MSG_PEEK): the count, 0 at end of stream or when nothing has arrived.
std::size_t peek_some(int fd, std::span<std::byte> into) noexcept;
/// One non-blocking send of what fits (MSG_NOSIGNAL); false unless all of it
/// went (for a best-effort last word before closing).
bool send_nowait(int fd, std::span<const std::byte> bytes) noexcept;
/// shutdown(SHUT_RDWR): ends the connection for whoever is blocked on it;
/// the fd stays open for its owner to close.
void shutdown_socket(int fd) noexcept;
/// shutdown(SHUT_WR): the peer reads to the end of what was sent.
void shutdown_write(int fd) noexcept;

/// One fd to watch: for data (or hang-up), or for hang-up only (POLLRDHUP:
/// the peer closed or shut down its side; data that arrives is ignored).
struct PollWant {
    int fd;
    bool hangup_only;
};
/// poll(2) until one of `wants` is ready or the deadline passes; returns the
/// indexes of the ready ones (empty on timeout).
std::vector<std::size_t> poll_wants(std::span<const PollWant> wants, const Deadline& deadline);

/// Raises this process's soft limit on open fds to its hard limit; returns
/// the limit now in force.
std::size_t raise_fd_limit() noexcept;
/// An fd on /dev/null (a spare, closed to make room when fds run out).
Fd open_devnull();

}  // namespace mproc::os
