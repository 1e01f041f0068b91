// mproc pipes: Pipe<T>() makes two connected Connection<T> ends, Python's
// multiprocessing.Pipe for C++; mproc::wait() waits on several at once
// (multiprocessing.connection.wait).
//
// Each end is a handle: copies refer to the same end, and a copy passed to a
// child process (fork or spawn, as a Process argument) lets the child use
// it. Messages travel through a ring in anonymous shared memory, one memcpy
// each way for trivially copyable T; other T are serialized.
//
// End of file: each end also holds a unix socket to the other. When every
// copy of the other end is closed — close(), the process exiting, or the
// process being killed, kill -9 included — recv() returns what is left and
// then throws EOFError, also if it was already blocked; send() to such an end
// throws EOFError within 256 sends (at once if the peer died blocked in
// recv, and whenever the ring is full). As with Python's pipes, a process
// that holds both ends (a forked parent, say) never sees EOF on one until it
// closes its copy of the other.
//
// Blocking: recv() waits for a message, send() for room in the ring; both
// spin briefly, then sleep in poll(2). poll(timeout) waits without
// receiving. An end is meant for one thread at a time (as in Python); two
// threads receiving on one end concurrently is safe but may wake late.
#pragma once

#include <cstddef>
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

namespace detail {

/// The untyped part of a Connection end.
class ConnectionBase {
public:
    /// Sends raw bytes (multiprocessing's send_bytes).
    void send_bytes(std::span<const std::byte> bytes, Timeout timeout = std::nullopt) const;
    /// Receives one message's raw bytes. EOFError once the other end is
    /// closed and nothing is left; TimeoutError if the timeout passes.
    std::vector<std::byte> recv_bytes(Timeout timeout = std::nullopt) const;
    /// True once a message (or EOF) is ready to receive.
    bool poll(Timeout timeout = Duration(0)) const;
    /// Closes this end in this process (every copy of the handle here).
    void close() const;
    bool closed() const noexcept;
    bool readable() const noexcept;
    bool writable() const noexcept;

    void mproc_export(HandleWriter& w) const;

protected:
    ConnectionBase() = default;
    struct End;
    explicit ConnectionBase(std::shared_ptr<End> end) : end_(std::move(end)) {}
    static std::pair<std::shared_ptr<End>, std::shared_ptr<End>> make_pipe(bool duplex,
                                                                          std::size_t capacity);
    static std::shared_ptr<End> import_end(HandleReader& r);
    ChannelCore& in() const;
    ChannelCore& out() const;

    std::shared_ptr<End> end_;

    friend std::vector<std::size_t> wait_ready(std::span<ConnectionBase* const>, Timeout);
};

/// Indexes of the connections that are ready to receive (or at EOF).
std::vector<std::size_t> wait_ready(std::span<ConnectionBase* const> conns, Timeout timeout);

}  // namespace detail

template <class T>
class Connection : public detail::ConnectionBase {
public:
    /// Sends one item. EOFError if the other end is closed and the ring is
    /// full; TimeoutError if the timeout passes while the ring is full.
    void send(const T& item, Timeout timeout = std::nullopt) const {
        if (!detail::put_item(out(), item, timeout)) throw TimeoutError("Connection::send(): timed out");
    }
    /// Receives one item. EOFError once the other end is closed and nothing
    /// is left; TimeoutError if the timeout passes first; SerializationError
    /// (the message is consumed) if it cannot be decoded as a T.
    T recv(Timeout timeout = std::nullopt) const {
        detail::ReadReservation r;
        if (!in().begin_get(r, timeout)) throw TimeoutError("Connection::recv(): timed out");
        struct CommitAlways {
            detail::ReadReservation& r;
            ~CommitAlways() { r.commit(); }
        } commit{r};
        return detail::decode_item<T>(r.bytes());
    }

    static Connection mproc_import(detail::HandleReader& r) { return Connection(import_end(r)); }

private:
    template <class U>
    friend std::pair<Connection<U>, Connection<U>> Pipe(bool, std::size_t);
    explicit Connection(std::shared_ptr<End> end) : ConnectionBase(std::move(end)) {}
};

/// multiprocessing.Pipe(duplex). With duplex=false the first end only
/// receives and the second only sends.
template <class T>
std::pair<Connection<T>, Connection<T>> Pipe(bool duplex = true,
                                             std::size_t capacity = detail::kDefaultRingCapacity) {
    auto [a, b] = Connection<T>::make_pipe(duplex, capacity);
    return {Connection<T>(std::move(a)), Connection<T>(std::move(b))};
}

/// multiprocessing.connection.wait: blocks until at least one connection is
/// ready to receive (or at EOF), or the timeout passes (then returns none).
template <class T>
std::vector<Connection<T>> wait(const std::vector<Connection<T>>& conns, Timeout timeout = std::nullopt) {
    std::vector<detail::ConnectionBase*> bases;
    for (const auto& c : conns) bases.push_back(const_cast<Connection<T>*>(&c));
    std::vector<Connection<T>> ready;
    for (std::size_t i : detail::wait_ready(bases, timeout)) ready.push_back(conns[i]);
    return ready;
}

}  // namespace mproc
