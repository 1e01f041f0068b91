// Frames on a stream socket. See frame.hpp.
#include "channel/frame.hpp"

#include <algorithm>

#include "os/socket.hpp"

namespace mproc::detail::wire {

namespace {

constexpr std::uint64_t kLongFrame = 0x7fffffff;
/// The first allocation for a body; then it doubles as bytes arrive.
constexpr std::size_t kFirstChunk = std::size_t{64} << 10;

void put_be(std::byte* out, std::uint64_t v, int bytes) noexcept {
    for (int i = 0; i < bytes; ++i) out[i] = static_cast<std::byte>(v >> (8 * (bytes - 1 - i)));
}

std::uint64_t get_be(const std::byte* in, int bytes) noexcept {
    std::uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v = (v << 8) | std::to_integer<std::uint64_t>(in[i]);
    return v;
}

}  // namespace

FrameHeader::FrameHeader(std::uint64_t n) noexcept {
    if (n > kLongFrame) {
        put_be(b_.data(), 0xffffffff, 4);  // -1 as "!i"
        put_be(b_.data() + 4, n, 8);
        size_ = 12;
    } else {
        put_be(b_.data(), n, 4);
        size_ = 4;
    }
}

Sent send_frame(int fd, std::span<const std::byte> body, const os::Deadline& deadline) {
    const FrameHeader h(body.size());
    const std::span<const std::byte> parts[2] = {h.bytes(), body};
    const std::size_t sent = os::send_gather(fd, parts, deadline);
    if (sent == h.bytes().size() + body.size()) return Sent::all;
    return sent == 0 ? Sent::none : Sent::part;
}

FrameReader::Status FrameReader::pull(int fd) {
    for (;;) {
        if (bad_) return Status::bad_length;
        if (!have_length_) {
            const std::size_t need = head_have_ < 4 ? 4 - head_have_ : 12 - head_have_;
            const auto n = os::recv_some(fd, std::span(head_.data() + head_have_, need));
            if (!n) return Status::incomplete;
            if (*n == 0) return Status::end_of_stream;
            head_have_ += *n;
            if (head_have_ == 4) {
                const auto v = static_cast<std::int32_t>(static_cast<std::uint32_t>(get_be(head_.data(), 4)));
                claimed_ = v;
                if (v == -1 && max_ > kLongFrame) continue;  // an 8-byte length follows
                length_ = static_cast<std::uint64_t>(v);
            } else if (head_have_ == 12) {
                length_ = get_be(head_.data() + 4, 8);
                claimed_ = static_cast<std::int64_t>(length_);
            } else {
                continue;
            }
            if (claimed_ < 0 || length_ > max_) {
                bad_ = true;
                return Status::bad_length;
            }
            have_length_ = true;
        }
        if (have_ == length_) return Status::frame;
        if (body_.size() == have_) {
            // Grow only as bytes arrive: never trust the header's claim.
            const std::uint64_t want = std::max<std::uint64_t>(kFirstChunk, 2 * std::uint64_t{have_});
            body_.resize(static_cast<std::size_t>(std::min(length_, want)));
        }
        const auto n = os::recv_some(fd, std::span(body_.data() + have_, body_.size() - have_));
        if (!n) return Status::incomplete;
        if (*n == 0) return Status::end_of_stream;
        have_ += *n;
    }
}

std::vector<std::byte> FrameReader::take() {
    std::vector<std::byte> out = std::move(body_);
    out.resize(have_);
    body_ = {};
    clear();
    return out;
}

void FrameReader::clear() noexcept {
    head_have_ = 0;
    have_length_ = false;
    length_ = 0;
    claimed_ = 0;
    have_ = 0;
    if (body_.capacity() > kFirstChunk) body_ = {};  // a big message's buffer goes with it
    else body_.clear();
}

}  // namespace mproc::detail::wire
