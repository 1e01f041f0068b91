// The remote manager's wire: frames, the encoding of each argument and
// result type of the operation table, errors, and authentication.
// Internal header (lib/manager/); client.cpp and server.cpp use it, it uses
// neither.
//
// Frames: [u32 length][body], little-endian, one write each, at most
// kMaxFrame bytes, a frame's buffer growing only as its bytes arrive (the
// handshake before them is the channel layer's, below).
//   request  [op u8][object id u64][the row's arguments, in order]
//   reply    [status u8 = 0][the row's result][field ...]   fields: what the
//                                                          Sink was handed
//            [status u8 = 1][the exception's record (exception_codec.hpp)]
// A quiet request (op | kQuiet, for the stores may_be_quiet names; with any
// other op the flagged byte is an unknown operation, answered) has no
// reply when it succeeds; when it fails, and it is the first quiet request
// to fail since the last reply the server sent, its reply is
//            [status u8 = 2][the exception's record]
// and later quiet failures before the next answered request send nothing
// (so a client that only sends quiet requests has at most one frame waiting
// to be read, and neither end can block the other writing). Replies come in
// the order of the requests.
// Each field has one meaning: an operation's arguments are exactly its
// row's, never reused for anything else.
//
// Authentication: the channel layer's (lib/channel/auth.hpp), which is
// Python 3.12's multiprocessing.connection challenge, HMAC-SHA256 both
// ways, the server challenging first, in frames of at most 256 bytes. A
// server at its connection limit sends [u32 6]["#BUSY#"] instead of a
// challenge, and closes.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "mproc/detail/manager_ops.hpp"
#include "mproc/errors.hpp"
#include "os/os.hpp"

namespace mproc::detail::mwire {

static_assert(std::endian::native == std::endian::little, "the manager wire is little-endian");

using mop::Bytes;
using mop::BytesList;
using mop::Kind;
using mop::ObjectId;
using mop::Sink;
using mop::U64List;

inline constexpr std::uint32_t kMaxFrame = std::uint32_t{1} << 30;

/// The op byte's flag for a quiet request, and a failed quiet request's
/// reply status (see the top of this file).
inline constexpr std::uint8_t kQuiet = 0x80;
inline constexpr std::uint8_t kQuietFailed = 2;
static_assert(mop::kOpCount <= kQuiet, "the op byte's top bit is the quiet flag");

/// The operations a client may send quiet (ConnectOptions::pipeline_stores):
/// stores, whose only outcome is an error (a shut-down manager, a full heap).
constexpr bool may_be_quiet(mop::OpId id) {
    using mop::OpId;
    return id == OpId::dict_set || id == OpId::dict_update || id == OpId::list_extend || id == OpId::value_set ||
           id == OpId::dict_clear || id == OpId::list_clear;
}

/// Appends one frame to `buf` (from its current end).
class FrameBuilder {
public:
    explicit FrameBuilder(std::vector<std::byte>& buf) : buf_(buf), start_(buf.size()) { buf_.resize(start_ + 4); }
    template <class T>
    void put(const T& v) {
        static_assert(std::is_trivially_copyable_v<T>);
        const auto* p = reinterpret_cast<const std::byte*>(&v);
        buf_.insert(buf_.end(), p, p + sizeof v);
    }
    /// u32 length + bytes.
    void bytes(Bytes b);
    /// Room for `n` bytes to fill in later; returns where.
    std::size_t reserve(std::size_t n) {
        buf_.resize(buf_.size() + n);
        return buf_.size() - n;
    }
    template <class T>
    void patch(std::size_t at, const T& v) {
        std::memcpy(buf_.data() + at, &v, sizeof v);
    }
    /// Drops what this frame holds so far (to write an error instead).
    void restart() { buf_.resize(start_ + 4); }
    /// Writes the length. ValueError past kMaxFrame.
    void finish();

private:
    std::vector<std::byte>& buf_;
    std::size_t start_;
};

/// Reads a frame's body; every read is checked (SerializationError).
class FrameReader {
public:
    explicit FrameReader(Bytes body) noexcept : rest_(body) {}
    template <class T>
    T get() {
        static_assert(std::is_trivially_copyable_v<T>);
        if (rest_.size() < sizeof(T)) malformed("is cut short");
        T v;
        std::memcpy(&v, rest_.data(), sizeof v);
        rest_ = rest_.subspan(sizeof v);
        return v;
    }
    Bytes bytes();
    bool empty() const noexcept { return rest_.empty(); }
    std::size_t left() const noexcept { return rest_.size(); }
    void expect_end() const {
        if (!rest_.empty()) malformed("has bytes past its end");
    }
    [[noreturn]] static void malformed(const char* what);

private:
    Bytes rest_;
};

/// Where decoded BytesList and U64List arguments live until the reply is
/// sent, and how far a waiting operation may wait (the fuzzer caps it).
struct DecodeScratch {
    std::vector<Bytes> lists[2];
    std::size_t lists_used = 0;
    std::vector<std::uint64_t> numbers;
    std::optional<Duration> max_wait;
    void reset() noexcept { lists_used = 0; }
};

// ---- each argument / result type's wire form ------------------------------------

template <class T>
struct Codec {
    static constexpr bool sent = true;
    static void encode(FrameBuilder& f, const T& v) { f.put(v); }
    static T decode(FrameReader& r, DecodeScratch&) { return r.get<T>(); }
};
template <>
struct Codec<bool> {
    static constexpr bool sent = true;
    static void encode(FrameBuilder& f, bool v) { f.put(static_cast<std::uint8_t>(v)); }
    static bool decode(FrameReader& r, DecodeScratch&);
};
template <>
struct Codec<Kind> {
    static constexpr bool sent = true;
    static void encode(FrameBuilder& f, Kind v) { f.put(static_cast<std::uint8_t>(v)); }
    static Kind decode(FrameReader& r, DecodeScratch&);
};
template <>
struct Codec<Bytes> {
    static constexpr bool sent = true;
    static void encode(FrameBuilder& f, Bytes v) { f.bytes(v); }
    static Bytes decode(FrameReader& r, DecodeScratch&) { return r.bytes(); }
};
template <>
struct Codec<BytesList> {
    static constexpr bool sent = true;
    static void encode(FrameBuilder& f, BytesList v);
    static BytesList decode(FrameReader& r, DecodeScratch& s);
};
template <>
struct Codec<U64List> {
    static constexpr bool sent = true;
    static void encode(FrameBuilder& f, U64List v);
    static U64List decode(FrameReader& r, DecodeScratch& s);
};
template <>
struct Codec<Timeout> {
    static constexpr bool sent = true;
    static void encode(FrameBuilder& f, const Timeout& v);
    static Timeout decode(FrameReader& r, DecodeScratch& s);
};
/// A Sink is the reply's fields: nothing of it is sent.
template <>
struct Codec<Sink> {
    static constexpr bool sent = false;
};

/// Encodes a request for row O: [op][object][arguments].
template <class O>
void encode_request(FrameBuilder& f, ObjectId object, const typename O::Args& args) {
    f.put(static_cast<std::uint8_t>(O::id));
    f.put(object);
    std::apply(
        [&](const auto&... a) {
            (
                [&](const auto& x) {
                    using T = std::remove_cvref_t<decltype(x)>;
                    if constexpr (Codec<T>::sent) Codec<T>::encode(f, x);
                }(a),
                ...);
        },
        args);
}

// ---- errors ------------------------------------------------------------------------

/// Writes the exception being handled as an error reply body (after the
/// status byte).
void encode_current_error(FrameBuilder& f);
/// Re-throws an error reply body as the exception it describes.
[[noreturn]] void throw_error(FrameReader& r);

// ---- reading frames from a socket --------------------------------------------------

/// Frames from a socket, read ahead into one buffer: a frame's buffer grows
/// only as its bytes arrive (a length prefix alone reserves nothing), and
/// several frames that arrived together are taken without another read.
class FrameStream {
public:
    explicit FrameStream(std::uint32_t max_frame) : max_(max_frame) {}
    /// The next frame's body, valid until the next call; nullopt if the
    /// peer closed. SerializationError if it claims more than the limit;
    /// TimeoutError at the deadline. Spins briefly before sleeping.
    std::optional<Bytes> next(int fd, const os::Deadline& deadline);
    /// True if a whole frame is buffered already (next() will not block).
    bool has_frame() const noexcept;
    void set_limit(std::uint32_t max_frame) noexcept { max_ = max_frame; }

private:
    bool fill(int fd, const os::Deadline& deadline);
    std::uint32_t max_;
    std::vector<std::byte> buf_;
    std::size_t begin_ = 0, end_ = 0;
    unsigned skip_ = 0, backoff_ = 0;  // adaptive spin (see fill)
};

// ---- authentication ----------------------------------------------------------------

/// The server's side: challenge the client, answer its challenge, within
/// the deadline. AuthenticationError (or TimeoutError) on failure.
void server_handshake(int fd, const std::string& authkey, const os::Deadline& deadline);
/// The client's side. AuthenticationError on a wrong key, OSError
/// (ECONNREFUSED) if the server is at its connection limit.
void client_handshake(int fd, const std::string& authkey, const os::Deadline& deadline);
/// What a server at its limit sends before closing (best effort).
void send_busy(int fd) noexcept;

}  // namespace mproc::detail::mwire
