// Length-prefixed frames on a stream socket, in the layout of Python's
// multiprocessing.connection: a 4-byte big-endian signed length ("!i"), or
// -1 followed by an 8-byte big-endian length ("!Q") for a body over
// 0x7fffffff bytes; then the body. A Python peer's send_bytes/recv_bytes
// read and write the same bytes.
//
// FrameReader reads without ever blocking and never past the end of the
// frame it is on (the bytes after it belong to whoever reads next), and
// allocates only as bytes arrive: a header that claims 4 GiB followed by
// silence costs 64 KiB, not 4 GiB. Internal header.
//
// Thread safety: one FrameReader per reader; not shared between threads.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "os/os.hpp"

namespace mproc::detail::wire {

/// The header of a frame whose body is `n` bytes.
class FrameHeader {
public:
    explicit FrameHeader(std::uint64_t n) noexcept;
    std::span<const std::byte> bytes() const noexcept { return {b_.data(), size_}; }

private:
    std::array<std::byte, 12> b_{};
    std::size_t size_ = 0;
};

enum class Sent { all, none, part };
/// Sends one frame (header and body in one sendmsg where they fit), waiting
/// for room until the deadline. `none` if the deadline passed before a byte
/// went out, `part` if it passed half-way. EOFError if the peer is gone.
Sent send_frame(int fd, std::span<const std::byte> body, const os::Deadline& deadline);

class FrameReader {
public:
    enum class Status {
        incomplete,     // more bytes are needed; none are there right now
        frame,          // a whole frame is in: body() / take()
        end_of_stream,  // the peer closed (started() says whether mid-frame)
        bad_length,     // a header over max_body or negative; the stream is out of step for good
    };
    explicit FrameReader(std::uint64_t max_body) noexcept : max_(max_body) {}

    /// Reads what has arrived on `fd` (non-blocking) and says where it stands.
    Status pull(int fd);
    /// After `frame`: the body, and starting afresh on the next frame.
    std::vector<std::byte> take();
    /// After `frame`: the body, valid until take() or clear().
    std::span<const std::byte> body() const noexcept { return {body_.data(), have_}; }
    /// After `frame`: forgets it.
    void clear() noexcept;
    /// Bytes of an unfinished frame have arrived.
    bool started() const noexcept { return head_have_ > 0; }
    /// The body length the header claimed (after bad_length: the bad value).
    std::int64_t claimed() const noexcept { return claimed_; }
    std::uint64_t arrived() const noexcept { return have_; }

private:
    std::uint64_t max_;
    std::array<std::byte, 12> head_{};
    std::size_t head_have_ = 0;
    bool have_length_ = false;
    bool bad_ = false;
    std::uint64_t length_ = 0;
    std::int64_t claimed_ = 0;
    std::vector<std::byte> body_;
    std::size_t have_ = 0;
};

}  // namespace mproc::detail::wire
