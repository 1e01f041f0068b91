// The os layer's memory, fd, time, futex and mutex calls. See os.hpp.
#include "os/os.hpp"
#include "os/fault.hpp"

#include <cerrno>
#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <string>

#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__SANITIZE_THREAD__)
#define MPROC_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MPROC_TSAN 1
#endif
#endif
#ifndef MPROC_TSAN
#define MPROC_TSAN 0
#endif
#if MPROC_TSAN
#include <sanitizer/tsan_interface.h>
#endif

namespace mproc::os {

void throw_errno(std::string_view call, std::string_view object, int err) {
    std::string msg(call);
    msg += '(';
    msg += object;
    msg += ") failed: ";
    msg += std::strerror(err);
    throw OSError(msg, err);
}

void throw_errno(std::string_view call, std::string_view object) {
    throw_errno(call, object, errno);
}

Fd& Fd::operator=(Fd&& o) noexcept {
    if (this != &o) {
        reset();
        fd_ = o.release();
    }
    return *this;
}

void Fd::reset() noexcept {
    if (fd_ >= 0) {
        ::close(fd_);  // close is never retried on Linux: the fd is gone either way
        fd_ = -1;
    }
}

namespace {

std::string quoted(std::string_view s) {
    std::string r;
    r.reserve(s.size() + 2);
    r += '"';
    r += s;
    r += '"';
    return r;
}

// When a process runs out of fds, raise the soft limit to the hard one once.
// Every mproc object holds an fd, and the default soft limit of 1024 is low
// for a program with thousands of locks; the hard limit usually is not.
bool raise_fd_limit() noexcept {
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max) return false;
    rl.rlim_cur = rl.rlim_max;
    return ::setrlimit(RLIMIT_NOFILE, &rl) == 0;
}

}  // namespace

Fd memfd(const char* name, std::size_t size) {
    int fd = static_cast<int>(::syscall(SYS_memfd_create, name, MFD_CLOEXEC));
    if (fd < 0 && (errno == EMFILE) && raise_fd_limit())
        fd = static_cast<int>(::syscall(SYS_memfd_create, name, MFD_CLOEXEC));
    if (fd < 0) throw_errno("memfd_create", quoted(name));
    Fd owned(fd);
    truncate(fd, size, name);
    return owned;
}

void* map_shared(int fd, std::size_t size, std::string_view what) {
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) throw_errno("mmap", what);
    return p;
}

void unmap(void* addr, std::size_t size) noexcept {
    if (addr) ::munmap(addr, size);
}

std::size_t fd_size(int fd) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw_errno("fstat", std::to_string(fd));
    return static_cast<std::size_t>(st.st_size);
}

FileId file_id(int fd) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw_errno("fstat", "fd " + std::to_string(fd));
    return FileId{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino),
                  static_cast<std::uint64_t>(st.st_size)};
}

std::optional<FileId> try_file_id(int fd) noexcept {
    struct stat st {};
    if (fd < 0 || ::fstat(fd, &st) != 0) return std::nullopt;
    return FileId{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino),
                  static_cast<std::uint64_t>(st.st_size)};
}

int allocate(int fd, std::uint64_t offset, std::uint64_t len) noexcept {
    for (;;) {
        if (::fallocate(fd, 0, static_cast<off_t>(offset), static_cast<off_t>(len)) == 0) return 0;
        if (errno != EINTR) return errno;
    }
}

void truncate(int fd, std::size_t size, std::string_view what) {
    int r;
    do r = ::ftruncate(fd, static_cast<off_t>(size));
    while (r != 0 && errno == EINTR);
    if (r != 0) throw_errno("ftruncate", what);
}

void msync(void* addr, std::size_t size, std::string_view what) {
    if (::msync(addr, size, MS_SYNC) != 0) throw_errno("msync", what);
}

Fd open_file_rw(const std::string& path, std::size_t size) {
    int fd;
    do fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) throw_errno("open", quoted(path));
    Fd owned(fd);
    if (fd_size(fd) < size) truncate(fd, size, path);
    return owned;
}

Fd try_open_rw(const std::string& path) noexcept {
    int fd;
    do fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    return Fd(fd);
}

void set_inheritable(int fd, bool inheritable) {
    int flags = ::fcntl(fd, F_GETFD);
    if (flags < 0) throw_errno("fcntl(F_GETFD)", std::to_string(fd));
    flags = inheritable ? (flags & ~FD_CLOEXEC) : (flags | FD_CLOEXEC);
    if (::fcntl(fd, F_SETFD, flags) < 0) throw_errno("fcntl(F_SETFD)", std::to_string(fd));
}

bool fd_is_open(int fd) noexcept { return fd >= 0 && ::fcntl(fd, F_GETFD) >= 0; }

bool is_terminal(int fd) noexcept { return ::isatty(fd) == 1; }

// ---- time ---------------------------------------------------------------

timespec monotonic_now() noexcept {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts;
}

static bool before(const timespec& a, const timespec& b) noexcept {
    return a.tv_sec < b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec < b.tv_nsec);
}

Deadline Deadline::after(Duration t) noexcept {
    Deadline d;
    d.never_ = false;
    double secs = t.count();
    if (!(secs > 0)) secs = 0;  // negative or NaN: don't wait
    if (secs > 1e9) secs = 1e9;  // ~31 years: effectively never, but finite
    timespec now = monotonic_now();
    auto whole = static_cast<time_t>(secs);
    long nanos = static_cast<long>((secs - static_cast<double>(whole)) * 1e9);
    d.at_.tv_sec = now.tv_sec + whole;
    d.at_.tv_nsec = now.tv_nsec + nanos;
    if (d.at_.tv_nsec >= 1000000000L) {
        d.at_.tv_nsec -= 1000000000L;
        d.at_.tv_sec += 1;
    }
    return d;
}

bool Deadline::expired() const noexcept {
    if (never_) return false;
    return !before(monotonic_now(), at_);
}

Timeout Deadline::remaining() const noexcept {
    if (never_) return std::nullopt;
    timespec now = monotonic_now();
    if (!before(now, at_)) return Duration(0);
    double s = static_cast<double>(at_.tv_sec - now.tv_sec) +
               static_cast<double>(at_.tv_nsec - now.tv_nsec) * 1e-9;
    return Duration(s);
}

int Deadline::poll_ms() const noexcept {
    if (never_) return -1;
    double s = remaining()->count();
    double ms = s * 1000.0;
    if (ms <= 0) return 0;
    if (ms > INT_MAX - 1) return INT_MAX - 1;
    return static_cast<int>(ms) + (static_cast<double>(static_cast<int>(ms)) < ms ? 1 : 0);
}

// ---- futex --------------------------------------------------------------

bool futex_wait(const std::atomic<std::uint32_t>* word, std::uint32_t expected,
                const Deadline& deadline) {
    static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));
    // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC timeout, so a wait
    // interrupted by a signal resumes with the same deadline.
    long r = ::syscall(SYS_futex, reinterpret_cast<const std::uint32_t*>(word),
                       FUTEX_WAIT_BITSET, expected, deadline.abs(), nullptr,
                       FUTEX_BITSET_MATCH_ANY);
    if (r == 0) return true;
    switch (errno) {
        case EAGAIN:  // value already changed
        case EINTR:
            return true;
        case ETIMEDOUT:
            return false;
        default:
            throw_errno("futex(FUTEX_WAIT_BITSET)", "shared word");
    }
}

int futex_wake(const std::atomic<std::uint32_t>* word, int n) noexcept {
    long r = ::syscall(SYS_futex, reinterpret_cast<const std::uint32_t*>(word), FUTEX_WAKE, n,
                       nullptr, nullptr, 0);
    return r < 0 ? 0 : static_cast<int>(r);
}

int futex_wake_op(std::atomic<std::uint32_t>* word, int n, FutexOp op, int arg) noexcept {
    static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));
    int kop = op == FutexOp::add ? FUTEX_OP_ADD : op == FutexOp::bit_or ? FUTEX_OP_OR : FUTEX_OP_ANDN;
    // The second wake (nr_wake2 = 0) never happens, whatever the comparison.
    const int encoded = FUTEX_OP(kop, arg & 0xfff, FUTEX_OP_CMP_EQ, 0);
    auto* w = reinterpret_cast<std::uint32_t*>(word);
    for (;;) {
        long r = ::syscall(SYS_futex, w, FUTEX_WAKE_OP, n, reinterpret_cast<void*>(0L), w, encoded);
        if (r >= 0) return static_cast<int>(r);
        if (errno == EINTR || errno == EAGAIN) continue;
        return -1;
    }
}

std::uint64_t monotonic_ns() noexcept {
    timespec ts = monotonic_now();
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

namespace {
bool single_cpu() noexcept { return ::sysconf(_SC_NPROCESSORS_ONLN) <= 1; }
}  // namespace

std::uint64_t spin_budget_ns() noexcept {
    static const std::uint64_t budget = []() -> std::uint64_t {
        if (const char* s = std::getenv("MPROC_SPIN_US")) return std::strtoull(s, nullptr, 10) * 1000;
        return single_cpu() ? std::uint64_t{0} : std::uint64_t{20000};
    }();
    return budget;
}

unsigned pauses_for_ns(std::uint64_t ns) noexcept {
    static const double ns_per_pause = [] {
        constexpr int kPauses = 2000;
        const std::uint64_t t0 = monotonic_ns();
        for (int i = 0; i < kPauses; ++i) cpu_relax();
        return std::max(1.0, static_cast<double>(monotonic_ns() - t0) / kPauses);
    }();
    return std::max(1u, static_cast<unsigned>(static_cast<double>(ns) / ns_per_pause));
}

std::uint64_t lock_spin_budget_ns() noexcept {
    static const std::uint64_t budget = single_cpu() ? 0 : std::min<std::uint64_t>(2000, spin_budget_ns());
    return budget;
}

// ---- robust mutex -------------------------------------------------------

#ifndef FUTEX_LOCK_PI2
#define FUTEX_LOCK_PI2 13
#endif

namespace {

// What the kernel offers, probed once on a private word of our own:
// FUTEX_LOCK_PI on a free word takes it (the word becomes our tid).
struct PiSupport {
    bool pi = false;   // FUTEX_LOCK_PI (Linux 2.6.18; absent on some emulators)
    bool pi2 = false;  // FUTEX_LOCK_PI2: timed PI locks on CLOCK_MONOTONIC (Linux 5.14)
};

bool probe_lock_pi(int op) noexcept {
    std::uint32_t word = 0;
    long r = ::syscall(SYS_futex, &word, op | FUTEX_PRIVATE_FLAG, 0, nullptr, nullptr, 0);
    if (r != 0) return false;
    ::syscall(SYS_futex, &word, FUTEX_UNLOCK_PI | FUTEX_PRIVATE_FLAG, 0, nullptr, nullptr, 0);
    return true;
}

const PiSupport& pi_support() noexcept {
    static const PiSupport s = [] {
        PiSupport p;
        p.pi = probe_lock_pi(FUTEX_LOCK_PI);
        // MPROC_NO_LOCK_PI2=1 takes the CLOCK_REALTIME path (for its test).
        const char* no_pi2 = std::getenv("MPROC_NO_LOCK_PI2");
        p.pi2 = p.pi && !(no_pi2 && *no_pi2 == '1') && probe_lock_pi(FUTEX_LOCK_PI2);
        return p;
    }();
    return s;
}

}  // namespace

bool robust_mutex_is_pi() noexcept { return pi_support().pi; }
bool robust_mutex_has_lock_pi2() noexcept { return pi_support().pi2; }

void robust_mutex_init(pthread_mutex_t* m, bool recursive) {
    pthread_mutexattr_t attr;
    int e = ::pthread_mutexattr_init(&attr);
    if (e == 0)
        e = ::pthread_mutexattr_settype(
            &attr, recursive ? PTHREAD_MUTEX_RECURSIVE : PTHREAD_MUTEX_ERRORCHECK);
    if (e == 0) e = ::pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    if (e == 0) e = ::pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    if (e == 0 && pi_support().pi) e = ::pthread_mutexattr_setprotocol(&attr, PTHREAD_PRIO_INHERIT);
    if (e == 0) e = ::pthread_mutex_init(m, &attr);
    ::pthread_mutexattr_destroy(&attr);
    if (e != 0) throw_errno("pthread_mutex_init", "robust process-shared mutex", e);
}

static LockStatus finish_lock(pthread_mutex_t* m, int e, const char* call) {
    switch (e) {
        case 0:
            fault_point("lock.acquired");
            return LockStatus::acquired;
        case EOWNERDEAD:
            // We hold it now. Mark it usable again; the caller reports the
            // death to its user rather than hiding it.
            ::pthread_mutex_consistent(m);
            fault_point("lock.acquired");
            return LockStatus::owner_died;
        case ETIMEDOUT:
        case EBUSY:
            return LockStatus::timed_out;
        case EDEADLK:
            return LockStatus::would_deadlock;
        default:
            throw_errno(call, "robust process-shared mutex", e);
    }
}

LockStatus robust_mutex_trylock(pthread_mutex_t* m) {
    return finish_lock(m, ::pthread_mutex_trylock(m), "pthread_mutex_trylock");
}

// A timed PI lock without FUTEX_LOCK_PI2 can only wait on CLOCK_REALTIME
// (glibc would otherwise ask the kernel for PI2 and fail): wait in slices,
// each converted from what is left of the monotonic deadline, so a jump of
// the wall clock shortens or stretches one slice at most.
static int realtime_sliced_lock(pthread_mutex_t* m, const Deadline& deadline) {
    constexpr long kSliceNs = 100'000'000;
    for (;;) {
        const Timeout left = deadline.remaining();
        if (left->count() <= 0) return ETIMEDOUT;
        long ns = left->count() >= 0.1 ? kSliceNs : static_cast<long>(left->count() * 1e9) + 1;
        timespec at{};
        ::clock_gettime(CLOCK_REALTIME, &at);
        at.tv_nsec += ns;
        if (at.tv_nsec >= 1000000000L) {
            at.tv_nsec -= 1000000000L;
            at.tv_sec += 1;
        }
        int e = ::pthread_mutex_timedlock(m, &at);
        if (e != ETIMEDOUT) return e;
    }
}

// pthread_mutex_clocklock, told to ThreadSanitizer: GCC 12's TSan does not
// intercept it, so a lock taken by it would be unknown to TSan and its
// unlock (intercepted) reported as the unlock of an unlocked mutex. The
// annotations say what the interceptor would have said; they are nothing
// outside a TSan build.
static int tsan_visible_clocklock(pthread_mutex_t* m, const Deadline& deadline) {
#if MPROC_TSAN
    __tsan_mutex_pre_lock(m, __tsan_mutex_try_lock);
#endif
    const int e = ::pthread_mutex_clocklock(m, CLOCK_MONOTONIC, deadline.abs());
#if MPROC_TSAN
    const bool got = e == 0 || e == EOWNERDEAD;
    __tsan_mutex_post_lock(m, __tsan_mutex_try_lock | (got ? 0 : __tsan_mutex_try_lock_failed), 0);
#endif
    return e;
}

// robust_mutex_lock() when its first trylock did not simply succeed: kept
// out of line so that the uncontended lock (a queue's put and get take one
// each) pays for a trylock and a test, not for this frame.
[[gnu::noinline]] static LockStatus contended_lock(pthread_mutex_t* m, int e, const Deadline& deadline) {
    // See lock_spin_budget_ns(). Read-only polls between trylocks: a failed
    // trylock is a locked bus cycle on the holder's cache line.
    if (e == EBUSY) {
        unsigned n = 0;
        spin_until([&] { return (++n & 7) == 0 && (e = ::pthread_mutex_trylock(m)) != EBUSY; },
                   lock_spin_budget_ns());
    }
    // Then a few yields before sleeping in the kernel. A holder that has not
    // let go within the spin is usually not running (more processes than
    // CPUs); yielding lets it finish. Sleeping instead would make the next
    // unlock hand the lock, inside the kernel, to a sleeper that must first
    // be scheduled, while every other locker queues behind it: with 4
    // processes putting on one queue on 2 CPUs, 8x fewer items per second.
    for (int i = 0; e == EBUSY && i < kLockYields && !deadline.expired(); ++i) {
        ::sched_yield();
        e = ::pthread_mutex_trylock(m);
    }
    if (e != EBUSY) return finish_lock(m, e, "pthread_mutex_trylock");
    if (deadline.is_never()) return finish_lock(m, ::pthread_mutex_lock(m), "pthread_mutex_lock");
    if (deadline.expired()) return LockStatus::timed_out;
    if (pi_support().pi && !pi_support().pi2)
        return finish_lock(m, realtime_sliced_lock(m, deadline), "pthread_mutex_timedlock");
    e = tsan_visible_clocklock(m, deadline);
    if (e == EINVAL || e == ENOSYS)  // a kernel that refuses the monotonic clock after all
        e = realtime_sliced_lock(m, deadline);
    return finish_lock(m, e, "pthread_mutex_clocklock");
}

LockStatus robust_mutex_lock(pthread_mutex_t* m, const Deadline& deadline) {
    const int e = ::pthread_mutex_trylock(m);
    if (__builtin_expect(e == 0, true)) {
        fault_point("lock.acquired");
        return LockStatus::acquired;
    }
    return contended_lock(m, e, deadline);
}

bool robust_mutex_unlock(pthread_mutex_t* m) noexcept { return ::pthread_mutex_unlock(m) == 0; }

bool robust_mutex_held(const pthread_mutex_t* m) noexcept {
    // The futex word (glibc's __lock) holds the owner's tid, plus the
    // kernel's waiters and owner-died bits; a dead owner's tid is cleared
    // by the kernel (PI) or marked owner-died (plain robust).
    const int word = __atomic_load_n(&m->__data.__lock, __ATOMIC_RELAXED);
    const auto w = static_cast<std::uint32_t>(word);
    return (w & FUTEX_TID_MASK) != 0 && (w & FUTEX_OWNER_DIED) == 0;
}

MutexSnapshot robust_mutex_snapshot(const pthread_mutex_t* m) noexcept {
    const auto w = static_cast<std::uint32_t>(__atomic_load_n(&m->__data.__lock, __ATOMIC_RELAXED));
    MutexSnapshot s;
    if ((w & FUTEX_OWNER_DIED) == 0) s.owner_tid = static_cast<pid_t>(w & FUTEX_TID_MASK);
    s.waiters = (w & FUTEX_WAITERS) != 0;
    return s;
}

// ---- processes ----------------------------------------------------------

Fd pidfd_open(pid_t p) {
    int fd = static_cast<int>(::syscall(SYS_pidfd_open, p, 0));
    if (fd < 0) throw_errno("pidfd_open", std::to_string(p));
    return Fd(fd);  // pidfds are always close-on-exec
}

namespace {
// The one poll(2) loop: until an fd is ready or the deadline passes (poll
// counts whole milliseconds, so a short return is waited out), EINTR
// retried. False on timeout.
bool poll_until(pollfd* ps, std::size_t n, const Deadline& deadline, std::string_view what) {
    for (;;) {
        const int r = ::poll(ps, n, deadline.poll_ms());
        if (r > 0) return true;
        if (r == 0) {
            if (deadline.expired()) return false;
            continue;
        }
        if (errno != EINTR) throw_errno("poll", what);
    }
}

bool wait_for(int fd, short events, const Deadline& deadline) {
    pollfd p{fd, events, 0};
    return poll_until(&p, 1, deadline, "fd " + std::to_string(fd));
}
}  // namespace

bool wait_readable(int fd, const Deadline& deadline) { return wait_for(fd, POLLIN, deadline); }
bool wait_writable(int fd, const Deadline& deadline) { return wait_for(fd, POLLOUT, deadline); }

std::optional<short> poll_now(int fd) noexcept {
    pollfd p{fd, POLLIN, 0};
    int r;
    do r = ::poll(&p, 1, 0);
    while (r < 0 && errno == EINTR);
    if (r < 0) return std::nullopt;
    return r == 0 ? 0 : p.revents;
}

bool readable_now(int fd) noexcept {
    const auto r = poll_now(fd);
    return r && *r != 0;
}

std::vector<std::size_t> poll_readable(std::span<const int> fds, const Deadline& deadline) {
    std::vector<pollfd> ps;
    ps.reserve(fds.size());
    for (int fd : fds) ps.push_back(pollfd{fd, POLLIN, 0});
    if (!poll_until(ps.data(), ps.size(), deadline, std::to_string(fds.size()) + " fds")) return {};
    std::vector<std::size_t> ready;
    for (std::size_t i = 0; i < ps.size(); ++i)
        if (ps[i].revents) ready.push_back(i);
    return ready;
}

bool process_exists(pid_t p) noexcept { return ::kill(p, 0) == 0 || errno == EPERM; }

void kill_self_now() noexcept {
    for (;;) ::kill(::getpid(), SIGKILL);
}

}  // namespace mproc::os
