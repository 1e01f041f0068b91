// mproc errors: Python's exception names as C++ exception types.
//
// Every error mproc throws derives from mproc::Error (itself a
// std::runtime_error), so `catch (const mproc::Error&)` catches them all.
// The table in API.md maps each Python name to its C++ type. OSError carries
// the errno of a failed system call; its message names the call and the
// object ("memfd_create(\"mproc-queue\") failed: Too many open files").
//
// Thread/process safety: these are plain value types. Nothing here blocks.
#pragma once

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

}  // namespace mproc
