// mproc errors: Python's exception names as C++ exception types.
//
// Every error mproc throws derives from mproc::Error (itself a
// std::runtime_error), so `catch (const mproc::Error&)` catches them all.
// The table in API.md maps each Python name to its C++ type. OSError carries
// the errno of a failed system call; its message names the call and the
// object ("memfd_create(\"mproc-queue\") failed: Too many open files").
//
// Exceptions that cross processes keep their type. An exception thrown by a
// pool task, an executor's task, a child Process's target
// (Process::exception()) or a manager's server is re-thrown in this process
// as the same type, message kept, when the type is
//   - any mproc exception below (OSError with its errno, RemoteError with
//     its type_name()),
//   - one of the standard types std::exception, runtime_error, logic_error,
//     invalid_argument, out_of_range, domain_error, length_error,
//     overflow_error, underflow_error, range_error, bad_alloc,
//   - or a type registered at namespace scope with
//         struct ZeroDivisionError : std::runtime_error { using std::runtime_error::runtime_error; };
//         MPROC_REGISTER_EXCEPTION(ZeroDivisionError);
//     (E derives from std::exception and is constructible from a
//     std::string; register it in the program that throws and the one that
//     catches — in practice the same executable).
// Types are matched by their exact (demangled) name, never by address, so
// a subclass that is not registered itself comes back as RemoteError with
// type_name() naming it; so does anything thrown that is not a
// std::exception (`throw 42`: RemoteError with type_name() "int"). A
// message longer than 1 MiB is cut there, saying so.
//
// The re-created object is a subclass of the type (so `catch (const E&)`
// matches) that also records where it came from: remote_origin(e) returns
// the process name, pid and type name of the process that raised it, and
// nullopt for an exception raised here. (For a final type the object is the
// type itself and the origin is not kept.) typeid(e) therefore names
// mproc::detail::FromRemote<E>; use remote_origin(e)->type_name to print it.
//
// Thread/process safety: these are plain value types; the registry may be
// used from any thread (registration normally runs before main). Nothing
// here blocks.
#pragma once

#include <cstddef>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>

namespace mproc {

struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// A system call failed. `code()` is the errno it failed with.
class OSError : public Error {
public:
    OSError(const std::string& what, int err) : Error(what), errno_(err) {}
    int code() const noexcept { return errno_; }

private:
    int errno_;
};

struct Empty : Error { using Error::Error; Empty() : Error("queue is empty") {} };
struct Full : Error { using Error::Error; Full() : Error("queue is full") {} };
struct TimeoutError : Error { using Error::Error; };
struct EOFError : Error { using Error::Error; };
struct BrokenProcessPool : Error { using Error::Error; };
struct CancelledError : Error { using Error::Error; };
struct SerializationError : Error { using Error::Error; };
struct AuthenticationError : Error { using Error::Error; };
/// Using a closed object, releasing an unheld lock, over-releasing a bounded
/// semaphore: what Python reports as ValueError.
struct ValueError : Error { using Error::Error; };
/// A missing key in a manager dict or Namespace (Python's KeyError /
/// AttributeError).
struct KeyError : Error { using Error::Error; };
/// A list index out of range, or pop from an empty list (IndexError).
struct IndexError : Error { using Error::Error; };
/// threading.BrokenBarrierError: the barrier was aborted, reset while
/// waiting, or a wait timed out.
struct BrokenBarrierError : Error { using Error::Error; };

/// multiprocessing.BufferTooShort: Connection::recv_bytes_into() was given
/// a buffer smaller than the message. `size()` is the message's length;
/// unlike Python, the message is not consumed (receive it with recv_bytes()
/// or a larger buffer).
class BufferTooShort : public Error {
public:
    BufferTooShort(const std::string& what, std::size_t size) : Error(what), size_(size) {}
    std::size_t size() const noexcept { return size_; }

private:
    std::size_t size_;
};

/// An exception raised in another process whose type mproc cannot re-create.
/// `type_name()` is the (demangled) type it had there; `what()` its message.
class RemoteError : public Error {
public:
    RemoteError(std::string type_name, const std::string& what)
        : Error(what), type_name_(std::move(type_name)) {}
    const std::string& type_name() const noexcept { return type_name_; }

private:
    std::string type_name_;
};

/// Where an exception re-created from another process was raised.
struct RemoteOrigin {
    /// That process's current_process().name(): "Process-2", "PoolWorker-1",
    /// "mproc-manager-server", "MainProcess".
    std::string process_name;
    int pid = 0;
    /// The exception's type as that process named it ("ZeroDivisionError",
    /// "std::out_of_range", "int").
    std::string type_name;
};

/// The origin of an exception that came from another process (a task's, a
/// child's, a manager server's); nullopt for one raised in this process.
/// An exception passed on through several processes keeps the origin where
/// it was first raised.
std::optional<RemoteOrigin> remote_origin(const std::exception& e) noexcept;
std::optional<RemoteOrigin> remote_origin(const std::exception_ptr& e) noexcept;

}  // namespace mproc

#include "mproc/detail/remote_exception.hpp"
