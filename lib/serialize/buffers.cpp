// The slow paths of mproc's serialization buffers, the header check, and
// the errors loading raises. See include/mproc/detail/serialize_buffers.hpp.
#include "mproc/detail/serialize_buffers.hpp"

#include <algorithm>
#include <cstdio>
#include <exception>
#include <new>
#include <stdexcept>
#include <string>

#include <boost/archive/archive_exception.hpp>

#include "mproc/detail/serialize_archive.hpp"
#include "mproc/errors.hpp"

namespace mproc::detail {

void throw_truncated() {
    throw SerializationError("the bytes end in the middle of a value (truncated or corrupt data)");
}

void throw_bad_data(std::string_view what) {
    throw SerializationError("corrupt data: " + std::string(what));
}

void throw_too_deep() {
    throw SerializationError("user types nested more than " + std::to_string(kMaxDepth) +
                             " levels deep (a runaway recursive structure, or corrupt data)");
}

void throw_valueless_variant() {
    throw SerializationError("cannot serialize a std::variant that is valueless_by_exception");
}

void throw_trailing_bytes(std::size_t n, std::string_view type) {
    throw SerializationError("mproc::loads<" + std::string(type) + ">: " + std::to_string(n) +
                             " bytes left over after the value (corrupt data, or bytes that "
                             "encode something else)");
}

void rethrow_as_serialization_error(std::string_view what, std::string_view type) {
    const std::string where = std::string(what) + "<" + std::string(type) + ">: ";
    try {
        throw;
    } catch (const SerializationError& e) {
        if (std::string_view(e.what()).starts_with(what)) throw;
        throw SerializationError(where + e.what());
    } catch (const Error&) {
        throw;  // OSError from re-attaching a handle, and the like
    } catch (const boost::archive::archive_exception& e) {
        throw SerializationError(where + "corrupt data (" + e.what() + ")");
    } catch (const std::bad_alloc&) {
        throw SerializationError(where + "out of memory while loading (a corrupt length?)");
    } catch (const std::length_error& e) {
        throw SerializationError(where + "corrupt data: impossible length (" + e.what() + ")");
    } catch (const std::exception& e) {
        throw SerializationError(where + e.what());
    }
}

// ---- OutBuf ---------------------------------------------------------------

void OutBuf::write_slow(const void* p, std::size_t n) {
    const char* src = static_cast<const char*>(p);
    while (n > 0) {
        std::size_t room = static_cast<std::size_t>(epptr() - pptr());
        if (room == 0) {
            need(n);
            room = static_cast<std::size_t>(epptr() - pptr());
            if (room == 0) throw Error("mproc internal: an OutBuf made no room");
        }
        std::size_t k = std::min(room, n);
        std::memcpy(pptr(), src, k);
        advance(k);
        src += k;
        n -= k;
    }
}

void OutBuf::put_varint_slow(std::uint64_t v) {
    std::byte b[kMaxVarint];
    write(b, static_cast<std::size_t>(encode_varint(b, v) - b));
}

OutBuf::int_type OutBuf::overflow(int_type c) {
    if (traits_type::eq_int_type(c, traits_type::eof())) return traits_type::not_eof(c);
    put_byte(static_cast<std::uint8_t>(traits_type::to_char_type(c)));
    return c;
}

std::streamsize OutBuf::xsputn(const char* s, std::streamsize n) {
    if (n > 0) write(s, static_cast<std::size_t>(n));
    return n;
}

VectorOutBuf::VectorOutBuf(std::size_t reserve) {
    if (reserve > 0) {
        buf_.resize(reserve);
        auto* b = reinterpret_cast<char*>(buf_.data());
        set_area(b, b + buf_.size());
    }
}

void VectorOutBuf::need(std::size_t n) {
    const std::size_t used = written();
    std::size_t cap = std::max<std::size_t>(buf_.size() * 2, 256);
    if (cap - used < n) cap = used + n;
    buf_.resize(cap);
    auto* b = reinterpret_cast<char*>(buf_.data());
    // The area starts where writing goes on; written() keeps counting.
    setp(b + used, b + cap);
    rebase(used);
}

void VectorOutBuf::rewind(std::size_t pos) {
    if (pos > written()) return;
    auto* b = reinterpret_cast<char*>(buf_.data());
    setp(b + pos, b + buf_.size());
    rebase(pos);
}

std::vector<std::byte> VectorOutBuf::take() {
    buf_.resize(written());
    std::vector<std::byte> out = std::move(buf_);
    buf_ = {};
    setp(nullptr, nullptr);
    rebase(0);
    return out;
}

void StreambufOutBuf::need(std::size_t) {
    const auto n = static_cast<std::streamsize>(pptr() - pbase());
    if (n > 0 && target_.sputn(pbase(), n) != n)
        throw SerializationError("the output stream did not accept the serialized bytes");
    set_area(buf_, buf_ + sizeof buf_);
}

std::streamsize StreambufOutBuf::xsputn(const char* s, std::streamsize n) {
    if (n < static_cast<std::streamsize>(sizeof buf_)) return OutBuf::xsputn(s, n);
    need(0);  // flush what is buffered, then pass the block straight on
    if (target_.sputn(s, n) != n)
        throw SerializationError("the output stream did not accept the serialized bytes");
    rebase(written() + static_cast<std::size_t>(n));
    return n;
}

void StreambufOutBuf::finish() { need(0); }

// ---- InBuf ----------------------------------------------------------------

bool InBuf::next_piece() {
    while (gptr() == egptr()) {
        if (tail_ == 0 || !refill()) return false;
    }
    return true;
}

void InBuf::read_slow(void* p, std::size_t n) {
    if (n > remaining()) throw_truncated();
    char* dst = static_cast<char*>(p);
    while (n > 0) {
        if (gptr() == egptr() && !next_piece()) throw_truncated();
        std::size_t k = std::min(avail(), n);
        std::memcpy(dst, gptr(), k);
        skip(k);
        dst += k;
        n -= k;
    }
}

std::uint64_t InBuf::get_varint_slow() {
    std::uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        std::uint8_t b = get_byte();
        if (shift == 63 && b > 1) throw_bad_data("a length or index that overflows 64 bits");
        v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
        if ((b & 0x80) == 0) return v;
    }
    throw_bad_data("a length or index that overflows 64 bits");
}

void InBuf::throw_bad_count(std::uint64_t count) const {
    throw SerializationError("corrupt data: a length of " + std::to_string(count) +
                             " elements, with only " + std::to_string(remaining()) +
                             " bytes left to hold them");
}

InBuf::int_type InBuf::underflow() {
    if (gptr() == egptr() && !next_piece()) return traits_type::eof();
    return traits_type::to_int_type(*gptr());
}

std::streamsize InBuf::xsgetn(char* s, std::streamsize n) {
    std::streamsize done = 0;
    while (done < n) {
        if (gptr() == egptr() && !next_piece()) break;
        std::size_t k = std::min(avail(), static_cast<std::size_t>(n - done));
        std::memcpy(s + done, gptr(), k);
        skip(k);
        done += static_cast<std::streamsize>(k);
    }
    return done;
}

std::streamsize InBuf::showmanyc() {
    std::size_t r = remaining();
    return r == 0 ? -1 : static_cast<std::streamsize>(r);
}

// ---- header ---------------------------------------------------------------

void read_header(InBuf& in, std::uint32_t type_hash, std::string_view type_name) {
    std::byte h[kHeaderSize];
    const std::string where = "mproc::loads<" + std::string(type_name) + ">: ";
    if (in.remaining() < kHeaderSize)
        throw SerializationError(where + "only " + std::to_string(in.remaining()) +
                                 " bytes, too few to be an mproc encoding");
    in.read(h, sizeof h);
    std::byte expected[kHeaderSize];
    encode_header(expected, type_hash);
    if (std::memcmp(h, expected, 2) != 0)
        throw SerializationError(where + "not an mproc encoding (bad magic bytes)");
    if (h[2] != expected[2])
        throw SerializationError(where + "encoded by another version of mproc's format (" +
                                 std::to_string(static_cast<int>(h[2])) + ", this is " +
                                 std::to_string(static_cast<int>(expected[2])) + ")");
    if (h[3] != expected[3])
        throw SerializationError(where + "encoded on a machine with another byte order or "
                                         "word size");
    if (std::memcmp(h + 4, expected + 4, 4) != 0)
        throw SerializationError(where + "the bytes encode a value of another type");
}

}  // namespace mproc::detail
