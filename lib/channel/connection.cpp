// Connection ends and Pipe(). See include/mproc/pipe.hpp.
#include "mproc/pipe.hpp"

#include "os/os.hpp"
#include "os/socket.hpp"

namespace mproc::detail {

struct ConnectionBase::End {
    std::optional<ChannelCore> in;   // what this end receives
    std::optional<ChannelCore> out;  // what this end sends
    DescriptorPtr link;              // this end's socket to the other end
    bool closed = false;
};

std::pair<std::shared_ptr<ConnectionBase::End>, std::shared_ptr<ConnectionBase::End>>
ConnectionBase::make_pipe(bool duplex, std::size_t capacity) {
    auto [la, lb] = os::socket_pair(os::SocketKind::stream);
    auto a = std::make_shared<End>(), b = std::make_shared<End>();
    a->link = Descriptor::adopt(la.release());
    b->link = Descriptor::adopt(lb.release());
    // b -> a always; a -> b only when duplex (Python: Pipe(False) -> (r, w)).
    ChannelCore to_a(capacity, 0, ChannelCore::Wait::socket, b->link);
    a->in = to_a.with_link(a->link);
    b->out = std::move(to_a);
    if (duplex) {
        ChannelCore to_b(capacity, 0, ChannelCore::Wait::socket, a->link);
        b->in = to_b.with_link(b->link);
        a->out = std::move(to_b);
    }
    return {a, b};
}

ChannelCore& ConnectionBase::in() const {
    if (!end_ || end_->closed) throw ValueError("Connection is closed");
    if (!end_->in) throw ValueError("Connection is write-only");
    return *end_->in;
}

ChannelCore& ConnectionBase::out() const {
    if (!end_ || end_->closed) throw ValueError("Connection is closed");
    if (!end_->out) throw ValueError("Connection is read-only");
    return *end_->out;
}

void ConnectionBase::send_bytes(std::span<const std::byte> bytes, Timeout timeout) const {
    if (!out().put(bytes, timeout)) throw TimeoutError("Connection::send_bytes(): timed out");
}

std::vector<std::byte> ConnectionBase::recv_bytes(Timeout timeout) const {
    ReadReservation r;
    if (!in().begin_get(r, timeout)) throw TimeoutError("Connection::recv_bytes(): timed out");
    std::vector<std::byte> out(r.bytes().begin(), r.bytes().end());
    r.commit();
    return out;
}

bool ConnectionBase::poll(Timeout timeout) const { return in().poll(timeout); }

void ConnectionBase::close() const {
    if (!end_ || end_->closed) return;
    end_->closed = true;
    end_->in.reset();
    end_->out.reset();
    end_->link.reset();
}

bool ConnectionBase::closed() const noexcept { return !end_ || end_->closed; }
bool ConnectionBase::readable() const noexcept { return end_ && end_->in.has_value(); }
bool ConnectionBase::writable() const noexcept { return end_ && end_->out.has_value(); }

void ConnectionBase::mproc_export(HandleWriter& w) const {
    if (closed()) throw ValueError("Connection is closed");
    w.descriptor(end_->link);
    w.value((end_->in ? 1 : 0) | (end_->out ? 2 : 0));
    if (end_->in) end_->in->mproc_export(w);
    if (end_->out) end_->out->mproc_export(w);
}

std::shared_ptr<ConnectionBase::End> ConnectionBase::import_end(HandleReader& r) {
    auto e = std::make_shared<End>();
    e->link = r.descriptor();
    std::uint64_t has = r.value();
    if (has & 1) e->in = ChannelCore::mproc_import(r, e->link);
    if (has & 2) e->out = ChannelCore::mproc_import(r, e->link);
    return e;
}

std::vector<std::size_t> wait_ready(std::span<ConnectionBase* const> conns, Timeout timeout) {
    const os::Deadline deadline = os::Deadline::after(timeout);
    for (;;) {
        std::vector<std::size_t> ready;
        for (std::size_t i = 0; i < conns.size(); ++i)
            if (conns[i]->in().poll(Duration(0))) ready.push_back(i);
        if (!ready.empty()) return ready;
        if (deadline.expired()) return {};
        // Sleep on every link socket at once; a writer wakes a sleeping
        // reader through it, and it reports the other end's death.
        std::vector<int> fds;
        for (auto* c : conns) fds.push_back(c->end_->link->fd());
        for (auto* c : conns) c->in().arm_reader();
        bool again = false;
        for (auto* c : conns) again = again || c->in().poll(Duration(0));
        if (!again)
            for (std::size_t i : os::poll_readable(fds, deadline))
                os::wait_and_drain(fds[i], os::Deadline::after(Duration(0)));  // eat the wake-ups
        for (auto* c : conns) c->in().disarm_reader();
    }
}

}  // namespace mproc::detail
