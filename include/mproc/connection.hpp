// mproc::Listener and mproc::Client: Python's multiprocessing.connection
// Listener/Client for C++, connections between processes that need not be
// related — over TCP, a unix socket path, or a Linux abstract socket name.
//
//   mproc::Listener listener("localhost:0", "secret");   // or "/tmp/app.sock", "@app"
//   auto conn = listener.accept<Msg>();                  // in the server
//   auto conn = mproc::Client<Msg>(listener.address(), "secret");   // in the client
//   conn.send(msg); conn.recv(); conn.send_bytes(b); conn.recv_bytes_into(buf); conn.poll(1s);
//
// Addresses: "@name" is an abstract socket (nothing on disk, gone with the
// socket); a string containing '/' is a unix socket file ("./name" for a
// relative one), which the Listener removes when it is closed or destroyed
// (only in the process that made it, and only while it is still the file it
// made); anything else is "host:port" (TCP; port 0 = any free port, which
// address() then reports).
//
// Authkey: when one is given (not nullopt, not empty), accept() and Client()
// run Python's HMAC-SHA256 challenge both ways before any message: each side
// proves it knows the key without sending it. A wrong key is
// AuthenticationError on both sides. With no authkey there is no challenge,
// as with Python's authkey=None. The challenge is wire-compatible with Python
// 3.12+ (and messages are framed as Python frames them), so send_bytes /
// recv_bytes work between an mproc program and a Python one; send/recv of a
// typed value use mproc's serialization, not pickle.
//
// A hostile or broken client costs only its own connection: before it has
// authenticated, what it sends is read into a fixed 256-byte frame (a bigger
// length, a short digest, garbage or a hang-up fails it at once), and one
// that stalls (slow-loris) is dropped after ListenerOptions::auth_timeout
// while accept() goes on serving the others, up to max_pending clients at
// once. After authentication, a message is allocated only as its bytes
// arrive, never on the word of its length header. As in Python, accept()
// raises for a client that fails (AuthenticationError): a server that must
// keep serving catches it and calls accept() again.
//
// The Connection<T> that accept() and Client() return is the same type as a
// Pipe() end (see <mproc/pipe.hpp>): send/recv/poll/close with timeouts, ==
// and std::hash, mproc::wait() over any mix, EOFError when the peer closes or
// dies (kill -9 included) even while blocked. It is a handle: passed to a
// child process (fork, spawn or forkserver) it goes as the socket itself.
//
// Blocking: accept() waits for a client that completes the challenge,
// Client() for the connection and the challenge; both take a timeout
// (TimeoutError). Thread safety: a Listener may be used from several
// threads: their accept() calls take turns, and close() waits for one in
// progress (give accept() a timeout if another thread may want to close).
// A Listener is not a handle and is not passed to children; a forked
// child's copy of it never removes the socket file. If the listening
// process dies (kill -9), clients get ECONNREFUSED (OSError) and a unix
// socket file stays behind, as in Python; binding it again is EADDRINUSE.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include "mproc/duration.hpp"
#include "mproc/errors.hpp"
#include "mproc/pipe.hpp"

namespace mproc {

struct ListenerOptions {
    /// Connections the kernel queues before accept() takes them (Python's
    /// `backlog`, whose default of 1 is too small for a server).
    int backlog = 128;
    /// How long an accepted client may take over the authkey challenge; one
    /// that takes longer is dropped (its accept() throws AuthenticationError).
    Duration auth_timeout = std::chrono::seconds(10);
    /// Clients authenticating at once; more wait in the backlog.
    std::size_t max_pending = 64;
};

/// multiprocessing.connection.Listener.
class Listener {
public:
    /// Binds and listens on `address` (see above). OSError if it cannot
    /// (EADDRINUSE for a port or a socket file already there).
    explicit Listener(const std::string& address, std::optional<std::string> authkey = std::nullopt,
                      ListenerOptions options = {});
    ~Listener();  // close()
    Listener(Listener&&) noexcept;
    Listener& operator=(Listener&&) noexcept;
    Listener(const Listener&) = delete;
    Listener& operator=(const Listener&) = delete;

    /// The next client that completes the challenge (the next client, with
    /// no authkey). AuthenticationError for a client that fails it or does
    /// not finish in time (that client is closed; accept() again for the
    /// next); TimeoutError if the timeout passes first; ValueError once
    /// closed.
    template <class T>
    Connection<T> accept(Timeout timeout = std::nullopt) {
        return detail::make_connection<T>(accept_end(timeout));
    }

    /// The bound address: "127.0.0.1:40123" (numeric, the real port), the
    /// socket path, or "@name".
    const std::string& address() const noexcept;
    /// The address of the last client accept() took (also one that then
    /// failed authentication): "host:port", or "" for a unix-socket client.
    /// nullopt before the first.
    std::optional<std::string> last_accepted() const;
    /// Stops listening, drops clients still authenticating, removes the
    /// socket file. Connections already accepted stay open.
    void close();
    bool closed() const noexcept;

private:
    std::shared_ptr<detail::ConnectionEnd> accept_end(Timeout timeout);
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

namespace detail {
std::shared_ptr<ConnectionEnd> client_end(const std::string& address, const std::optional<std::string>& authkey,
                                          Timeout timeout);
}  // namespace detail

/// multiprocessing.connection.Client: connects to a Listener's address and,
/// with an authkey, runs the challenge both ways. OSError if nothing listens
/// there; AuthenticationError if the keys differ; TimeoutError if the
/// connection and the challenge take longer than `timeout`.
template <class T>
Connection<T> Client(const std::string& address, std::optional<std::string> authkey = std::nullopt,
                     Timeout timeout = std::nullopt) {
    return detail::make_connection<T>(detail::client_end(address, authkey, timeout));
}

}  // namespace mproc
