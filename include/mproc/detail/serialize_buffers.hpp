// mproc::detail::OutBuf / InBuf — the byte streams mproc's serializer writes
// to and reads from, and the framing every encoding starts with.
//
// OutBuf and InBuf are std::streambufs (so Boost archives can sit on them)
// whose hot paths — write a few bytes, read a few bytes — are inline and
// never make a virtual call. A subclass supplies the memory:
//
//   OutBuf: set the put area with set_area(begin, end) and implement
//           need(n), called when fewer than n bytes are free; it must leave
//           at least one free byte (n if it can) or throw. VectorOutBuf grows
//           a std::vector; a Queue's ring can hand out its free space, one
//           contiguous piece at a time, so items are serialized in place.
//   InBuf:  reads a span; a subclass may serve several pieces through
//           refill() (a ring's wrapped item) and says how many bytes follow
//           the current piece, so length checks see the whole input.
//
// Codecs that encode many small values in a row (a map of strings, a vector
// of pairs) may take the free area / the unread piece as a pair of raw
// pointers, work on local cursors, and commit() / consume() how far they
// got: one bounds check per value against a register instead of a
// streambuf member round trip per byte run (serialize_flat.hpp).
//
// Every read is bounds-checked: running out of input is a
// SerializationError, never a read past the end.
//
// Thread safety: one buffer per thread. Nothing here blocks.
#pragma once

#include <bit>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <streambuf>
#include <string_view>
#include <vector>

namespace mproc::detail {

/// Unsigned LEB128, the encoding of every length and index: 7 bits a byte,
/// low bits first, at most kMaxVarint bytes.
inline constexpr std::size_t kMaxVarint = 10;

/// Writes `v` at `p` (room for kMaxVarint bytes); returns the end.
inline std::byte* encode_varint(std::byte* p, std::uint64_t v) noexcept {
    while (v >= 0x80) {
        *p++ = static_cast<std::byte>((v & 0x7f) | 0x80);
        v >>= 7;
    }
    *p++ = static_cast<std::byte>(v);
    return p;
}

/// Reads a varint from [p, e) into `v` and advances `p`; false (p then
/// unspecified) if it does not end before `e` or overflows 64 bits.
inline bool decode_varint(const std::byte*& p, const std::byte* e, std::uint64_t& v) noexcept {
    if (p != e && static_cast<std::uint8_t>(*p) < 0x80) {
        v = static_cast<std::uint8_t>(*p++);
        return true;
    }
    v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (p == e) return false;
        const auto b = static_cast<std::uint8_t>(*p++);
        if (shift == 63 && b > 1) return false;
        v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
        if ((b & 0x80) == 0) return true;
    }
    return false;
}

/// Throws SerializationError: the input ended before the value did.
[[noreturn]] void throw_truncated();
/// Throws SerializationError("<what>"): the bytes do not encode a value of
/// the expected type.
[[noreturn]] void throw_bad_data(std::string_view what);

class OutBuf : public std::streambuf {
public:
    OutBuf(const OutBuf&) = delete;
    OutBuf& operator=(const OutBuf&) = delete;

    void write(const void* p, std::size_t n) {
        if (static_cast<std::size_t>(epptr() - pptr()) >= n) {
            if (n != 0) std::memcpy(pptr(), p, n);
            advance(n);
        } else {
            write_slow(p, n);
        }
    }
    void put_byte(std::uint8_t b) {
        if (pptr() == epptr()) need(1);
        *pptr() = static_cast<char>(b);
        pbump(1);
    }
    /// Unsigned LEB128: 7 bits a byte, at most 10 bytes.
    void put_varint(std::uint64_t v) {
        if (v < 0x80 && pptr() != epptr()) {
            *pptr() = static_cast<char>(v);
            pbump(1);
        } else {
            put_varint_slow(v);
        }
    }
    /// Bytes written since construction.
    std::size_t written() const noexcept {
        return base_ + static_cast<std::size_t>(pptr() - pbase());
    }
    /// The free part of the put area: a caller may write into
    /// [room_begin(), room_end()) and then commit() the end of what it wrote.
    std::byte* room_begin() const noexcept { return reinterpret_cast<std::byte*>(pptr()); }
    std::byte* room_end() const noexcept { return reinterpret_cast<std::byte*>(epptr()); }
    void commit(std::byte* end) noexcept { advance(static_cast<std::size_t>(end - room_begin())); }

protected:
    OutBuf() = default;
    ~OutBuf() override = default;

    /// Called with fewer than `n` free bytes in the put area: make room (at
    /// least one byte, `n` if possible) with set_area(), or throw.
    virtual void need(std::size_t n) = 0;
    /// Makes [b, e) the put area; what was written so far stays counted.
    void set_area(char* b, char* e) noexcept {
        base_ = written();
        setp(b, e);
    }
    /// Makes written() report `n` with the current put area (for a
    /// subclass that moved the area itself with setp()).
    void rebase(std::size_t n) noexcept { base_ = n - static_cast<std::size_t>(pptr() - pbase()); }

    int_type overflow(int_type c) override;
    std::streamsize xsputn(const char* s, std::streamsize n) override;
    int sync() override { return 0; }

private:
    void advance(std::size_t n) {
        while (n > static_cast<std::size_t>(INT_MAX)) {
            pbump(INT_MAX);
            n -= INT_MAX;
        }
        pbump(static_cast<int>(n));
    }
    void write_slow(const void* p, std::size_t n);
    void put_varint_slow(std::uint64_t v);

    std::size_t base_ = 0;
};

/// An OutBuf that collects the bytes in a std::vector.
class VectorOutBuf final : public OutBuf {
public:
    /// `reserve`: the expected size, allocated up front.
    explicit VectorOutBuf(std::size_t reserve = 0);
    /// The bytes written, exactly; the buffer is empty afterwards.
    std::vector<std::byte> take();
    /// Forgets what was written after the first `pos` bytes (pos <=
    /// written()): a value whose serialization threw half-way is dropped.
    void rewind(std::size_t pos);

protected:
    void need(std::size_t n) override;

private:
    std::vector<std::byte> buf_;
};

/// Writes into a fixed span (free space in a ring, say). A value that does
/// not fit is still written to the end, but only counted past the span:
/// fits() is then false and written() is the size it needs, so the caller
/// can retry with that much room or take another path.
class SpanOutBuf final : public OutBuf {
public:
    explicit SpanOutBuf(std::span<std::byte> span) {
        auto* b = reinterpret_cast<char*>(span.data());
        set_area(b, b + span.size());
    }
    bool fits() const noexcept { return fits_; }

protected:
    void need(std::size_t) override {
        fits_ = false;
        set_area(scratch_, scratch_ + sizeof scratch_);
    }

private:
    bool fits_ = true;
    char scratch_[512];
};

/// Counts bytes without keeping them (encoded_size).
class CountingOutBuf final : public OutBuf {
public:
    CountingOutBuf() { set_area(scratch_, scratch_ + sizeof scratch_); }

protected:
    void need(std::size_t) override { set_area(scratch_, scratch_ + sizeof scratch_); }

private:
    char scratch_[512];
};

/// Forwards to any other std::streambuf, through a small buffer. finish()
/// flushes what is buffered; SerializationError if the target refuses bytes.
class StreambufOutBuf final : public OutBuf {
public:
    explicit StreambufOutBuf(std::streambuf& target) : target_(target) {
        set_area(buf_, buf_ + sizeof buf_);
    }
    void finish();

protected:
    void need(std::size_t n) override;
    std::streamsize xsputn(const char* s, std::streamsize n) override;

private:
    std::streambuf& target_;
    char buf_[4096];
};

class InBuf : public std::streambuf {
public:
    explicit InBuf(std::span<const std::byte> bytes) { set_area(bytes, 0); }
    InBuf(const InBuf&) = delete;
    InBuf& operator=(const InBuf&) = delete;
    ~InBuf() override = default;

    /// Bytes left, in this piece and the ones after it.
    std::size_t remaining() const noexcept { return avail() + tail_; }

    void read(void* p, std::size_t n) {
        if (avail() >= n) {
            if (n != 0) std::memcpy(p, gptr(), n);
            skip(n);
        } else {
            read_slow(p, n);
        }
    }
    std::uint8_t get_byte() {
        if (gptr() == egptr() && !next_piece()) throw_truncated();
        auto b = static_cast<std::uint8_t>(*gptr());
        gbump(1);
        return b;
    }
    std::uint64_t get_varint() {
        if (gptr() != egptr() && static_cast<std::uint8_t>(*gptr()) < 0x80) {
            auto v = static_cast<std::uint8_t>(*gptr());
            gbump(1);
            return v;
        }
        return get_varint_slow();
    }
    /// The unread part of the current piece: a caller may decode from
    /// [piece_begin(), piece_end()) and then consume() up to where it got.
    const std::byte* piece_begin() const noexcept { return reinterpret_cast<const std::byte*>(gptr()); }
    const std::byte* piece_end() const noexcept { return reinterpret_cast<const std::byte*>(egptr()); }
    void consume(const std::byte* to) noexcept { skip(static_cast<std::size_t>(to - piece_begin())); }
    /// The next `n` bytes, consumed, if they are contiguous in this piece;
    /// nullptr (nothing consumed) otherwise.
    const std::byte* contiguous(std::size_t n) noexcept {
        if (avail() < n) return nullptr;
        const auto* p = reinterpret_cast<const std::byte*>(gptr());
        skip(n);
        return p;
    }
    /// Throws unless `count` items of at least `min_size` bytes each (1 if
    /// 0) can still be in the input: a corrupt length never reaches an
    /// allocation.
    void check_count(std::uint64_t count, std::size_t min_size) const {
        if (count > remaining() / (min_size == 0 ? 1 : min_size)) throw_bad_count(count);
    }

protected:
    InBuf() = default;
    /// Makes `piece` the get area, with `tail` more bytes to come after it.
    void set_area(std::span<const std::byte> piece, std::size_t tail) noexcept {
        auto* b = const_cast<char*>(reinterpret_cast<const char*>(piece.data()));
        setg(b, b, b + piece.size());
        tail_ = tail;
    }
    /// Called when the current piece is used up: set_area() the next one
    /// and return true, or return false at the end of the input.
    virtual bool refill() { return false; }

    int_type underflow() override;
    std::streamsize xsgetn(char* s, std::streamsize n) override;
    std::streamsize showmanyc() override;

private:
    std::size_t avail() const noexcept { return static_cast<std::size_t>(egptr() - gptr()); }
    void skip(std::size_t n) noexcept { setg(eback(), gptr() + n, egptr()); }
    bool next_piece();
    void read_slow(void* p, std::size_t n);
    std::uint64_t get_varint_slow();
    [[noreturn]] void throw_bad_count(std::uint64_t count) const;

    std::size_t tail_ = 0;
};

// ---- framing -------------------------------------------------------------
//
// Every encoding starts with 8 bytes: 'm' 'P', the format version, an ABI
// byte (endianness and pointer width: the raw bytes of numbers and trivially
// copyable structs are only meaningful to a like machine), and a 32-bit hash
// of the encoded type's name, so that loading bytes as the wrong type is
// (very likely) caught.

inline constexpr std::size_t kHeaderSize = 8;
inline constexpr std::uint8_t kFormatVersion = 2;  // 2: ordered containers last element first

constexpr std::uint8_t abi_byte() noexcept {
    return static_cast<std::uint8_t>((std::endian::native == std::endian::little ? 1 : 0) |
                                     (sizeof(void*) == 8 ? 2 : 0) | 0x40);
}

inline void encode_header(std::byte* at, std::uint32_t type_hash) noexcept {
    const unsigned char h[4] = {'m', 'P', kFormatVersion, abi_byte()};
    std::memcpy(at, h, 4);
    std::memcpy(at + 4, &type_hash, 4);
}

inline void write_header(OutBuf& out, std::uint32_t type_hash) {
    std::byte h[kHeaderSize];
    encode_header(h, type_hash);
    out.write(h, sizeof h);
}

/// Reads and checks the header; SerializationError naming `type_name` if
/// the bytes are not an mproc encoding of that type.
void read_header(InBuf& in, std::uint32_t type_hash, std::string_view type_name);

}  // namespace mproc::detail
