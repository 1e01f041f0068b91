// A Pipe() end: a shared-memory ring each way (ChannelCore) and a unix
// socket pair between the two ends, which a sleeping reader polls (a writer
// wakes it through it) and which reports the other end's death. See
// transport.hpp and include/mproc/pipe.hpp.
#include <optional>

#include "channel/transport.hpp"
#include "mproc/detail/channel.hpp"
#include "mproc/errors.hpp"
#include "os/os.hpp"
#include "os/socket.hpp"

namespace mproc::detail {

namespace {

class RingTransport final : public Transport {
public:
    RingTransport() = default;

    bool readable() const noexcept override { return in_.has_value(); }
    bool writable() const noexcept override { return out_.has_value(); }

    bool send(std::span<const std::byte> message, Timeout timeout) override {
        return out().put(message, timeout);
    }
    bool send_item(const ItemEncoder& item, Timeout timeout) override {
        return put_encoded(out(), item, timeout);
    }
    bool receive(Taker take, void* ctx, Timeout timeout) override {
        ReadReservation r;
        if (!in().begin_get(r, timeout)) return false;
        bool consume = true;
        try {
            consume = take(ctx, r.bytes());
        } catch (...) {
            r.commit();
            throw;
        }
        if (consume) r.commit();  // else dropped: the item stays for the next reader
        return true;
    }
    std::optional<std::vector<std::byte>> receive_bytes(Timeout timeout) override {
        ReadReservation r;
        if (!in().begin_get(r, timeout)) return std::nullopt;
        std::vector<std::byte> out(r.bytes().begin(), r.bytes().end());
        r.commit();
        return out;
    }
    bool poll(Timeout timeout) override { return in().poll(timeout); }

    bool ready() override { return in().poll(Duration(0)); }
    int wait_fd() const noexcept override { return link_->fd(); }
    void arm() noexcept override { if (in_) in_->arm_reader(); }
    void disarm() noexcept override { if (in_) in_->disarm_reader(); }
    void woken() override { os::wait_and_drain(link_->fd(), os::Deadline::after(Duration(0))); }

    void mproc_export(HandleWriter& w) const override {
        w.value(static_cast<std::uint64_t>(TransportKind::ring));
        w.descriptor(link_);
        w.value((in_ ? 1 : 0) | (out_ ? 2 : 0));
        if (in_) in_->mproc_export(w);
        if (out_) out_->mproc_export(w);
    }

    std::optional<ChannelCore> in_;   // what this end receives
    std::optional<ChannelCore> out_;  // what this end sends
    DescriptorPtr link_;              // this end's socket to the other end

private:
    ChannelCore& in() {
        if (!in_) throw ValueError("Connection is write-only");
        return *in_;
    }
    ChannelCore& out() {
        if (!out_) throw ValueError("Connection is read-only");
        return *out_;
    }
};

}  // namespace

std::pair<TransportPtr, TransportPtr> make_ring_pipe(bool duplex, std::size_t capacity) {
    auto [la, lb] = os::socket_pair(os::SocketKind::stream);
    auto a = std::make_unique<RingTransport>(), b = std::make_unique<RingTransport>();
    a->link_ = Descriptor::adopt(la.release());
    b->link_ = Descriptor::adopt(lb.release());
    // b -> a always; a -> b only when duplex (Python: Pipe(False) -> (r, w)).
    ChannelCore to_a(capacity, 0, ChannelCore::Wait::socket, b->link_, false, "mproc-pipe");
    a->in_ = to_a.with_link(a->link_);
    b->out_ = std::move(to_a);
    if (duplex) {
        ChannelCore to_b(capacity, 0, ChannelCore::Wait::socket, a->link_, false, "mproc-pipe");
        b->in_ = to_b.with_link(b->link_);
        a->out_ = std::move(to_b);
    }
    return {std::move(a), std::move(b)};
}

TransportPtr import_ring(HandleReader& r) {
    auto t = std::make_unique<RingTransport>();
    t->link_ = r.descriptor();
    const std::uint64_t has = r.value();
    if (has & 1) t->in_ = ChannelCore::mproc_import(r, t->link_);
    if (has & 2) t->out_ = ChannelCore::mproc_import(r, t->link_);
    return t;
}

}  // namespace mproc::detail
