// mproc pipes and connections: Pipe<T>() makes two connected Connection<T>
// ends, Python's multiprocessing.Pipe for C++; mproc::wait() waits on
// several connections at once (multiprocessing.connection.wait). Listener
// and Client (<mproc/connection.hpp>) make Connections over sockets; every
// Connection has the same interface whatever made it, and wait() takes a mix.
//
// Each end is a handle: copies refer to the same end (and compare equal with
// ==, and hash alike, so one can be removed from a list given to wait()),
// and a copy passed to a child process (fork or spawn, as a Process
// argument) lets the child use it. A Pipe's messages travel through a ring
// in anonymous shared memory, one memcpy each way for trivially copyable T;
// other T are serialized. A Listener/Client connection's travel as
// length-prefixed frames on its socket.
//
// End of file: when every copy of the other end is closed — close(), the
// process exiting, or the process being killed, kill -9 included — recv()
// returns what is left and then throws EOFError, also if it was already
// blocked. send() to a closed Pipe end throws EOFError within 256 sends (at
// once if the peer died blocked in recv, and whenever the ring is full); to a
// closed socket end, at the first send the kernel reports the peer gone
// (usually the first or second). As with Python's pipes, a process that
// holds both ends (a forked parent, say) never sees EOF on one until it
// closes its copy of the other.
//
// Blocking: recv() waits for a message, send() for room (in the ring, or in
// the socket's buffer); a Pipe spins briefly, then sleeps in poll(2).
// poll(timeout) waits without receiving; a true poll() means recv() will not
// block. Every blocking call takes a timeout. Threads: an end is meant for
// one thread at a time (as in Python); threads of one process that do use
// one end at once are safe (each message is sent and received whole) but
// may wake late. Two processes receiving on one socket end split its byte
// stream between them: give each process its own connection.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "mproc/detail/channel.hpp"
#include "mproc/detail/item_codec.hpp"
#include "mproc/duration.hpp"
#include "mproc/errors.hpp"

namespace mproc {

template <class T>
class Connection;

namespace detail {

/// One end, shared by every copy of its handles in this process.
struct ConnectionEnd;

template <class T>
Connection<T> make_connection(std::shared_ptr<ConnectionEnd> end);

/// The untyped part of a Connection end.
class ConnectionBase {
public:
    /// Sends raw bytes as one message (multiprocessing's send_bytes).
    /// TimeoutError if the timeout passes first (nothing sent).
    void send_bytes(std::span<const std::byte> bytes, Timeout timeout = std::nullopt) const;
    /// Receives one message's raw bytes. EOFError once the other end is
    /// closed and nothing is left; TimeoutError if the timeout passes.
    std::vector<std::byte> recv_bytes(Timeout timeout = std::nullopt) const;
    /// Receives one message into `buffer` and returns its size (Python's
    /// recv_bytes_into; pass buffer.subspan(offset) for its offset). A
    /// message larger than the buffer is BufferTooShort, whose size() is the
    /// message's: unlike Python, the message stays in the connection, for
    /// recv_bytes() or a larger buffer.
    std::size_t recv_bytes_into(std::span<std::byte> buffer, Timeout timeout = std::nullopt) const;
    /// True once a message (or EOF) is ready to receive.
    bool poll(Timeout timeout = Duration(0)) const;
    /// Closes this end in this process (every copy of the handle here).
    void close() const;
    bool closed() const noexcept;
    bool readable() const noexcept;
    bool writable() const noexcept;

    void mproc_export(HandleWriter& w) const;

protected:
    explicit ConnectionBase(std::shared_ptr<ConnectionEnd> end) noexcept : end_(std::move(end)) {}
    static std::shared_ptr<ConnectionEnd> import_end(HandleReader& r);

    void send_raw(std::span<const std::byte> bytes, Timeout timeout, const char* what) const;
    void send_encoded(const ItemEncoder& item, Timeout timeout) const;
    /// Hands the next message to take(ctx, bytes); see detail::Taker.
    void receive(bool (*take)(void*, std::span<const std::byte>), void* ctx, Timeout timeout,
                 const char* what) const;
    const void* identity() const noexcept { return end_.get(); }

    std::shared_ptr<ConnectionEnd> end_;

    friend std::vector<std::size_t> wait_ready(std::span<ConnectionBase* const>, Timeout);
};

/// The two ends of a new Pipe.
std::pair<std::shared_ptr<ConnectionEnd>, std::shared_ptr<ConnectionEnd>> make_pipe(bool duplex,
                                                                                   std::size_t capacity);

/// Indexes of the connections that are ready to receive (or at EOF).
std::vector<std::size_t> wait_ready(std::span<ConnectionBase* const> conns, Timeout timeout);

}  // namespace detail

template <class T>
class Connection : public detail::ConnectionBase {
public:
    /// Sends one item. EOFError if the other end is closed (see above);
    /// TimeoutError if the timeout passes while there is no room.
    void send(const T& item, Timeout timeout = std::nullopt) const {
        if constexpr (detail::is_raw_item<T>)
            send_raw(std::as_bytes(std::span<const T, 1>(&item, 1)), timeout, "send");
        else
            send_encoded(detail::item_encoder(item), timeout);
    }
    /// Receives one item. EOFError once the other end is closed and nothing
    /// is left; TimeoutError if the timeout passes first; SerializationError
    /// (the message is consumed) if it cannot be decoded as a T.
    T recv(Timeout timeout = std::nullopt) const {
        std::optional<T> out;
        receive(
            [](void* ctx, std::span<const std::byte> bytes) {
                static_cast<std::optional<T>*>(ctx)->emplace(detail::decode_item<T>(bytes));
                return true;
            },
            &out, timeout, "recv");
        return std::move(*out);
    }

    /// The same end (a copy of this handle in this process).
    friend bool operator==(const Connection& a, const Connection& b) noexcept {
        return a.identity() == b.identity();
    }

    static Connection mproc_import(detail::HandleReader& r) { return Connection(import_end(r)); }

private:
    friend Connection detail::make_connection<T>(std::shared_ptr<detail::ConnectionEnd>);
    friend struct std::hash<Connection>;
    explicit Connection(std::shared_ptr<detail::ConnectionEnd> end) noexcept : ConnectionBase(std::move(end)) {}
};

namespace detail {
template <class T>
Connection<T> make_connection(std::shared_ptr<ConnectionEnd> end) {
    return Connection<T>(std::move(end));
}
}  // namespace detail

/// multiprocessing.Pipe(duplex). With duplex=false the first end only
/// receives and the second only sends.
template <class T>
std::pair<Connection<T>, Connection<T>> Pipe(bool duplex = true,
                                             std::size_t capacity = detail::kDefaultRingCapacity) {
    auto [a, b] = detail::make_pipe(duplex, capacity);
    return {detail::make_connection<T>(std::move(a)), detail::make_connection<T>(std::move(b))};
}

/// multiprocessing.connection.wait: blocks until at least one connection is
/// ready to receive (or at EOF), or the timeout passes (then returns none).
/// The connections may be any mix of Pipe ends and socket connections.
template <class T>
std::vector<Connection<T>> wait(const std::vector<Connection<T>>& conns, Timeout timeout = std::nullopt) {
    std::vector<detail::ConnectionBase*> bases;
    for (const auto& c : conns) bases.push_back(const_cast<Connection<T>*>(&c));
    std::vector<Connection<T>> ready;
    for (std::size_t i : detail::wait_ready(bases, timeout)) ready.push_back(conns[i]);
    return ready;
}

}  // namespace mproc

/// Connections hash by the end they refer to (as == compares).
template <class T>
struct std::hash<mproc::Connection<T>> {
    std::size_t operator()(const mproc::Connection<T>& c) const noexcept {
        return std::hash<const void*>{}(c.identity());
    }
};
