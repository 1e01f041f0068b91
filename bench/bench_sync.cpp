// Lock and Event against what a user would otherwise use, in one run:
//  - uncontended acquire+release: mproc::Lock vs a robust process-shared
//    pthread mutex, the same with priority inheritance (what mproc::Lock is
//    built on) and boost::interprocess::interprocess_mutex;
//  - the same, contended by 2 processes;
//  - cross-process ping-pong round trip: two mproc::Events vs a pipe pair.
// Prints medians of several runs and the ratios (>1 means mproc is faster).
#include <mproc/shared_memory.hpp>
#include <mproc/sync.hpp>

#include <boost/interprocess/sync/interprocess_mutex.hpp>

#include <cstdio>
#include <new>

#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.hpp"

namespace {

constexpr int kReps = 7;

// Shared anonymous memory for the competitors' locks.
template <class T>
T* shared_new() {
    void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) std::abort();
    return new (p) T();
}

pthread_mutex_t* robust_pthread_mutex(bool pi) {
    auto* m = shared_new<pthread_mutex_t>();
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (pi) pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT);
    pthread_mutex_init(m, &a);
    return m;
}

struct MprocLock {
    mproc::Lock l;
    void lock() { l.acquire(); }
    void unlock() { l.release(); }
};
struct PthreadLock {
    explicit PthreadLock(bool pi = false) : m(robust_pthread_mutex(pi)) {}
    pthread_mutex_t* m;
    void lock() { pthread_mutex_lock(m); }
    void unlock() { pthread_mutex_unlock(m); }
};
struct BoostLock {
    boost::interprocess::interprocess_mutex* m = shared_new<boost::interprocess::interprocess_mutex>();
    void lock() { m->lock(); }
    void unlock() { m->unlock(); }
};

// ns per acquire+release pair, one process.
template <class L>
double uncontended(L& lock) {
    constexpr int n = 2'000'000;
    return bench::median_of(kReps, [&] {
        auto t0 = bench::Clock::now();
        for (int i = 0; i < n; ++i) {
            lock.lock();
            lock.unlock();
        }
        return bench::seconds_since(t0) * 1e9 / n;
    });
}

// ns per acquire+release pair, two processes hammering one lock, each with
// a short critical section that touches shared data.
template <class L>
double contended(L& lock) {
    constexpr int n = 200'000;
    auto* counter = shared_new<long>();
    double r = bench::median_of(kReps, [&] {
        *counter = 0;
        auto t0 = bench::Clock::now();
        pid_t pid = ::fork();
        auto work = [&] {
            for (int i = 0; i < n; ++i) {
                lock.lock();
                ++*counter;
                lock.unlock();
            }
        };
        if (pid == 0) {
            work();
            ::_exit(0);
        }
        work();
        ::waitpid(pid, nullptr, 0);
        double secs = bench::seconds_since(t0);
        if (*counter != 2L * n) std::fprintf(stderr, "contended: lost updates!\n");
        return secs * 1e9 / (2.0 * n);
    });
    ::munmap(counter, 4096);
    return r;
}

// µs per round trip: parent signals child, child signals back.
double event_pingpong() {
    constexpr int n = 20'000;
    mproc::Event ping, pong;
    return bench::median_of(kReps, [&] {
        pid_t pid = ::fork();
        if (pid == 0) {
            for (int i = 0; i < n; ++i) {
                ping.wait();
                ping.clear();
                pong.set();
            }
            ::_exit(0);
        }
        auto t0 = bench::Clock::now();
        for (int i = 0; i < n; ++i) {
            ping.set();
            pong.wait();
            pong.clear();
        }
        double secs = bench::seconds_since(t0);
        ::waitpid(pid, nullptr, 0);
        return secs * 1e6 / n;
    });
}

double pipe_pingpong() {
    constexpr int n = 20'000;
    return bench::median_of(kReps, [&] {
        int a[2], b[2];
        if (::pipe(a) || ::pipe(b)) std::abort();
        pid_t pid = ::fork();
        char c = 'x';
        if (pid == 0) {
            for (int i = 0; i < n; ++i) {
                if (::read(a[0], &c, 1) != 1 || ::write(b[1], &c, 1) != 1) ::_exit(1);
            }
            ::_exit(0);
        }
        auto t0 = bench::Clock::now();
        for (int i = 0; i < n; ++i) {
            if (::write(a[1], &c, 1) != 1 || ::read(b[0], &c, 1) != 1) std::abort();
        }
        double secs = bench::seconds_since(t0);
        ::waitpid(pid, nullptr, 0);
        for (int fd : {a[0], a[1], b[0], b[1]}) ::close(fd);
        return secs * 1e6 / n;
    });
}

}  // namespace

int main() {
    MprocLock ml;
    PthreadLock pl, pil(true);
    BoostLock bl;
    std::printf("mproc sync benchmark (median of %d runs; ratio > 1: mproc faster)\n\n", kReps);

    bench::group("Lock acquire+release, uncontended (ns/pair)\n");
    double u_m = uncontended(ml), u_p = uncontended(pl), u_i = uncontended(pil), u_b = uncontended(bl);
    bench::row("mproc::Lock", u_m);
    bench::row("pthread robust pshared mutex", u_p);
    bench::row("pthread robust pshared PI mutex", u_i);
    bench::row("boost::interprocess::interprocess_mutex", u_b);
    bench::ratio("vs pthread robust mutex", u_p / u_m);
    bench::ratio("vs pthread robust PI mutex", u_i / u_m);
    bench::ratio("vs boost interprocess_mutex", u_b / u_m);

    bench::group("\nLock acquire+release, 2 processes contending (ns/pair)\n");
    double c_m = contended(ml), c_p = contended(pl), c_i = contended(pil), c_b = contended(bl);
    bench::row("mproc::Lock", c_m);
    bench::row("pthread robust pshared mutex", c_p);
    bench::row("pthread robust pshared PI mutex", c_i);
    bench::row("boost::interprocess::interprocess_mutex", c_b);
    bench::ratio("vs pthread robust mutex", c_p / c_m);
    bench::ratio("vs pthread robust PI mutex", c_i / c_m);
    bench::ratio("vs boost interprocess_mutex", c_b / c_m);

    bench::group("\nCross-process ping-pong round trip (us)\n");
    double e = event_pingpong(), p = pipe_pingpong();
    bench::row("two mproc::Events", e, "us");
    bench::row("two pipes", p, "us");
    bench::ratio("vs pipe", p / e);
    return 0;
}
