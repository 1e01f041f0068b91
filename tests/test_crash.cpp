// Crash safety at chosen instructions (DESIGN.md principle 4): a process is
// killed exactly where a wake-up could be lost — a waker right after its
// change became visible, a waiter right after it was woken, a lock waiter
// between being woken and retaking the lock — and the survivors must carry
// on: nobody sleeps while an item, a permit, a notification or the lock is
// there for them, and nothing published is lost.
//
// Fault points (lib/os/fault.hpp) are armed in the victim only:
// mproc::detail::arm_fault() in a forked child or a target function, or
// MPROC_FAULT in the environment of a pool's workers. Survivors wait without
// timeouts where a lost wake-up would show as a hang; the parent bounds each
// of them (wait_child) so a hang is a failure, not a stuck suite.
#include <catch2/catch.hpp>

#include <mproc/detail/fault.hpp>
#include <mproc/futures.hpp>
#include <mproc/pipe.hpp>
#include <mproc/pool.hpp>
#include <mproc/process.hpp>
#include <mproc/queue.hpp>
#include <mproc/shared_memory.hpp>
#include <mproc/sync.hpp>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.hpp"

using namespace std::chrono_literals;
using mproc::Duration;
using mproc::StartMethod;
using mproc_test::fork_child;
using mproc_test::wait_child;

namespace {

void check(bool ok, const char* what) {
    if (!ok) throw std::runtime_error(what);
}

// How long a survivor may take before the test calls it a hang: far beyond
// any wake-up or safety net, short enough to fail fast.
constexpr auto kHang = std::chrono::seconds(20);
constexpr Duration kLong = 30s;

// Waits (bounded) until every pid sleeps in the kernel: a wake-up is needed
// from then on, which is the situation these tests are about.
void wait_asleep(std::initializer_list<pid_t> pids) {
    auto until = std::chrono::steady_clock::now() + kHang;
    for (pid_t pid : pids)
        if (!mproc_test::wait_asleep(pid, until)) FAIL("process " << pid << " never went to sleep");
}

// The victim: forked, armed with `spec`, runs fn, and must die of SIGKILL there.
template <class F>
void run_victim(const char* spec, F&& fn) {
    pid_t pid = fork_child([&] {
        mproc::detail::arm_fault(spec);
        fn();
        std::fprintf(stderr, "victim: fault point %s was never hit\n", spec);
        ::_exit(3);
    });
    REQUIRE(wait_child(pid, kHang) == -SIGKILL);
}

// For children started by mproc::Process (any start method).
void arm_and_put(mproc::Queue<long> q, std::string spec, long item) {
    mproc::detail::arm_fault(spec);
    q.put(item);
    std::_Exit(3);  // not reached: the fault point kills it
}

void get_n(mproc::Queue<long> q, mproc::Array<long> got, int n) {
    for (int i = 0; i < n; ++i) got[static_cast<std::size_t>(i)] = q.get();
}

long pool_square(long x) { return x * x; }
// Slow enough that the parent's result thread is asleep when the result
// comes (a sleeper is what a lost wake-up strands); correctness does not
// depend on it.
long slow_square(long x) {
    std::this_thread::sleep_for(50ms);
    return x * x;
}

}  // namespace

// ---- queues -----------------------------------------------------------------

TEST_CASE("Queue: a producer killed right after publishing wakes the sleeping consumer",
          "[crash][queue]") {
    for (auto method : {StartMethod::fork, StartMethod::spawn, StartMethod::forkserver}) {
        INFO("start method " << static_cast<int>(method));
        mproc::Queue<long> q;
        mproc::Array<long> got(3);
        mproc::Process consumer(get_n, q, got, 3);
        consumer.start_method(method).start();
        wait_asleep({static_cast<pid_t>(*consumer.pid())});
        mproc::Process victim(arm_and_put, q, std::string("ring.put_published:1"), 7L);
        victim.start_method(method).start();
        REQUIRE(victim.join(kLong));
        REQUIRE(victim.exitcode() == -SIGKILL);
        // The item was published: the consumer must have it without any
        // further put. Then two more arrive as usual.
        auto until = std::chrono::steady_clock::now() + kHang;
        while (got[0] != 7 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(1ms);
        REQUIRE(got[0] == 7);
        q.put(8);
        q.put(9);
        REQUIRE(consumer.join(kLong));
        REQUIRE(consumer.exitcode() == 0);
        REQUIRE(got[1] == 8);
        REQUIRE(got[2] == 9);
    }
}

TEST_CASE("Queue: a producer killed before its commit: the next put delivers - nothing waits for it",
          "[crash][queue]") {
    mproc::Queue<long> q;
    mproc::Value<long> sum(0);
    pid_t consumer = fork_child([&] {
        long s = 0;
        for (;;) {
            long x = q.get();
            if (x < 0) break;
            s += x;
        }
        sum.store(s);
    });
    wait_asleep({consumer});
    run_victim("ring.put_publish:1", [&] { q.put(100); });
    q.put(1);
    q.put(-1);
    REQUIRE(wait_child(consumer, kHang) == 0);
    // The interrupted put arrives once or not at all; the next one always.
    REQUIRE((sum.load() == 1 || sum.load() == 101));
}

TEST_CASE("Queue: a consumer killed between caching the writers' state and their count misleads no one",
          "[crash][queue]") {
    // The reader caches the writer side's state and its item count for the
    // next reader to trust; killed between the two stores, it must leave a
    // state that covers at least the items counted.
    mproc::Queue<long> q;
    q.put(5);
    q.put(6);
    run_victim("ring.get_looked:1", [&] { (void)q.get(); });
    REQUIRE(q.get(kLong) == 5);  // the victim's get never returned: its item stays
    REQUIRE(q.get(kLong) == 6);
    REQUIRE(q.empty());
}

TEST_CASE("Queue maxsize=1: a consumer killed right after freeing the slot wakes the blocked producer",
          "[crash][queue]") {
    mproc::Queue<long> q(1);
    q.put(1);
    pid_t producer = fork_child([&] { q.put(2); });  // blocks: full
    wait_asleep({producer});
    run_victim("ring.get_published:1", [&] { check(q.get() == 1, "wrong item"); });
    REQUIRE(wait_child(producer, kHang) == 0);
    REQUIRE(q.get(kLong) == 2);
    REQUIRE(q.empty());
}

TEST_CASE("Queue maxsize=1 - 1 -> 1: producer and consumer killed at their wake-ups in turn",
          "[crash][queue]") {
    // Each round kills one side exactly at its wake-up while the other
    // sleeps on it; a replacement takes over. Every published item arrives
    // once; an interrupted one at most once.
    mproc::Queue<long> q(1);
    mproc::Array<long> seen(64);
    pid_t consumer = fork_child([&] {
        for (;;) {
            long x = q.get();
            if (x < 0) return;
            std::atomic_ref<long>(seen[static_cast<std::size_t>(x)]).fetch_add(1);
        }
    });
    for (long i = 1; i <= 10; ++i) {
        wait_asleep({consumer});
        run_victim("ring.put_published:1", [&] { q.put(i); });
    }
    q.put(-1);
    REQUIRE(wait_child(consumer, kHang) == 0);
    for (long i = 1; i <= 10; ++i) REQUIRE(seen[static_cast<std::size_t>(i)] == 1);

    q.put(20);
    for (long i = 21; i <= 30; ++i) {
        pid_t producer = fork_child([&] { q.put(i); });  // blocks: full
        wait_asleep({producer});
        run_victim("ring.get_published:1", [&] { check(q.get() == i - 1, "out of order"); });
        REQUIRE(wait_child(producer, kHang) == 0);
    }
    REQUIRE(q.get(kLong) == 30);
}

TEST_CASE("Queue: a second consumer with a timeout gets the queued items while the first sleeps",
          "[crash][queue]") {
    mproc::Queue<long> q;
    mproc::Array<long> seen(16);
    mproc::Value<long> total(0);
    auto record = [&](long x) {
        std::atomic_ref<long>(seen[static_cast<std::size_t>(x)]).fetch_add(1);
        std::atomic_ref<long>(total.value()).fetch_add(1);
    };
    pid_t first = fork_child([&] {
        for (;;) {
            long x = q.get();
            if (x < 0) return;
            record(x);
        }
    });
    wait_asleep({first});
    run_victim("ring.put_published:1", [&] { q.put(1); });
    for (long i = 2; i <= 6; ++i) q.put(i);
    pid_t second = fork_child([&] {
        // Gets what the first has not taken, each wait bounded to 2 s: the
        // first sleeping consumer must not hold it up.
        while (std::atomic_ref<long>(total.value()).load() < 6) {
            if (auto x = q.try_get(2s)) record(*x);
            else check(std::atomic_ref<long>(total.value()).load() == 6, "Empty with items queued");
        }
    });
    REQUIRE(wait_child(second, kHang) == 0);
    q.put(-1);
    REQUIRE(wait_child(first, kHang) == 0);
    for (long i = 1; i <= 6; ++i) REQUIRE(seen[static_cast<std::size_t>(i)] == 1);
}

TEST_CASE("JoinableQueue: a consumer killed right after its last task_done releases join()",
          "[crash][queue][joinable]") {
    mproc::JoinableQueue<long> q;
    q.put(1);
    pid_t joiner = fork_child([&] { check(q.join(), "join failed"); });
    wait_asleep({joiner});
    run_victim("join.published:1", [&] {
        q.get();
        q.task_done();
    });
    REQUIRE(wait_child(joiner, kHang) == 0);
}

TEST_CASE("JoinableQueue: a consumer killed before its task_done took effect: the next one releases join()",
          "[crash][queue][joinable]") {
    mproc::JoinableQueue<long> q;
    q.put(1);
    pid_t joiner = fork_child([&] { check(q.join(), "join failed"); });
    wait_asleep({joiner});
    run_victim("join.publish:1", [&] {
        q.get();
        q.task_done();
    });
    q.task_done();  // the victim's task, redone: it had not counted
    REQUIRE(wait_child(joiner, kHang) == 0);
}

// ---- pipes ----------------------------------------------------------------------

TEST_CASE("Pipe: a sender killed right after publishing wakes the receiver", "[crash][pipe]") {
    auto [a, b] = mproc::Pipe<long>();
    pid_t reader = fork_child([&, b = b] { check(b.recv() == 5, "wrong message"); });
    wait_asleep({reader});
    run_victim("ring.put_published:1", [&, a = a] { a.send(5); });
    REQUIRE(wait_child(reader, kHang) == 0);
}

TEST_CASE("Pipe: mproc::wait() wakes when the sender is killed right after publishing", "[crash][pipe]") {
    auto [a, b] = mproc::Pipe<long>();
    auto [c, d] = mproc::Pipe<long>();
    pid_t reader = fork_child([&, b = b, d = d] {
        auto ready = mproc::wait(std::vector<mproc::Connection<long>>{b, d});
        check(ready.size() == 1 && ready[0].recv() == 6, "wrong connection or message");
    });
    wait_asleep({reader});
    run_victim("ring.put_published:1", [&, c = c] { c.send(6); });
    REQUIRE(wait_child(reader, kHang) == 0);
}

TEST_CASE("Pipe: a receiver killed right after freeing the ring wakes the blocked sender", "[crash][pipe]") {
    auto [a, b] = mproc::Pipe<std::string>(true, 4096);
    const std::string chunk(900, 'x');  // the 4 KiB ring holds 4 of these
    for (int i = 0; i < 4; ++i) a.send(chunk);
    pid_t sender = fork_child([&, a = a] { a.send(chunk); });  // blocks: full
    wait_asleep({sender});
    run_victim("ring.get_published:1", [&, b = b] { b.recv(); });
    REQUIRE(wait_child(sender, kHang) == 0);
}

// ---- sync objects ---------------------------------------------------------------

TEST_CASE("Semaphore: a releaser killed right after release wakes the waiter", "[crash][sync]") {
    mproc::Semaphore sem(0);
    pid_t waiter = fork_child([&] { check(sem.acquire(), "acquire failed"); });
    wait_asleep({waiter});
    run_victim("sync.published:1", [&] { sem.release(); });
    REQUIRE(wait_child(waiter, kHang) == 0);
}

TEST_CASE("Semaphore: a waiter killed right after being woken passes the permit on", "[crash][sync]") {
    mproc::Semaphore sem(0);
    pid_t victim = fork_child([&] {
        mproc::detail::arm_fault("sync.woken:1");
        sem.acquire();
        ::_exit(3);
    });
    wait_asleep({victim});
    pid_t other = fork_child([&] { check(sem.acquire(), "acquire failed"); });
    wait_asleep({other});
    sem.release();  // the kernel wakes the first sleeper: the victim
    REQUIRE(wait_child(victim, kHang) == -SIGKILL);
    REQUIRE(wait_child(other, kHang) == 0);
}

TEST_CASE("Event: a setter killed right after set() wakes every waiter", "[crash][sync]") {
    mproc::Event ev;
    pid_t w1 = fork_child([&] { check(ev.wait(), "wait failed"); });
    pid_t w2 = fork_child([&] { check(ev.wait(), "wait failed"); });
    wait_asleep({w1, w2});
    run_victim("sync.published:1", [&] { ev.set(); });
    REQUIRE(wait_child(w1, kHang) == 0);
    REQUIRE(wait_child(w2, kHang) == 0);
}

TEST_CASE("Condition: a notifier killed right after notify wakes the waiter", "[crash][sync]") {
    mproc::Condition cond;
    mproc::Value<int> flag(0);
    pid_t waiter = fork_child([&] {
        std::unique_lock<mproc::Condition> g(cond);
        check(cond.wait_for(g, [&] { return flag.value() == 1; }), "wait failed");
    });
    wait_asleep({waiter});
    run_victim("sync.published:1", [&] {
        cond.acquire();
        flag.value() = 1;
        cond.notify();
    });
    REQUIRE(wait_child(waiter, kHang) == 0);
}

TEST_CASE("Condition: a waiter killed right after notify(1) woke it passes the notification on",
          "[crash][sync]") {
    mproc::Condition cond;
    auto waiter = [&] {
        std::unique_lock<mproc::Condition> g(cond);
        check(cond.wait(g), "wait failed");
    };
    pid_t victim = fork_child([&] {
        mproc::detail::arm_fault("sync.woken:1");
        waiter();
        ::_exit(3);
    });
    wait_asleep({victim});
    pid_t other = fork_child(waiter);
    wait_asleep({other});
    {
        std::unique_lock<mproc::Condition> g(cond);
        cond.notify(1);  // the kernel wakes the first sleeper: the victim
    }
    REQUIRE(wait_child(victim, kHang) == -SIGKILL);
    REQUIRE(wait_child(other, kHang) == 0);
}

TEST_CASE("Barrier: the last party killed right after completing the round releases the others",
          "[crash][sync]") {
    mproc::Barrier bar(3);
    pid_t w1 = fork_child([&] { bar.wait(); });
    pid_t w2 = fork_child([&] { bar.wait(); });
    wait_asleep({w1, w2});
    run_victim("sync.published:1", [&] { bar.wait(); });
    REQUIRE(wait_child(w1, kHang) == 0);
    REQUIRE(wait_child(w2, kHang) == 0);
    REQUIRE_FALSE(bar.broken());
}

TEST_CASE("Barrier: the last party killed before completing: a replacement completes the round",
          "[crash][sync]") {
    mproc::Barrier bar(3);
    pid_t w1 = fork_child([&] { bar.wait(); });
    pid_t w2 = fork_child([&] { bar.wait(); });
    wait_asleep({w1, w2});
    run_victim("sync.publish:1", [&] { bar.wait(); });
    bar.wait(kLong);  // takes the dead party's place
    REQUIRE(wait_child(w1, kHang) == 0);
    REQUIRE(wait_child(w2, kHang) == 0);
    REQUIRE_FALSE(bar.broken());
}

// ---- locks: a waiter killed between being woken and retaking the lock -----------

namespace {

// Holds `pid` (single-threaded) at the exit of its current blocking syscall:
// when the kernel wakes it, it stops before returning to user space, so the
// test can act in the window and then kill it there.
struct SyscallExitTrap {
    pid_t pid;
    explicit SyscallExitTrap(pid_t p) : pid(p) {
        REQUIRE(::ptrace(PTRACE_SEIZE, pid, nullptr, reinterpret_cast<void*>(PTRACE_O_TRACESYSGOOD)) == 0);
        REQUIRE(::ptrace(PTRACE_INTERRUPT, pid, nullptr, nullptr) == 0);
        int status = 0;
        REQUIRE(::waitpid(pid, &status, __WALL) == pid);
        // The interrupted wait restarts; run it to its syscall-entry stop and
        // let it enter, so it sleeps in the kernel again, traced.
        for (;;) {
            REQUIRE(::ptrace(PTRACE_SYSCALL, pid, nullptr, nullptr) == 0);
            REQUIRE(::waitpid(pid, &status, __WALL) == pid);
            REQUIRE(WIFSTOPPED(status));
            if (WSTOPSIG(status) != (SIGTRAP | 0x80)) continue;
            __ptrace_syscall_info info{};
            REQUIRE(::ptrace(PTRACE_GET_SYSCALL_INFO, pid, reinterpret_cast<void*>(sizeof info), &info) > 0);
            if (info.op == PTRACE_SYSCALL_INFO_ENTRY && info.entry.nr == SYS_futex) break;
        }
        REQUIRE(::ptrace(PTRACE_SYSCALL, pid, nullptr, nullptr) == 0);  // into the futex
    }
    // Waits until the traced futex call returns (the process was woken).
    void wait_woken() {
        int status = 0;
        REQUIRE(::waitpid(pid, &status, __WALL) == pid);
        REQUIRE(WIFSTOPPED(status));
        REQUIRE(WSTOPSIG(status) == (SIGTRAP | 0x80));
        __ptrace_syscall_info info{};
        REQUIRE(::ptrace(PTRACE_GET_SYSCALL_INFO, pid, reinterpret_cast<void*>(sizeof info), &info) > 0);
        REQUIRE(info.op == PTRACE_SYSCALL_INFO_EXIT);
    }
};

template <class L>
void woken_waiter_killed(L& lock) {
    mproc::Event holding, release_now;
    pid_t holder = fork_child([&] {
        lock.acquire();
        holding.set();
        release_now.wait();
        lock.release();
    });
    REQUIRE(holding.wait(kLong));
    pid_t victim = fork_child([&] { lock.acquire(); });
    wait_asleep({victim});
    SyscallExitTrap trap(victim);
    wait_asleep({victim});  // back in the lock's queue, first
    pid_t other = fork_child([&] {
        lock.acquire();
        lock.release();
    });
    wait_asleep({other});
    release_now.set();  // the holder's release wakes the victim...
    trap.wait_woken();  // ...which stops before it retakes the lock
    // A newcomer takes the lock in that window, if it can, and releases it.
    bool newcomer = lock.acquire(Duration(0.2));
    ::kill(victim, SIGKILL);
    REQUIRE(wait_child(victim, kHang) == -SIGKILL);
    if (newcomer) lock.release();
    // The other waiter must get the lock now, and so must we.
    REQUIRE(wait_child(other, kHang) == 0);
    REQUIRE(wait_child(holder, kHang) == 0);
    REQUIRE(lock.acquire(kLong));
    lock.release();
}

}  // namespace

TEST_CASE("Lock: a waiter killed after being woken - with a newcomer in between - strands nobody",
          "[crash][lock]") {
    mproc::Lock lock;
    woken_waiter_killed(lock);
}

TEST_CASE("RLock: a waiter killed after being woken - with a newcomer in between - strands nobody",
          "[crash][lock]") {
    mproc::RLock lock;
    woken_waiter_killed(lock);
}

// ---- the pool's result path --------------------------------------------------------

namespace {
// Pool workers forked while MPROC_FAULT is set are armed; the parent (whose
// points were read at its start) and later replacements are not.
struct ArmWorkers {
    explicit ArmWorkers(const char* spec) { ::setenv("MPROC_FAULT", spec, 1); }
    void done() { ::unsetenv("MPROC_FAULT"); }
    ~ArmWorkers() { done(); }
};
}  // namespace

TEST_CASE("Pool: a worker killed right after publishing its result: apply - map and terminate return",
          "[crash][pool]") {
    ArmWorkers arm("ring.put_published:1");
    mproc::Pool pool(mproc::PoolOptions{.processes = 1, .start_method = StartMethod::fork});
    arm.done();
    // The result was published before the kill: apply gets it, or the
    // worker's death if the pool noticed that first.
    long r = -1;
    try {
        r = pool.apply(slow_square, 7L);
    } catch (const mproc::Error&) {
        r = 49;
    }
    REQUIRE(r == 49);
    auto v = pool.map(pool_square, std::vector<long>{1, 2, 3});
    REQUIRE(v == std::vector<long>{1, 4, 9});
    pool.terminate();
}

TEST_CASE("Pool: terminate() returns after a worker was killed right after publishing", "[crash][pool]") {
    ArmWorkers arm("ring.put_published:1");
    mproc::Pool pool(mproc::PoolOptions{.processes = 1, .start_method = StartMethod::fork});
    arm.done();
    auto ar = pool.apply_async(slow_square, 3L);
    ar.wait(kLong);
    pool.terminate();
}

TEST_CASE("ProcessPoolExecutor: a worker killed right after publishing its result: result() returns",
          "[crash][pool]") {
    ArmWorkers arm("ring.put_published:1");
    mproc::ProcessPoolExecutor ex(1, StartMethod::fork);
    arm.done();
    auto f = ex.submit(slow_square, 6L);
    try {
        REQUIRE(f.result(kLong) == 36);
    } catch (const mproc::BrokenProcessPool&) {
        // the worker's death reached the executor first: also a prompt answer
    }
    ex.shutdown();
}
