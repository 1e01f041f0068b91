// A Listener/Client end: length-prefixed frames (frame.hpp) on a connected
// TCP or unix stream socket. See transport.hpp and include/mproc/connection.hpp.
//
// Sends and receives each hold a lock of their own, so threads of one
// process never interleave two frames or split one frame's bytes between
// them. A receive that times out half-way through a frame keeps what has
// arrived; the next one carries on. A send that times out half-way cannot
// take its bytes back: the end can no longer send (its peer would read the
// rest of the stream out of step), and says so.
#include <chrono>
#include <climits>
#include <condition_variable>
#include <mutex>
#include <optional>

#include "channel/frame.hpp"
#include "channel/transport.hpp"
#include "mproc/errors.hpp"
#include "os/os.hpp"
#include "os/socket.hpp"

namespace mproc::detail {

using wire::FrameReader;
using wire::Sent;

namespace {

/// A lock whose acquisition can time out. Not std::timed_mutex: libstdc++
/// implements its try_lock_for with pthread_mutex_clocklock, which GCC 12's
/// ThreadSanitizer does not intercept, so every unlock after it is reported
/// as "unlock of an unlocked mutex". A flag under a plain mutex and a
/// condition variable means the same and every tool understands it.
class TimedLock {
public:
    /// Takes the lock, waiting until the deadline at most; false if it passed.
    bool lock_until(const os::Deadline& deadline) {
        std::unique_lock<std::mutex> guard(mu_);
        while (held_) {
            const Timeout left = deadline.remaining();
            if (!left) {
                freed_.wait(guard);
            } else if (freed_.wait_for(guard, *left) == std::cv_status::timeout && held_) {
                return false;
            }
        }
        held_ = true;
        return true;
    }
    void unlock() {
        {
            std::lock_guard<std::mutex> guard(mu_);
            held_ = false;
        }
        freed_.notify_one();
    }

private:
    std::mutex mu_;
    std::condition_variable freed_;
    bool held_ = false;
};

/// Holds a TimedLock for a scope once lock_until succeeded.
class Held {
public:
    Held(TimedLock& lock, const os::Deadline& deadline) : lock_(lock), ok_(lock.lock_until(deadline)) {}
    ~Held() {
        if (ok_) lock_.unlock();
    }
    Held(const Held&) = delete;
    Held& operator=(const Held&) = delete;
    explicit operator bool() const noexcept { return ok_; }

private:
    TimedLock& lock_;
    bool ok_;
};

class StreamTransport final : public Transport {
public:
    explicit StreamTransport(DescriptorPtr sock) : sock_(std::move(sock)), in_(UINT64_MAX) {}

    bool readable() const noexcept override { return true; }
    bool writable() const noexcept override { return true; }

    bool send(std::span<const std::byte> message, Timeout timeout) override {
        const os::Deadline deadline = os::Deadline::after(timeout);
        const Held lock(send_mu_, deadline);
        if (!lock) return false;
        if (send_broken_)
            throw Error("Connection: an earlier send timed out half-way through a message, so this end "
                        "can no longer send (its peer would read out of step); close it and reconnect");
        switch (wire::send_frame(sock_->fd(), message, deadline)) {
            case Sent::all: return true;
            case Sent::none: return false;
            case Sent::part: break;
        }
        send_broken_ = true;
        throw TimeoutError("Connection::send(): timed out half-way through a " + std::to_string(message.size()) +
                           "-byte message; this end can no longer send");
    }

    bool send_item(const ItemEncoder& item, Timeout timeout) override {
        const std::vector<std::byte> bytes = item.to_bytes(item.item);
        return send(bytes, timeout);
    }

    bool receive(Taker take, void* ctx, Timeout timeout) override {
        const os::Deadline deadline = os::Deadline::after(timeout);
        const Held lock(recv_mu_, deadline);
        if (!lock || !wait_frame(deadline)) return false;
        bool consume = true;
        try {
            consume = take(ctx, in_.body());
        } catch (...) {
            in_.clear();
            throw;
        }
        if (consume) in_.clear();
        return true;
    }

    std::optional<std::vector<std::byte>> receive_bytes(Timeout timeout) override {
        const os::Deadline deadline = os::Deadline::after(timeout);
        const Held lock(recv_mu_, deadline);
        if (!lock || !wait_frame(deadline)) return std::nullopt;
        return in_.take();
    }

    bool poll(Timeout timeout) override {
        const os::Deadline deadline = os::Deadline::after(timeout);
        const Held lock(recv_mu_, deadline);
        return lock && pull_until(deadline);
    }

    bool ready() override {
        const Held lock(recv_mu_, os::Deadline::never());
        return pull() != FrameReader::Status::incomplete;
    }
    int wait_fd() const noexcept override { return sock_->fd(); }

    void mproc_export(HandleWriter& w) const override {
        w.value(static_cast<std::uint64_t>(TransportKind::stream));
        w.descriptor(sock_);
    }

private:
    FrameReader::Status pull() { return last_ = in_.pull(sock_->fd()); }

    /// Reads until a whole frame, the end of the stream or a bad header is
    /// in (true), or the deadline passes (false).
    bool pull_until(const os::Deadline& deadline) {
        while (pull() == FrameReader::Status::incomplete)
            if (!os::wait_readable(sock_->fd(), deadline)) return false;
        return true;
    }

    /// pull_until, then EOFError / SerializationError unless it is a frame.
    bool wait_frame(const os::Deadline& deadline) {
        if (!pull_until(deadline)) return false;
        switch (last_) {
            case FrameReader::Status::frame:
                return true;
            case FrameReader::Status::end_of_stream:
                if (in_.started())
                    throw EOFError("Connection: the other end closed (or its process died) in the middle of a "
                                   "message (" + std::to_string(in_.arrived()) + " bytes of it had arrived)");
                throw EOFError("Connection: the other end is closed (or its process died)");
            case FrameReader::Status::bad_length:
            case FrameReader::Status::incomplete:
                break;
        }
        throw SerializationError("Connection: a malformed message header (length " +
                                 std::to_string(in_.claimed()) +
                                 "); the stream is out of step, so nothing more can be received on it");
    }

    DescriptorPtr sock_;
    TimedLock send_mu_;
    bool send_broken_ = false;
    TimedLock recv_mu_;
    FrameReader in_;
    FrameReader::Status last_ = FrameReader::Status::incomplete;
};

}  // namespace

TransportPtr make_stream(int fd) { return std::make_unique<StreamTransport>(Descriptor::adopt(fd)); }

TransportPtr import_stream(HandleReader& r) { return std::make_unique<StreamTransport>(r.descriptor()); }

}  // namespace mproc::detail
