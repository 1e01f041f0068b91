// How a Connection end moves its messages: one interface, one file per
// implementation, so Connection<T>, poll() and wait() never ask which kind
// of end they hold.
//
//   ring_transport.cpp    Pipe(): a shared-memory ring each way (ChannelCore)
//                         and a unix socket pair for wake-ups and EOF
//   stream_transport.cpp  Listener/Client: length-prefixed frames (frame.hpp)
//                         on a TCP or unix stream socket
//
// A transport is owned by one ConnectionEnd and used by the handles of one
// process; handles passed to a child are re-created there by import().
//
// Internal header.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "mproc/detail/item_codec.hpp"
#include "mproc/detail/segment.hpp"
#include "mproc/duration.hpp"

namespace mproc::detail {

/// Called with the next message's bytes; returns true to consume it, false
/// to leave it for the next receive. An exception it throws consumes it.
using Taker = bool (*)(void* ctx, std::span<const std::byte> message);

class Transport {
public:
    virtual ~Transport() = default;

    virtual bool readable() const noexcept = 0;
    virtual bool writable() const noexcept = 0;

    /// One message; false on timeout (nothing sent). EOFError if the peer
    /// has closed its end.
    virtual bool send(std::span<const std::byte> message, Timeout timeout) = 0;
    /// One serialized item (written straight into the ring where it can be).
    virtual bool send_item(const ItemEncoder& item, Timeout timeout) = 0;
    /// Hands the next message to `take`; false on timeout. EOFError once the
    /// peer has closed and nothing is left.
    virtual bool receive(Taker take, void* ctx, Timeout timeout) = 0;
    /// The next message as bytes, consumed; nullopt on timeout.
    virtual std::optional<std::vector<std::byte>> receive_bytes(Timeout timeout) = 0;
    /// True once a message (or EOF) is ready to receive.
    virtual bool poll(Timeout timeout) = 0;

    // ---- for wait() on several ends at once ----
    /// poll(0) that never throws EOFError (EOF is "ready").
    virtual bool ready() = 0;
    /// The fd that becomes readable when ready() may have changed.
    virtual int wait_fd() const noexcept = 0;
    /// Around the sleep on wait_fd(): tell writers a reader sleeps, and back.
    virtual void arm() noexcept {}
    virtual void disarm() noexcept {}
    /// wait_fd() was readable: consume the wake-up, if it is one.
    virtual void woken() {}

    /// Writes what a child needs to re-create this end (its kind first).
    virtual void mproc_export(HandleWriter& w) const = 0;
};

using TransportPtr = std::unique_ptr<Transport>;

/// What a Connection handle points at; close() drops the transport.
struct ConnectionEnd {
    explicit ConnectionEnd(TransportPtr t) noexcept : transport(std::move(t)) {}
    TransportPtr transport;
};

/// The kinds, as export writes them.
enum class TransportKind : std::uint64_t { ring = 1, stream = 2 };

/// Pipe(duplex, capacity): the two ends.
std::pair<TransportPtr, TransportPtr> make_ring_pipe(bool duplex, std::size_t capacity);
TransportPtr import_ring(HandleReader& r);

/// An end on a connected stream socket (takes ownership of the fd).
TransportPtr make_stream(int fd);
TransportPtr import_stream(HandleReader& r);

}  // namespace mproc::detail
