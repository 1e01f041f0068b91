// The os layer's unix-socket calls: socket pairs for liveness and wake-ups,
// and passing fds between processes (SCM_RIGHTS). Internal header.
#pragma once

#include <cstddef>
#include <span>
#include <optional>
#include <utility>
#include <string>
#include <vector>

#include "os/os.hpp"

namespace mproc::os {

enum class SocketKind { stream, seqpacket };

/// socketpair(AF_UNIX, kind | SOCK_CLOEXEC).
std::pair<Fd, Fd> socket_pair(SocketKind kind);

/// Sends one packet carrying `payload` and a duplicate of `fd`. Waits for
/// buffer space until the deadline (false on timeout). EOFError if the peer
/// is gone.
bool send_fd(int sock, int fd, std::span<const std::byte> payload, const Deadline& deadline);

/// Receives (or with peek, looks at without removing) the next packet:
/// fills `payload` (returns its length) and the fd it carried (or an empty
/// Fd). Waits until the deadline; nullopt on timeout. EOFError if every
/// sender is gone and nothing is left.
struct FdPacket {
    std::size_t length = 0;
    Fd fd;
};
std::optional<FdPacket> recv_fd(int sock, std::span<std::byte> payload, bool peek,
                                const Deadline& deadline);

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

/// poll(2) on several fds for POLLIN; returns the indexes that are ready
/// (readable or hung up). Empty on timeout.
std::vector<std::size_t> poll_readable(std::span<const int> fds, const Deadline& deadline);

// ---- TCP (the remote manager) ---------------------------------------------

/// A listening TCP socket on "host:port" ("[v6addr]:port"; empty host = all
/// interfaces; port 0 = any free port). Returns it and the "host:port" it
/// is bound to (numeric).
std::pair<Fd, std::string> tcp_listen(const std::string& address);
/// Connects to "host:port" (names resolved) before the deadline, with
/// TCP_NODELAY and keep-alive. Throws OSError, or TimeoutError.
Fd tcp_connect(const std::string& address, const Deadline& deadline);
/// accept4(CLOEXEC), TCP_NODELAY and keep-alive; invalid Fd on EINTR/EAGAIN.
Fd tcp_accept(int listener);
/// Writes every byte (MSG_NOSIGNAL); false if the peer is gone.
bool send_all(int fd, std::span<const std::byte> bytes) noexcept;
/// Reads exactly bytes.size() bytes; false if the peer closed (or reset)
/// first. Throws TimeoutError when the deadline passes.
bool recv_all(int fd, std::span<std::byte> bytes, const Deadline& deadline);

}  // namespace mproc::os
