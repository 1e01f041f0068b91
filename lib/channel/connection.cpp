// Connection ends over a Transport, Pipe(), and wait(). See
// include/mproc/pipe.hpp and transport.hpp.
#include "mproc/pipe.hpp"

#include <cstring>

#include "channel/transport.hpp"
#include "os/os.hpp"
#include "os/socket.hpp"
#include "sync/waiter.hpp"

namespace mproc::detail {

std::pair<std::shared_ptr<ConnectionEnd>, std::shared_ptr<ConnectionEnd>> make_pipe(bool duplex,
                                                                                   std::size_t capacity) {
    auto [a, b] = make_ring_pipe(duplex, capacity);
    return {std::make_shared<ConnectionEnd>(std::move(a)), std::make_shared<ConnectionEnd>(std::move(b))};
}

namespace {
Transport& transport(const std::shared_ptr<ConnectionEnd>& end) {
    if (!end || !end->transport) throw ValueError("Connection is closed");
    return *end->transport;
}
[[noreturn]] void timed_out(const char* what) {
    throw TimeoutError(std::string("Connection::") + what + "(): timed out");
}
}  // namespace

void ConnectionBase::send_raw(std::span<const std::byte> bytes, Timeout timeout, const char* what) const {
    if (!transport(end_).send(bytes, timeout)) timed_out(what);
}

void ConnectionBase::send_bytes(std::span<const std::byte> bytes, Timeout timeout) const {
    send_raw(bytes, timeout, "send_bytes");
}

void ConnectionBase::send_encoded(const ItemEncoder& item, Timeout timeout) const {
    if (!transport(end_).send_item(item, timeout)) timed_out("send");
}

void ConnectionBase::receive(bool (*take)(void*, std::span<const std::byte>), void* ctx, Timeout timeout,
                             const char* what) const {
    if (!transport(end_).receive(take, ctx, timeout)) timed_out(what);
}

std::vector<std::byte> ConnectionBase::recv_bytes(Timeout timeout) const {
    auto got = transport(end_).receive_bytes(timeout);
    if (!got) timed_out("recv_bytes");
    return std::move(*got);
}

std::size_t ConnectionBase::recv_bytes_into(std::span<std::byte> buffer, Timeout timeout) const {
    struct Into {
        std::span<std::byte> buffer;
        std::size_t size = 0;
        bool fits = true;
    } into{buffer};
    receive(
        [](void* ctx, std::span<const std::byte> message) {
            auto& in = *static_cast<Into*>(ctx);
            in.size = message.size();
            in.fits = message.size() <= in.buffer.size();
            if (in.fits && !message.empty()) std::memcpy(in.buffer.data(), message.data(), message.size());
            return in.fits;  // a message that does not fit stays
        },
        &into, timeout, "recv_bytes_into");
    if (!into.fits)
        throw BufferTooShort("Connection::recv_bytes_into(): the message is " + std::to_string(into.size) +
                                 " bytes, the buffer " + std::to_string(buffer.size()) +
                                 "; the message is still there: receive it with recv_bytes() or a larger buffer",
                             into.size);
    return into.size;
}

bool ConnectionBase::poll(Timeout timeout) const { return transport(end_).poll(timeout); }

void ConnectionBase::close() const {
    if (end_) end_->transport.reset();
}

bool ConnectionBase::closed() const noexcept { return !end_ || !end_->transport; }
bool ConnectionBase::readable() const noexcept { return !closed() && end_->transport->readable(); }
bool ConnectionBase::writable() const noexcept { return !closed() && end_->transport->writable(); }

void ConnectionBase::mproc_export(HandleWriter& w) const { transport(end_).mproc_export(w); }

std::shared_ptr<ConnectionEnd> ConnectionBase::import_end(HandleReader& r) {
    switch (static_cast<TransportKind>(r.value())) {
        case TransportKind::ring: return std::make_shared<ConnectionEnd>(import_ring(r));
        case TransportKind::stream: return std::make_shared<ConnectionEnd>(import_stream(r));
    }
    throw SerializationError("a Connection handle of an unknown kind");
}

std::vector<std::size_t> wait_ready(std::span<ConnectionBase* const> conns, Timeout timeout) {
    const os::Deadline deadline = os::Deadline::after(timeout);
    std::vector<Transport*> ts;
    for (auto* c : conns) ts.push_back(&transport(c->end_));
    for (;;) {
        std::vector<std::size_t> ready;
        for (std::size_t i = 0; i < ts.size(); ++i)
            if (ts[i]->ready()) ready.push_back(i);
        if (!ready.empty() || deadline.expired()) return ready;
        // Sleep on every end's fd at once: a Pipe writer wakes a sleeping
        // reader through its link socket (which also reports the other end's
        // death), a socket end's own fd turns readable.
        std::vector<int> fds;
        for (auto* t : ts) fds.push_back(t->wait_fd());
        for (auto* t : ts) t->arm();
        bool again = false;
        for (auto* t : ts) again = again || t->ready();
        // At most kRecheckInterval at a time: a writer killed between its
        // commit and its wake-up byte must not leave us asleep (waiter.hpp).
        if (!again)
            for (std::size_t i : os::poll_readable(fds, recheck_deadline(deadline))) ts[i]->woken();
        for (auto* t : ts) t->disarm();
    }
}

}  // namespace mproc::detail
