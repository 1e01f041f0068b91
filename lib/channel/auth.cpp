// The authkey challenge both ways. See auth.hpp.
#include "channel/auth.hpp"

#include <cstring>
#include <string_view>

#include "mproc/errors.hpp"
#include "os/process.hpp"
#include "os/socket.hpp"

namespace mproc::detail {

namespace {

constexpr std::string_view kChallenge = "#CHALLENGE#";
constexpr std::string_view kWelcome = "#WELCOME#";
constexpr std::string_view kFailure = "#FAILURE#";
constexpr std::string_view kDigestTag = "{sha256}";
constexpr std::size_t kMinChallenge = 20;    // Python's _MD5ONLY_MESSAGE_LENGTH
constexpr std::uint64_t kMaxMessage = 256;   // Python's recv_bytes(256)

std::span<const std::byte> bytes_of(std::string_view s) {
    return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

bool starts_with(std::span<const std::byte> b, std::string_view prefix) {
    return b.size() >= prefix.size() && std::memcmp(b.data(), prefix.data(), prefix.size()) == 0;
}

bool equals(std::span<const std::byte> b, std::string_view s) {
    return b.size() == s.size() && starts_with(b, s);
}

[[noreturn]] void fail(const std::string& what) {
    throw AuthenticationError("mproc authentication: " + what);
}

}  // namespace

Handshake::Handshake(int fd, std::string authkey, AuthRole role)
    : fd_(fd), key_(std::move(authkey)), role_(role), in_(kMaxMessage) {
    if (role_ == AuthRole::server) {
        send_challenge();
        step_ = Step::response;
    } else {
        step_ = Step::challenge;
    }
}

void Handshake::send(std::span<const std::byte> body) {
    // Each side sends about 120 bytes in all, less than any socket buffer
    // holds, so a send that cannot go at once means something is wrong.
    wire::Sent s;
    try {
        s = wire::send_frame(fd_, body, os::Deadline::after(Duration(0)));
    } catch (const EOFError&) {
        fail("the peer hung up");
    }
    if (s != wire::Sent::all) fail("the peer does not read what it is sent");
}

void Handshake::send_challenge() {
    std::memcpy(sent_challenge_.data(), kDigestTag.data(), kDigestTag.size());
    os::random_bytes(std::span(sent_challenge_).subspan(kDigestTag.size()));
    std::byte msg[kChallenge.size() + sizeof sent_challenge_];
    std::memcpy(msg, kChallenge.data(), kChallenge.size());
    std::memcpy(msg + kChallenge.size(), sent_challenge_.data(), sent_challenge_.size());
    send(msg);
}

bool Handshake::advance() {
    while (step_ != Step::done) {
        switch (in_.pull(fd_)) {
            case wire::FrameReader::Status::incomplete:
                return false;
            case wire::FrameReader::Status::end_of_stream:
                fail("the peer hung up before it was done");
            case wire::FrameReader::Status::bad_length:
                fail("the peer sent a message of " +
                     (in_.claimed() < 0 ? std::string("a negative or 2 GiB+") : std::to_string(in_.claimed())) +
                     " bytes where at most " + std::to_string(kMaxMessage) +
                     " belong (is it an mproc or multiprocessing.connection peer?)");
            case wire::FrameReader::Status::frame:
                break;
        }
        const std::span<const std::byte> body = in_.body();
        switch (step_) {
            case Step::response: on_response(body); break;
            case Step::challenge: on_challenge(body); break;
            case Step::verdict: on_verdict(body); break;
            case Step::done: break;
        }
        in_.clear();
    }
    return true;
}

void Handshake::on_response(std::span<const std::byte> body) {
    const Digest expected = hmac_sha256(bytes_of(key_), sent_challenge_);
    bool ok = false;
    if (body.size() == kDigestTag.size() + expected.size() && starts_with(body, kDigestTag)) {
        Digest got;
        std::memcpy(got.data(), body.data() + kDigestTag.size(), got.size());
        ok = digests_equal(got, expected);
    }
    if (!ok) {
        try {
            send(bytes_of(kFailure));
        } catch (const AuthenticationError&) {
        }
        if (body.size() == 16) fail("the peer answered with HMAC-MD5 (Python before 3.12?); only {sha256} is spoken");
        if (body.size() != kDigestTag.size() + expected.size() || !starts_with(body, kDigestTag))
            fail("the peer's answer is not a {sha256} digest (" + std::to_string(body.size()) + " bytes)");
        fail("digest received was wrong: the peer's authkey differs from ours");
    }
    send(bytes_of(kWelcome));
    step_ = role_ == AuthRole::server ? Step::challenge : Step::done;
}

void Handshake::on_challenge(std::span<const std::byte> body) {
    if (!starts_with(body, kChallenge)) fail("the peer did not send a challenge (is it an mproc Listener/Client?)");
    const std::span<const std::byte> message = body.subspan(kChallenge.size());
    if (message.size() < kMinChallenge) fail("the peer's challenge is too short");
    if (!starts_with(message, kDigestTag)) {
        if (message.size() == kMinChallenge)
            fail("the peer uses the HMAC-MD5 challenge (Python before 3.12?); only {sha256} is spoken");
        fail("the peer asks for a digest other than {sha256}");
    }
    const Digest d = hmac_sha256(bytes_of(key_), message);
    std::byte reply[kDigestTag.size() + sizeof d];
    std::memcpy(reply, kDigestTag.data(), kDigestTag.size());
    std::memcpy(reply + kDigestTag.size(), d.data(), d.size());
    send(reply);
    step_ = Step::verdict;
}

void Handshake::on_verdict(std::span<const std::byte> body) {
    if (equals(body, kFailure)) fail("digest sent was rejected: the peer's authkey differs from ours");
    if (!equals(body, kWelcome)) fail("the peer sent no verdict on our digest");
    if (role_ == AuthRole::server) {
        step_ = Step::done;
    } else {
        send_challenge();
        step_ = Step::response;
    }
}

void authenticate(int fd, const std::string& authkey, AuthRole role, const os::Deadline& deadline) {
    Handshake h(fd, authkey, role);
    while (!h.advance())
        if (!os::wait_readable(fd, deadline))
            throw TimeoutError("mproc authentication: the peer did not answer in time");
}

}  // namespace mproc::detail
