// The os layer: the only code in mproc that calls libc or the kernel for
// memory, fds, futexes and time. Every call retries EINTR where that is the
// right thing, opens fds O_CLOEXEC, and turns a failure into mproc::OSError
// whose message names the call, the object and strerror(errno).
//
// Internal header: never included by a public header.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <ctime>

#include <pthread.h>
#include <sys/types.h>

#include "mproc/duration.hpp"
#include "mproc/errors.hpp"

namespace mproc::os {

/// Throws OSError: "<call>(<object>) failed: <strerror(err)>".
[[noreturn]] void throw_errno(std::string_view call, std::string_view object, int err);
[[noreturn]] void throw_errno(std::string_view call, std::string_view object = {});

/// An owned file descriptor, closed on destruction. Move-only.
class Fd {
public:
    Fd() = default;
    explicit Fd(int fd) noexcept : fd_(fd) {}
    Fd(Fd&& o) noexcept : fd_(o.release()) {}
    Fd& operator=(Fd&& o) noexcept;
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() { reset(); }

    int get() const noexcept { return fd_; }
    explicit operator bool() const noexcept { return fd_ >= 0; }
    int release() noexcept { int f = fd_; fd_ = -1; return f; }
    void reset() noexcept;

private:
    int fd_ = -1;
};

// ---- memory -------------------------------------------------------------

/// An anonymous shared-memory file (memfd_create, MFD_CLOEXEC) of `size`
/// bytes, zero-filled. Retries once after raising RLIMIT_NOFILE to its hard
/// limit when the process is out of fds.
Fd memfd(const char* name, std::size_t size);
/// mmap(MAP_SHARED, PROT_READ|PROT_WRITE) of the first `size` bytes of fd.
void* map_shared(int fd, std::size_t size, std::string_view what);
void unmap(void* addr, std::size_t size) noexcept;
/// st_size of an open fd.
std::size_t fd_size(int fd);
void truncate(int fd, std::size_t size, std::string_view what);
/// fallocate(fd, 0, offset, len): backs a range of a (sparse) file with
/// memory now, so touching it later cannot SIGBUS. Returns 0 or the errno
/// (ENOSPC, ENOMEM, ...) instead of throwing: running out is expected.
int allocate(int fd, std::uint64_t offset, std::uint64_t len) noexcept;
void msync(void* addr, std::size_t size, std::string_view what);

/// Named POSIX shared memory (`/dev/shm/<name>`), mode 0600. `name` is given
/// without the leading '/'.
Fd shm_create(std::string_view name, std::size_t size);   // O_CREAT|O_EXCL
Fd shm_attach(std::string_view name);
void shm_unlink(std::string_view name);

/// open(path, O_RDWR|O_CREAT, 0600); grows the file to `size` if smaller.
Fd open_file_rw(const std::string& path, std::size_t size);

/// Clears FD_CLOEXEC so the fd survives exec (for spawned children).
void set_inheritable(int fd, bool inheritable);
/// True if `fd` is an open descriptor in this process.
bool fd_is_open(int fd) noexcept;

// ---- time ---------------------------------------------------------------

/// A point on CLOCK_MONOTONIC, or "never" for an unbounded wait.
class Deadline {
public:
    static Deadline never() noexcept { return Deadline{}; }
    static Deadline after(Timeout t) noexcept;
    static Deadline after(Duration d) noexcept { return after(Timeout{d}); }

    bool is_never() const noexcept { return never_; }
    bool expired() const noexcept;
    /// Time left, clamped at zero; nullopt if never.
    Timeout remaining() const noexcept;
    /// Absolute CLOCK_MONOTONIC time, or nullptr for never.
    const timespec* abs() const noexcept { return never_ ? nullptr : &at_; }
    /// Milliseconds left for poll(2): -1 for never, rounded up otherwise.
    int poll_ms() const noexcept;

private:
    bool never_ = true;
    timespec at_{};
};

timespec monotonic_now() noexcept;

// ---- futex --------------------------------------------------------------

/// Sleeps while *word == expected, until woken or the deadline passes.
/// Returns false only on timeout; a wake, a changed value or a signal
/// return true (callers re-check their condition in a loop). Shared futex
/// (no FUTEX_PRIVATE_FLAG), so it works across processes.
bool futex_wait(const std::atomic<std::uint32_t>* word, std::uint32_t expected,
                const Deadline& deadline);
/// Wakes up to n waiters (INT32_MAX for all). Returns how many were woken.
int futex_wake(const std::atomic<std::uint32_t>* word, int n) noexcept;

/// A pause instruction for spin loops.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield" ::: "memory");
#endif
}

/// How long a waiter spins before it sleeps in the kernel, in nanoseconds.
///
/// Measured on the 2-core development VM: a sleeping process takes ~25-45 us
/// to wake on the other CPU, and a `pause` costs ~27 ns. Spinning longer
/// than a sleep-and-wake costs can never pay off (the classic 2-competitive
/// bound), and on a busy machine it steals the CPU the peer needs: a budget
/// of 4000 pauses (~110 us) turned a 0.4 us queue ping-pong into 330 us
/// under load. So waiters spin ~20 us (one wake-up's worth, measured, not
/// counted in iterations), lock waiters ~2 us (locks guard a few dozen
/// instructions: a holder that has not let go by then is preempted). One
/// CPU: no spinning at all. MPROC_SPIN_US overrides the wait budget.
std::uint64_t spin_budget_ns() noexcept;
std::uint64_t lock_spin_budget_ns() noexcept;
std::uint64_t monotonic_ns() noexcept;

/// Spins until ready() or the budget runs out; returns ready()'s last value.
template <class Ready>
bool spin_until(Ready&& ready, std::uint64_t budget_ns) {
    if (ready()) return true;
    if (budget_ns == 0) return false;
    const std::uint64_t start = monotonic_ns();
    for (unsigned i = 1;; ++i) {
        cpu_relax();
        if (ready()) return true;
        if ((i & 31) == 0 && monotonic_ns() - start >= budget_ns) return false;
    }
}

// ---- robust process-shared mutex ----------------------------------------

enum class LockStatus { acquired, owner_died, timed_out, would_deadlock };

/// pthread mutex, PTHREAD_PROCESS_SHARED + PTHREAD_MUTEX_ROBUST: the kernel
/// marks it when its owner dies holding it, and the next locker is told.
/// Recursive mutexes may be re-locked by their owner; the others are
/// error-checking, so a re-lock reports would_deadlock instead of hanging.
void robust_mutex_init(pthread_mutex_t* m, bool recursive);
/// Spins lock_spin_budget_ns() on trylock, then blocks until the deadline.
/// On owner_died the mutex is held and already made consistent again.
LockStatus robust_mutex_lock(pthread_mutex_t* m, const Deadline& deadline);
LockStatus robust_mutex_trylock(pthread_mutex_t* m);
/// Returns false if the calling thread does not own the mutex.
bool robust_mutex_unlock(pthread_mutex_t* m) noexcept;

// ---- identity -----------------------------------------------------------

pid_t pid() noexcept;   // getpid(), cached and refreshed after fork
pid_t tid() noexcept;   // gettid(), cached per thread and refreshed after fork

// ---- processes ----------------------------------------------------------

/// pidfd_open(pid): an fd that becomes readable when the process exits.
Fd pidfd_open(pid_t pid);
/// poll(2) for POLLIN on one fd until the deadline; false on timeout.
bool wait_readable(int fd, const Deadline& deadline);
/// True if a process with this pid exists (kill(pid, 0) succeeds or EPERM).
bool process_exists(pid_t pid) noexcept;

}  // namespace mproc::os
