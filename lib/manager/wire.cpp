// The remote manager's wire. See wire.hpp.
#include "manager/wire.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <string_view>

#include "channel/auth.hpp"
#include "mproc/detail/exception_codec.hpp"
#include "os/socket.hpp"

namespace mproc::detail::mwire {

// ---- frames ---------------------------------------------------------------------------

void FrameBuilder::bytes(Bytes b) {
    if (b.size() > kMaxFrame) throw ValueError("mproc remote manager: an item over 1 GiB cannot be sent");
    put(static_cast<std::uint32_t>(b.size()));
    buf_.insert(buf_.end(), b.begin(), b.end());
}

void FrameBuilder::finish() {
    const std::size_t n = buf_.size() - start_ - 4;
    if (n > kMaxFrame) {
        restart();
        throw ValueError("mproc remote manager: a message over 1 GiB cannot be sent");
    }
    patch(start_, static_cast<std::uint32_t>(n));
}

Bytes FrameReader::bytes() {
    const auto n = get<std::uint32_t>();
    if (rest_.size() < n) malformed("is cut short");
    const Bytes b = rest_.first(n);
    rest_ = rest_.subspan(n);
    return b;
}

void FrameReader::malformed(const char* what) {
    throw SerializationError(std::string("mproc remote manager: a message ") + what +
                             " (a malformed or hostile message, or mismatched mproc versions)");
}

// ---- argument codecs ------------------------------------------------------------------

bool Codec<bool>::decode(FrameReader& r, DecodeScratch&) {
    const auto v = r.get<std::uint8_t>();
    if (v > 1) FrameReader::malformed("holds a flag that is neither 0 nor 1");
    return v != 0;
}

Kind Codec<Kind>::decode(FrameReader& r, DecodeScratch&) {
    const auto v = r.get<std::uint8_t>();
    if (v > static_cast<std::uint8_t>(Kind::last)) FrameReader::malformed("names an unknown kind of object");
    return static_cast<Kind>(v);
}

void Codec<BytesList>::encode(FrameBuilder& f, BytesList v) {
    if (v.size() > kMaxFrame / 4) throw ValueError("mproc remote manager: too many items for one message");
    f.put(static_cast<std::uint32_t>(v.size()));
    for (Bytes b : v) f.bytes(b);
}

BytesList Codec<BytesList>::decode(FrameReader& r, DecodeScratch& s) {
    const auto n = r.get<std::uint32_t>();
    // Each item takes at least its 4-byte length: a count the frame cannot
    // hold is refused before anything is reserved for it.
    if (n > r.left() / 4) FrameReader::malformed("claims more items than it holds");
    if (s.lists_used >= std::size(s.lists)) FrameReader::malformed("has too many lists");
    std::vector<Bytes>& out = s.lists[s.lists_used++];
    out.clear();
    out.reserve(n);
    for (std::uint32_t i = 0; i < n; ++i) out.push_back(r.bytes());
    return out;
}

void Codec<U64List>::encode(FrameBuilder& f, U64List v) {
    if (v.size() > kMaxFrame / 8) throw ValueError("mproc remote manager: too many items for one message");
    f.put(static_cast<std::uint32_t>(v.size()));
    for (std::uint64_t x : v) f.put(x);
}

U64List Codec<U64List>::decode(FrameReader& r, DecodeScratch& s) {
    const auto n = r.get<std::uint32_t>();
    if (n > r.left() / 8) FrameReader::malformed("claims more numbers than it holds");
    s.numbers.clear();
    s.numbers.reserve(n);
    for (std::uint32_t i = 0; i < n; ++i) s.numbers.push_back(r.get<std::uint64_t>());
    return s.numbers;
}

void Codec<Timeout>::encode(FrameBuilder& f, const Timeout& v) {
    std::int64_t ns = -1;
    if (v) {
        const double d = std::max(0.0, v->count()) * 1e9;
        ns = d >= 9e18 ? -1 : static_cast<std::int64_t>(d);
    }
    f.put(ns);
}

Timeout Codec<Timeout>::decode(FrameReader& r, DecodeScratch& s) {
    const auto ns = r.get<std::int64_t>();
    if (ns < -1) FrameReader::malformed("holds a negative timeout");
    Timeout t;
    if (ns >= 0) t = Duration(static_cast<double>(ns) * 1e-9);
    if (s.max_wait && (!t || *t > *s.max_wait)) t = s.max_wait;
    return t;
}

// ---- errors -----------------------------------------------------------------------------

// Any exception travels through the exception codec, so the client
// re-throws it as the same type: mproc's errors, registered types, std ones.
void encode_current_error(FrameBuilder& f) {
    const std::vector<std::byte> record = exception_bytes(std::current_exception());
    f.bytes(Bytes(record.data(), record.size()));
}

void throw_error(FrameReader& r) {
    const Bytes b = r.bytes();
    std::rethrow_exception(exception_from_bytes(b));
}

// ---- frames from a socket -------------------------------------------------------------

namespace {
std::uint32_t length_at(const std::byte* p) noexcept {
    std::uint32_t n;
    std::memcpy(&n, p, 4);
    return n;
}
constexpr std::size_t kReadChunk = 64 * 1024;
}  // namespace

bool FrameStream::has_frame() const noexcept {
    return end_ - begin_ >= 4 && end_ - begin_ - 4 >= length_at(buf_.data() + begin_);
}

// Reads whatever has arrived, spinning a wake-up's worth of time first:
// replies usually follow within microseconds, and sleeping costs one
// wake-up (25-45 us on a small VM). Adaptive: after a spin that came up
// empty (the peer is not running: too few CPUs), skip spinning a while.
bool FrameStream::fill(int fd, const os::Deadline& deadline) {
    if (buf_.size() - end_ < kReadChunk / 4) {
        if (begin_ > 0) {  // slide what is left to the front
            std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
            end_ -= begin_;
            begin_ = 0;
        }
        if (buf_.size() - end_ < kReadChunk / 4) buf_.resize(std::max(buf_.size() * 2, kReadChunk));
    }
    const std::span<std::byte> room(buf_.data() + end_, buf_.size() - end_);
    std::optional<std::size_t> n;
    if (skip_ == 0) {
        n = os::recv_some(fd, room);
        if (!n) {
            os::spin_until([&] { return (n = os::recv_some(fd, room)).has_value(); }, os::spin_budget_ns());
            backoff_ = n ? 0 : std::min(2 * backoff_ + 1, 256u);
            skip_ = backoff_;
        }
    } else {
        --skip_;
    }
    while (!n) {
        // Without a deadline, sleep in the read itself (both ends' sockets
        // are blocking): one system call instead of a poll and a read.
        if (deadline.is_never() && (n = os::recv_wait(fd, room))) break;
        if (!os::wait_readable(fd, deadline)) throw TimeoutError("mproc remote manager: timed out waiting for the peer");
        n = os::recv_some(fd, room);
    }
    if (*n == 0) return false;
    end_ += *n;
    return true;
}

std::optional<Bytes> FrameStream::next(int fd, const os::Deadline& deadline) {
    if (begin_ == end_ && buf_.size() > 16 * kReadChunk) {
        begin_ = end_ = 0;
        buf_ = std::vector<std::byte>(kReadChunk);  // after a big message, give its memory back
    }
    while (end_ - begin_ < 4)
        if (!fill(fd, deadline)) return std::nullopt;
    const std::uint32_t n = length_at(buf_.data() + begin_);
    if (n > max_)
        throw SerializationError("mproc remote manager: a message claims " + std::to_string(n) +
                                 " bytes, over the limit of " + std::to_string(max_));
    // Grows with what arrives (fill() doubles the buffer), never to n at once.
    while (end_ - begin_ - 4 < n)
        if (!fill(fd, deadline)) return std::nullopt;
    const Bytes body(buf_.data() + begin_ + 4, n);
    begin_ += 4 + n;
    if (begin_ == end_) begin_ = end_ = 0;
    return body;
}

// ---- authentication -------------------------------------------------------------------

namespace {
constexpr std::string_view kBusy = "#BUSY#";
constexpr std::size_t kBusyFrame = 4 + kBusy.size();

/// The frame a server at its limit sends: [u32 length]["#BUSY#"].
std::array<std::byte, kBusyFrame> busy_frame() noexcept {
    std::array<std::byte, kBusyFrame> f{};
    const auto n = static_cast<std::uint32_t>(kBusy.size());
    std::memcpy(f.data(), &n, 4);
    std::memcpy(f.data() + 4, kBusy.data(), kBusy.size());
    return f;
}
}  // namespace

void server_handshake(int fd, const std::string& authkey, const os::Deadline& deadline) {
    authenticate(fd, authkey, AuthRole::server, deadline);
}

void client_handshake(int fd, const std::string& authkey, const os::Deadline& deadline) {
    // A server at its connection limit says so instead of challenging.
    if (os::wait_readable(fd, deadline)) {
        std::array<std::byte, kBusyFrame> first{};
        if (os::peek_some(fd, first) == kBusyFrame && first == busy_frame())
            throw OSError("mproc remote manager: the server is at its connection limit and refused this "
                          "connection; try again when a client has disconnected",
                          ECONNREFUSED);
    }
    authenticate(fd, authkey, AuthRole::client, deadline);
}

void send_busy(int fd) noexcept { (void)os::send_nowait(fd, busy_frame()); }

}  // namespace mproc::detail::mwire
