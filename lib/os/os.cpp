// The os layer's memory, fd, time, futex and mutex calls. See os.hpp.
#include "os/os.hpp"

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
#include <sys/syscall.h>
#include <unistd.h>

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

static std::string shm_path(std::string_view name) {
    if (name.empty() || name.find('/') != std::string_view::npos)
        throw ValueError("shared memory name must be non-empty and contain no '/': " +
                         quoted(name));
    std::string p = "/";
    p += name;
    return p;
}

Fd shm_create(std::string_view name, std::size_t size) {
    std::string path = shm_path(name);
    int fd = ::shm_open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) throw_errno("shm_open", quoted(path));
    Fd owned(fd);
    try {
        truncate(fd, size, path);
    } catch (...) {
        ::shm_unlink(path.c_str());
        throw;
    }
    return owned;
}

Fd shm_attach(std::string_view name) {
    std::string path = shm_path(name);
    int fd = ::shm_open(path.c_str(), O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) throw_errno("shm_open", quoted(path));
    return Fd(fd);
}

void shm_unlink(std::string_view name) {
    std::string path = shm_path(name);
    if (::shm_unlink(path.c_str()) != 0) throw_errno("shm_unlink", quoted(path));
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

void set_inheritable(int fd, bool inheritable) {
    int flags = ::fcntl(fd, F_GETFD);
    if (flags < 0) throw_errno("fcntl(F_GETFD)", std::to_string(fd));
    flags = inheritable ? (flags & ~FD_CLOEXEC) : (flags | FD_CLOEXEC);
    if (::fcntl(fd, F_SETFD, flags) < 0) throw_errno("fcntl(F_SETFD)", std::to_string(fd));
}

bool fd_is_open(int fd) noexcept { return fd >= 0 && ::fcntl(fd, F_GETFD) >= 0; }

// ---- time ---------------------------------------------------------------

timespec monotonic_now() noexcept {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts;
}

static bool before(const timespec& a, const timespec& b) noexcept {
    return a.tv_sec < b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec < b.tv_nsec);
}

Deadline Deadline::after(Timeout t) noexcept {
    Deadline d;
    if (!t) return d;
    d.never_ = false;
    double secs = t->count();
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

std::uint64_t lock_spin_budget_ns() noexcept {
    static const std::uint64_t budget = single_cpu() ? 0 : std::min<std::uint64_t>(2000, spin_budget_ns());
    return budget;
}

// ---- robust mutex -------------------------------------------------------

void robust_mutex_init(pthread_mutex_t* m, bool recursive) {
    pthread_mutexattr_t attr;
    int e = ::pthread_mutexattr_init(&attr);
    if (e == 0)
        e = ::pthread_mutexattr_settype(
            &attr, recursive ? PTHREAD_MUTEX_RECURSIVE : PTHREAD_MUTEX_ERRORCHECK);
    if (e == 0) e = ::pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    if (e == 0) e = ::pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    if (e == 0) e = ::pthread_mutex_init(m, &attr);
    ::pthread_mutexattr_destroy(&attr);
    if (e != 0) throw_errno("pthread_mutex_init", "robust process-shared mutex", e);
}

static LockStatus finish_lock(pthread_mutex_t* m, int e, const char* call) {
    switch (e) {
        case 0:
            return LockStatus::acquired;
        case EOWNERDEAD:
            // We hold it now. Mark it usable again; the caller reports the
            // death to its user rather than hiding it.
            ::pthread_mutex_consistent(m);
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

LockStatus robust_mutex_lock(pthread_mutex_t* m, const Deadline& deadline) {
    // See lock_spin_budget_ns(). Read-only polls between trylocks: a failed
    // trylock is a locked bus cycle on the holder's cache line.
    int e = ::pthread_mutex_trylock(m);
    if (e == EBUSY) {
        unsigned n = 0;
        spin_until([&] { return (++n & 7) == 0 && (e = ::pthread_mutex_trylock(m)) != EBUSY; },
                   lock_spin_budget_ns());
    }
    if (e != EBUSY) return finish_lock(m, e, "pthread_mutex_trylock");
    if (deadline.is_never()) return finish_lock(m, ::pthread_mutex_lock(m), "pthread_mutex_lock");
    if (deadline.expired()) return LockStatus::timed_out;
    return finish_lock(m, ::pthread_mutex_clocklock(m, CLOCK_MONOTONIC, deadline.abs()),
                       "pthread_mutex_clocklock");
}

bool robust_mutex_unlock(pthread_mutex_t* m) noexcept { return ::pthread_mutex_unlock(m) == 0; }

// ---- identity -----------------------------------------------------------

namespace {
std::atomic<pid_t> g_pid{0};
// initial-exec: mproc's TLS is reached without a __tls_get_addr call, which
// matters on the lock fast path (mproc is not meant to be dlopen'ed late).
__attribute__((tls_model("initial-exec"))) thread_local pid_t t_tid = 0;
}  // namespace

pid_t pid() noexcept {
    // Cached: lock fast paths stay free of syscalls. The atfork handler
    // below refreshes it in a forked child.
    pid_t p = g_pid.load(std::memory_order_relaxed);
    if (p == 0) {
        p = ::getpid();
        g_pid.store(p, std::memory_order_relaxed);
    }
    return p;
}

pid_t tid() noexcept {
    pid_t t = t_tid;
    if (t == 0) t = t_tid = static_cast<pid_t>(::syscall(SYS_gettid));
    return t;
}

namespace {
struct AtForkRegistration {
    AtForkRegistration() {
        // The child's only thread is the one that forked: its tid changed.
        ::pthread_atfork(nullptr, nullptr, [] {
            g_pid.store(::getpid(), std::memory_order_relaxed);
            t_tid = 0;
        });
    }
} g_atfork;
}  // namespace

// ---- processes ----------------------------------------------------------

Fd pidfd_open(pid_t p) {
    int fd = static_cast<int>(::syscall(SYS_pidfd_open, p, 0));
    if (fd < 0) throw_errno("pidfd_open", std::to_string(p));
    return Fd(fd);  // pidfds are always close-on-exec
}

bool wait_readable(int fd, const Deadline& deadline) {
    for (;;) {
        pollfd p{fd, POLLIN, 0};
        int r = ::poll(&p, 1, deadline.poll_ms());
        if (r > 0) return true;
        if (r == 0) {
            if (deadline.expired()) return false;
            continue;  // poll rounds to ms; wait out the remainder
        }
        if (errno != EINTR) throw_errno("poll", std::to_string(fd));
    }
}

bool process_exists(pid_t p) noexcept { return ::kill(p, 0) == 0 || errno == EPERM; }

}  // namespace mproc::os
