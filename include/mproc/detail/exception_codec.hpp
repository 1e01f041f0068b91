// mproc::detail — the one way an exception crosses a process boundary: a
// Process's target (Process::exception()), a pool or executor task, a
// manager server's reply. Not a public API; see errors.hpp for the rules.
//
// Wire: one serialized tuple (type name, message, code, origin process
// name, origin pid). The type name is the registry's key (the demangled
// name of the exception's dynamic type; the original type of one that was
// itself re-created; RemoteError's type_name(); "int" for `throw 42`). The
// message is cut at kMaxExceptionMessage bytes. The decoder re-creates a
// registered type through its factory and anything else (or a factory that
// throws) as RemoteError.
//
// Encoding never throws and never writes half a record: the record is built
// aside and appended whole; if even that fails (no memory), a short
// fixed record says so instead.
#pragma once

#include <cstddef>
#include <exception>
#include <span>
#include <string>
#include <vector>

#include "mproc/errors.hpp"
#include "mproc/detail/serialize_buffers.hpp"

namespace mproc::detail {

/// Messages longer than this are cut, with a note saying how long they were.
inline constexpr std::size_t kMaxExceptionMessage = std::size_t{1} << 20;

/// Appends the record for `e` (the current process is its origin unless it
/// came from another one).
void encode_exception(OutBuf& out, std::exception_ptr e) noexcept;
/// The record alone.
std::vector<std::byte> exception_bytes(std::exception_ptr e) noexcept;

/// Re-creates the exception encode_exception wrote. SerializationError on
/// bad bytes.
std::exception_ptr decode_exception(InBuf& in);
/// The same for a record that fills `bytes`.
std::exception_ptr exception_from_bytes(std::span<const std::byte> bytes);

/// The type name and message the codec would send (the message uncut), for
/// "Process <name>: <type>: <what>".
struct ExceptionText {
    std::string type;
    std::string what;
};
ExceptionText describe_exception(std::exception_ptr e) noexcept;

}  // namespace mproc::detail
