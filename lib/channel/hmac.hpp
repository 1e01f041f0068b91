// SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), for the authkey
// challenge of Listener/Client and the remote manager. Internal header.
//
// Thread safety: pure functions. Nothing here blocks.
#pragma once

#include <array>
#include <cstddef>
#include <span>

namespace mproc::detail {

using Digest = std::array<std::byte, 32>;

Digest sha256(std::span<const std::byte> data);
Digest hmac_sha256(std::span<const std::byte> key, std::span<const std::byte> message);
/// Compares without an early exit, so timing does not reveal the prefix.
bool digests_equal(const Digest& a, const Digest& b) noexcept;

}  // namespace mproc::detail
