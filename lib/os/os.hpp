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
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>
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
/// Which file an fd names, and its size (fstat).
struct FileId {
    std::uint64_t dev = 0;
    std::uint64_t ino = 0;
    std::uint64_t size = 0;
    bool same_file(const FileId& o) const noexcept { return dev == o.dev && ino == o.ino; }
};
FileId file_id(int fd);
/// file_id, or nullopt if fd is not open here.
std::optional<FileId> try_file_id(int fd) noexcept;
void truncate(int fd, std::size_t size, std::string_view what);
/// fallocate(fd, 0, offset, len): backs a range of a (sparse) file with
/// memory now, so touching it later cannot SIGBUS. Returns 0 or the errno
/// (ENOSPC, ENOMEM, ...) instead of throwing: running out is expected.
int allocate(int fd, std::uint64_t offset, std::uint64_t len) noexcept;
void msync(void* addr, std::size_t size, std::string_view what);

/// open(path, O_RDWR|O_CREAT, 0600); grows the file to `size` if smaller.
Fd open_file_rw(const std::string& path, std::size_t size);
/// open(path, O_RDWR|O_CLOEXEC) of an existing file; an empty Fd if that
/// fails (the caller says why in its own words).
Fd try_open_rw(const std::string& path) noexcept;

/// Clears FD_CLOEXEC so the fd survives exec (for spawned children).
void set_inheritable(int fd, bool inheritable);
/// True if `fd` is an open descriptor in this process.
bool fd_is_open(int fd) noexcept;
/// isatty(fd).
bool is_terminal(int fd) noexcept;

// ---- time ---------------------------------------------------------------

/// A point on CLOCK_MONOTONIC, or "never" for an unbounded wait.
class Deadline {
public:
    static Deadline never() noexcept { return Deadline{}; }
    /// Inline for "no timeout", the common case of every blocking call.
    static Deadline after(Timeout t) noexcept { return t ? after(*t) : Deadline{}; }
    static Deadline after(Duration d) noexcept;

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

/// FUTEX_WAKE_OP on a single word: the kernel applies `*word = *word OP arg`
/// atomically and wakes up to n of its waiters, in one system call — a
/// process killed at any instruction has done both or neither. `arg` must
/// fit the kernel's 12-bit signed operand (-2048..2047). Returns how many
/// were woken, or -1 if the kernel lacks FUTEX_WAKE_OP (then nothing
/// changed: the caller must fall back).
enum class FutexOp { add, bit_or, andn };
int futex_wake_op(std::atomic<std::uint32_t>* word, int n, FutexOp op, int arg) noexcept;

/// A pause instruction for spin loops.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield" ::: "memory");
#endif
}

/// sched_yield(2): lets another runnable thread have this CPU.
void yield_cpu() noexcept;
/// How many times a lock waiter yields after its spin before it sleeps
/// (see contended_lock in os.cpp for why).
inline constexpr int kLockYields = 16;

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
/// How many cpu_relax() pauses take about `ns` on this CPU (at least 1):
/// a pause is ~10 ns on some x86 parts and ~40 ns on others. Measured once.
unsigned pauses_for_ns(std::uint64_t ns) noexcept;
std::uint64_t monotonic_ns() noexcept;

/// Spins until ready() or `budget_ns` runs out: the first look comes after
/// `first_pauses` pauses, the next after each pause. Returns the looks it
/// took, 0 when the budget ran out first. For a reader of a line another
/// CPU is writing: each look takes the line from its writer, so a reader
/// that looks later lets the writer batch what it writes.
template <class Ready>
unsigned spin_paced(Ready&& ready, std::uint64_t budget_ns, unsigned first_pauses) {
    if (budget_ns == 0) return 0;
    const std::uint64_t start = monotonic_ns();
    for (unsigned k = 0; k < first_pauses; ++k) cpu_relax();
    for (unsigned i = 1;; ++i) {
        if (ready()) return i;
        if ((i & 31) == 0 && monotonic_ns() - start >= budget_ns) return 0;
        cpu_relax();
    }
}

/// Spins until ready() or the budget runs out; returns ready()'s last value.
template <class Ready>
bool spin_until(Ready&& ready, std::uint64_t budget_ns) {
    return ready() || spin_paced(ready, budget_ns, 0) != 0;
}

// ---- robust process-shared mutex ----------------------------------------

enum class LockStatus { acquired, owner_died, timed_out, would_deadlock };

/// pthread mutex, PTHREAD_PROCESS_SHARED + PTHREAD_MUTEX_ROBUST +
/// PTHREAD_PRIO_INHERIT: the kernel marks it when its owner dies holding
/// it, and the next locker is told. Recursive mutexes may be re-locked by
/// their owner; the others are error-checking, so a re-lock reports
/// would_deadlock instead of hanging.
///
/// Why priority inheritance: with a plain robust futex the waiters' queue
/// is a bit in the lock word, and an unlock wakes one waiter that must then
/// retake the word itself. If that waiter is killed before it does, while a
/// newcomer takes the word meanwhile (without the waiters bit), the kernel's
/// clean-up of the dead waiter finds a word it does not own and does
/// nothing, the newcomer's unlock wakes nobody, and the other waiters sleep
/// on while the lock is free. A PI futex keeps the waiters in the kernel:
/// an unlock with waiters hands the lock to the first of them inside the
/// kernel (the word names the new owner before it runs), a newcomer queues
/// behind, and a waiter that dies — woken or not — leaves the queue or, as
/// the owner, is cleaned up like any dead owner (owner_died for the next).
/// Kernels without PI futexes (probed once) get the plain robust mutex.
void robust_mutex_init(pthread_mutex_t* m, bool recursive);
/// Spins lock_spin_budget_ns() on trylock, yields a few times (see os.cpp),
/// then blocks until the deadline
/// (CLOCK_MONOTONIC: FUTEX_LOCK_PI2 where the kernel has it, else slices of
/// a CLOCK_REALTIME wait that re-check the monotonic deadline).
/// On owner_died the mutex is held and already made consistent again.
LockStatus robust_mutex_lock(pthread_mutex_t* m, const Deadline& deadline);
LockStatus robust_mutex_trylock(pthread_mutex_t* m);
/// Returns false if the calling thread does not own the mutex.
bool robust_mutex_unlock(pthread_mutex_t* m) noexcept;
/// True if some live thread holds it now (a snapshot; an owner that died
/// holding it does not count: the next acquire succeeds at once).
bool robust_mutex_held(const pthread_mutex_t* m) noexcept;
/// A read-only look at a robust mutex (for mproc-top): the thread id
/// holding it (0: free, or its owner died), and whether others wait for it
/// (the kernel's waiters bit: one or more).
struct MutexSnapshot {
    pid_t owner_tid = 0;
    bool waiters = false;
};
MutexSnapshot robust_mutex_snapshot(const pthread_mutex_t* m) noexcept;
/// Whether this kernel gave the mutexes priority inheritance, and timed
/// PI locks on CLOCK_MONOTONIC (for tests and benchmarks to report;
/// MPROC_NO_LOCK_PI2=1 in the environment forces the sliced fallback).
bool robust_mutex_is_pi() noexcept;
bool robust_mutex_has_lock_pi2() noexcept;

// ---- identity -----------------------------------------------------------

pid_t pid() noexcept;   // getpid(), cached and refreshed after fork
pid_t tid() noexcept;   // gettid(), cached per thread and refreshed after fork
/// This thread's name for a lock word that names its owner
/// (sync/owner_lock.hpp): its tid in the low 32 bits and the low 32 bits
/// of its start time (clock ticks after boot, look_at_thread()) in the
/// high ones, so a thread id reused by the kernel names another thread.
/// Cached per thread (one read of /proc the first time), refreshed after
/// fork; inline, since each ring lock takes it.
namespace identity_detail {
extern constinit __attribute__((tls_model("initial-exec"))) thread_local std::uint64_t cached;
std::uint64_t fill() noexcept;
}  // namespace identity_detail
inline std::uint64_t thread_identity() noexcept {
    const std::uint64_t id = identity_detail::cached;
    return __builtin_expect(id != 0, true) ? id : identity_detail::fill();
}
/// The CPU this thread runs on now (sched_getcpu; glibc reads it from the
/// thread's rseq area, no system call), 0 if unknown. A hint for picking
/// per-CPU state: the thread may be moved at any moment.
unsigned current_cpu() noexcept;

// ---- processes ----------------------------------------------------------

/// pidfd_open(pid): an fd that becomes readable when the process exits.
Fd pidfd_open(pid_t pid);
/// poll(2) for POLLIN (readable, or hung up) on one fd until the deadline;
/// false on timeout.
bool wait_readable(int fd, const Deadline& deadline);
/// poll(2) for POLLOUT (room to write, or an error) on one fd until the
/// deadline; false on timeout.
bool wait_writable(int fd, const Deadline& deadline);
/// poll(2) on several fds for POLLIN; returns the indexes that are ready
/// (readable or hung up). Empty on timeout.
std::vector<std::size_t> poll_readable(std::span<const int> fds, const Deadline& deadline);
/// poll(2) for POLLIN without waiting: the revents (0 if nothing is ready),
/// nullopt if poll itself failed (fd not open).
std::optional<short> poll_now(int fd) noexcept;
/// poll_now found the fd readable (or hung up).
bool readable_now(int fd) noexcept;
/// True if a process with this pid exists (kill(pid, 0) succeeds or EPERM).
bool process_exists(pid_t pid) noexcept;
/// SIGKILL to this process, now (fault injection in tests).
[[noreturn]] void kill_self_now() noexcept;

}  // namespace mproc::os
