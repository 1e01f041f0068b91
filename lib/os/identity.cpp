// Who this thread is: pid and tid cached (refreshed after fork), its
// identity for owner-naming locks, its CPU, sched_yield. See os.hpp.
#include "os/os.hpp"
#include "os/procfs.hpp"

#include <atomic>
#include <cstdint>

#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace mproc::os {

// ---- identity -----------------------------------------------------------

namespace {
std::atomic<pid_t> g_pid{0};
// initial-exec: mproc's TLS is reached without a __tls_get_addr call, which
// matters on the lock fast path (mproc is not meant to be dlopen'ed late).
__attribute__((tls_model("initial-exec"))) thread_local pid_t t_tid = 0;
}  // namespace

constinit __attribute__((tls_model("initial-exec"))) thread_local std::uint64_t identity_detail::cached = 0;

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

void yield_cpu() noexcept { ::sched_yield(); }

std::uint64_t identity_detail::fill() noexcept {
    const pid_t t = tid();
    const ThreadLook self = look_at_thread(t);
    // Without /proc the start time is unknown: 0, and a waiter that cannot
    // read ours either goes by kill(2) alone (see owner_lock.hpp).
    return cached = (static_cast<std::uint64_t>(static_cast<std::uint32_t>(self.start_ticks)) << 32) |
                    static_cast<std::uint32_t>(t);
}

unsigned current_cpu() noexcept {
    const int c = ::sched_getcpu();
    return c < 0 ? 0u : static_cast<unsigned>(c);
}

namespace {
struct AtForkRegistration {
    AtForkRegistration() {
        // The child's only thread is the one that forked: its tid changed.
        ::pthread_atfork(nullptr, nullptr, [] {
            g_pid.store(::getpid(), std::memory_order_relaxed);
            t_tid = 0;
            identity_detail::cached = 0;
        });
    }
} g_atfork;
}  // namespace

}  // namespace mproc::os
