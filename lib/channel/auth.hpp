// The authkey challenge of multiprocessing.connection, both ways, as
// Python's deliver_challenge / answer_challenge (3.12+, HMAC-SHA256), on a
// connected stream socket, for Listener/Client and the remote manager.
//
// deliver (prove the peer knows the key):
//   send  "#CHALLENGE#{sha256}" + 40 random bytes
//   recv  "{sha256}" + HMAC-SHA256(key, "{sha256}" + the 40 bytes)
//   send  "#WELCOME#" if it matches, else "#FAILURE#" (and fail)
// answer (prove we know it): the mirror image. The accepting side delivers
// first and then answers, the connecting side the other way round. Every
// message is a frame (frame.hpp) of at most 256 bytes: a peer that claims
// more, sends a short or malformed digest, or hangs up fails at once, and
// nothing it sends before it is authenticated costs more than that.
//
// Only the sha256 form is spoken: a Python < 3.12 peer (HMAC-MD5) is refused
// with a message that says so. Wire-compatible with Python 3.12+, so an
// mproc Client can authenticate with a Python Listener and back.
//
// Thread safety: a Handshake belongs to one thread. Internal header.
#pragma once

#include <cstdint>
#include <string>

#include "channel/frame.hpp"
#include "channel/hmac.hpp"
#include "os/os.hpp"

namespace mproc::detail {

/// server: the accepting side (deliver, then answer); client: the
/// connecting side (answer, then deliver).
enum class AuthRole { server, client };

/// The whole challenge both ways on `fd`, blocking until the deadline.
/// AuthenticationError if the keys differ, the peer breaks the protocol or
/// hangs up; TimeoutError if the deadline passes first.
void authenticate(int fd, const std::string& authkey, AuthRole role, const os::Deadline& deadline);

/// The same challenge one step at a time, for a server that keeps several
/// clients authenticating at once on one thread (so a slow one delays no
/// other): call advance() whenever fd is readable.
class Handshake {
public:
    /// The server sends its challenge here.
    Handshake(int fd, std::string authkey, AuthRole role);
    /// Reads what has arrived (never blocks, never reads past the
    /// handshake's last byte) and takes every step it allows. True once both
    /// sides have proved the key. AuthenticationError as authenticate().
    bool advance();
    int fd() const noexcept { return fd_; }

private:
    enum class Step : std::uint8_t { response, challenge, verdict, done };
    void send(std::span<const std::byte> body);
    void send_challenge();
    void on_response(std::span<const std::byte> body);
    void on_challenge(std::span<const std::byte> body);
    void on_verdict(std::span<const std::byte> body);

    int fd_;
    std::string key_;
    AuthRole role_;
    Step step_;
    wire::FrameReader in_;
    /// "{sha256}" + 40 random bytes (Python's MESSAGE_LENGTH).
    std::array<std::byte, 8 + 40> sent_challenge_{};
};

}  // namespace mproc::detail
