// Lock, RLock, Condition, Semaphore, BoundedSemaphore, Event and Barrier
// across real (forked) processes. Children report failure through their
// exit code; they synchronize with the parent through Events, never sleeps.
#include <catch2/catch.hpp>

#include <mproc/process.hpp>
#include <mproc/shared_memory.hpp>
#include <mproc/sync.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include <signal.h>
#include <unistd.h>

#include "support.hpp"

using namespace std::chrono_literals;
using mproc::Duration;
using mproc_test::fork_child;
using mproc_test::wait_child;

namespace {
void check(bool ok, const char* what) {
    if (!ok) throw std::runtime_error(what);
}
constexpr Duration kLong = 30s;  // "surely happens": generous, never reached in a passing run
}  // namespace

// ---- Lock ---------------------------------------------------------------

TEST_CASE("Lock excludes another process and works with std guards", "[sync][lock]") {
    mproc::Lock lock;
    mproc::Event tried;
    lock.acquire();
    pid_t pid = fork_child([&] {
        check(!lock.acquire(Duration(0)), "acquired a held lock without waiting");
        check(!lock.acquire(20ms), "acquired a held lock within a timeout");
        tried.set();
        std::lock_guard<mproc::Lock> g(lock);  // blocks until the parent releases
    });
    REQUIRE(tried.wait(kLong));
    REQUIRE_FALSE(lock.owner_died());
    lock.release();
    REQUIRE(wait_child(pid) == 0);

    std::unique_lock<mproc::Lock> u(lock, std::try_to_lock);
    REQUIRE(u.owns_lock());
    u.unlock();
    REQUIRE(u.try_lock_for(10ms));
}

TEST_CASE("Lock misuse: releasing an unheld lock, re-acquiring a held one", "[sync][lock]") {
    mproc::Lock lock;
    REQUIRE_THROWS_AS(lock.release(), mproc::ValueError);
    lock.acquire();
    REQUIRE_FALSE(lock.acquire(Duration(0)));  // non-blocking: just "not acquired"
    REQUIRE_FALSE(lock.acquire(10ms));         // bounded: cannot succeed, says so
    REQUIRE_THROWS_AS(lock.acquire(), mproc::Error);  // blocking: would deadlock forever
    // Another thread cannot release it.
    bool threw = false;
    std::thread([&] {
        try {
            lock.release();
        } catch (const mproc::ValueError&) {
            threw = true;
        }
    }).join();
    REQUIRE(threw);
    lock.release();
}

TEST_CASE("std::scoped_lock over two mproc locks from several threads", "[sync][lock]") {
    mproc::Lock a, b;
    long counter = 0;
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; ++t)
        ts.emplace_back([&] {
            for (int i = 0; i < 20000; ++i) {
                std::scoped_lock g(a, b);
                ++counter;
            }
        });
    for (auto& t : ts) t.join();
    REQUIRE(counter == 80000);
}

TEST_CASE("kill -9 of a child holding a Lock: the parent gets it and learns the owner died",
          "[sync][lock][robust]") {
    mproc::Lock lock;
    mproc::Event holding, never;
    pid_t pid = fork_child([&] {
        lock.acquire();
        holding.set();
        never.wait();  // holds the lock until killed
    });
    REQUIRE(holding.wait(kLong));
    REQUIRE_FALSE(lock.acquire(Duration(0)));
    ::kill(pid, SIGKILL);
    REQUIRE(lock.acquire(1s));
    REQUIRE(lock.owner_died());
    lock.release();
    REQUIRE(wait_child(pid) == -SIGKILL);
    // The lock is healthy again and the next holder sees a clean hand-over.
    REQUIRE(lock.acquire(Duration(0)));
    REQUIRE_FALSE(lock.owner_died());
    lock.release();
}

TEST_CASE("kill -9 of a child blocked holding an RLock twice, while the parent waits",
          "[sync][rlock][robust]") {
    mproc::RLock lock;
    mproc::Event holding, never;
    pid_t pid = fork_child([&] {
        lock.acquire();
        lock.acquire();
        holding.set();
        never.wait();
    });
    REQUIRE(holding.wait(kLong));
    std::thread killer([&] { ::kill(pid, SIGKILL); });
    REQUIRE(lock.acquire(kLong));  // blocked in the kernel when the owner dies
    killer.join();
    REQUIRE(lock.owner_died());
    REQUIRE(lock.is_owned());
    lock.release();  // one level: the dead owner's levels are not ours
    REQUIRE_FALSE(lock.is_owned());
    REQUIRE(wait_child(pid) == -SIGKILL);
}

namespace {
// Spawned with MPROC_NO_LOCK_PI2=1: timed waits take the CLOCK_REALTIME
// slices a kernel without FUTEX_LOCK_PI2 needs. The parent holds the lock.
void timed_lock_child(mproc::Lock lock, mproc::Event timed_out) {
    auto t0 = std::chrono::steady_clock::now();
    if (lock.acquire(0.3s)) std::exit(2);
    if (std::chrono::steady_clock::now() - t0 < 0.3s) std::exit(3);
    if (!lock.locked()) std::exit(4);
    timed_out.set();
    if (!lock.acquire(kLong)) std::exit(5);
    lock.release();
}
}  // namespace

TEST_CASE("Lock: timed acquire waits its time on CLOCK_MONOTONIC, then succeeds; locked()",
          "[sync][lock]") {
    mproc::Lock lock;
    REQUIRE_FALSE(lock.locked());
    lock.acquire();
    REQUIRE(lock.locked());
    mproc::Event timed_out;
    pid_t pid = fork_child([&] {
        auto t0 = std::chrono::steady_clock::now();
        check(!lock.acquire(0.2s), "acquired a held lock");
        check(std::chrono::steady_clock::now() - t0 >= 0.2s, "returned before its timeout");
        check(lock.locked(), "locked() false while the parent holds it");
        timed_out.set();
        check(lock.acquire(kLong), "never got the lock");
        check(lock.locked(), "locked() false while held");
        lock.release();
    });
    REQUIRE(timed_out.wait(kLong));
    lock.release();
    REQUIRE(wait_child(pid) == 0);
    REQUIRE_FALSE(lock.locked());

    mproc::RLock r;
    REQUIRE_FALSE(r.locked());
    r.acquire();
    r.acquire();
    REQUIRE(r.locked());
    r.release();
    REQUIRE(r.locked());
    r.release();
    REQUIRE_FALSE(r.locked());
}

TEST_CASE("Lock: timed acquire on a kernel without FUTEX_LOCK_PI2 (the sliced fallback)",
          "[sync][lock][process]") {
    mproc::Lock lock;
    mproc::Event timed_out;
    lock.acquire();
    ::setenv("MPROC_NO_LOCK_PI2", "1", 1);
    mproc::Process p(timed_lock_child, lock, timed_out);
    p.start_method(mproc::StartMethod::spawn).start();
    ::unsetenv("MPROC_NO_LOCK_PI2");
    REQUIRE(timed_out.wait(kLong));
    lock.release();
    REQUIRE(p.join(kLong));
    REQUIRE(p.exitcode() == 0);
}

TEST_CASE("Lock: locked() is false once its owner died holding it", "[sync][lock][robust]") {
    mproc::Lock lock;
    mproc::Event holding, never;
    pid_t pid = fork_child([&] {
        lock.acquire();
        holding.set();
        never.wait();
    });
    REQUIRE(holding.wait(kLong));
    REQUIRE(lock.locked());
    ::kill(pid, SIGKILL);
    REQUIRE(wait_child(pid) == -SIGKILL);
    REQUIRE_FALSE(lock.locked());  // the next acquire succeeds at once
    REQUIRE(lock.acquire(Duration(0)));
    REQUIRE(lock.owner_died());
    lock.release();
}

// ---- RLock --------------------------------------------------------------

TEST_CASE("RLock is re-entrant for its owner and excludes other processes", "[sync][rlock]") {
    mproc::RLock lock;
    lock.acquire();
    REQUIRE(lock.acquire(Duration(0)));
    REQUIRE(lock.is_owned());
    mproc::Event tried;
    pid_t pid = fork_child([&] {
        check(!lock.is_owned(), "child thinks it owns the parent's RLock");
        check(!lock.acquire(Duration(0)), "child acquired a held RLock");
        try {
            lock.release();
            throw std::runtime_error("child released the parent's RLock");
        } catch (const mproc::ValueError&) {
        }
        tried.set();
        check(lock.acquire(kLong), "child never got the RLock");
        lock.release();
    });
    REQUIRE(tried.wait(kLong));
    lock.release();
    REQUIRE(lock.is_owned());  // one level still held
    lock.release();
    REQUIRE_FALSE(lock.is_owned());
    REQUIRE(wait_child(pid) == 0);
    REQUIRE_THROWS_AS(lock.release(), mproc::ValueError);
}

// ---- Condition ----------------------------------------------------------

TEST_CASE("Condition producer/consumer between processes", "[sync][condition]") {
    // A bounded buffer of 4 slots in shared memory, guarded by one Condition.
    struct Buffer {
        int items[4];
        int head, tail, count;
    };
    mproc::Value<Buffer> buf(Buffer{});
    mproc::Condition cond;
    constexpr int kItems = 2000;
    pid_t producer = fork_child([&] {
        for (int i = 1; i <= kItems; ++i) {
            std::unique_lock<mproc::Condition> g(cond);
            check(cond.wait_for(g, [&] { return buf.value().count < 4; }, kLong), "producer starved");
            Buffer& b = buf.value();
            b.items[b.tail] = i;
            b.tail = (b.tail + 1) % 4;
            ++b.count;
            cond.notify();
        }
    });
    long sum = 0;
    int expected = 1;
    bool in_order = true;
    for (int n = 0; n < kItems; ++n) {
        std::unique_lock<mproc::Condition> g(cond);
        REQUIRE(cond.wait_for(g, [&] { return buf.value().count > 0; }, kLong));
        Buffer& b = buf.value();
        int x = b.items[b.head];
        b.head = (b.head + 1) % 4;
        --b.count;
        cond.notify();
        in_order = in_order && x == expected++;
        sum += x;
    }
    REQUIRE(in_order);
    REQUIRE(sum == long{kItems} * (kItems + 1) / 2);
    REQUIRE(wait_child(producer) == 0);
}

TEST_CASE("Condition: wait times out, notify_all wakes every waiting process", "[sync][condition]") {
    mproc::Condition cond(mproc::Lock{});
    {
        std::unique_lock<mproc::Condition> g(cond);
        REQUIRE_FALSE(cond.wait(g, 20ms));
        REQUIRE_FALSE(cond.wait_for(g, [] { return false; }, 20ms));
    }
    REQUIRE_THROWS_AS(cond.wait(Duration(0)), mproc::ValueError);
    REQUIRE_THROWS_AS(cond.notify(), mproc::ValueError);

    mproc::Value<int> flag(0);
    mproc::Semaphore waiting(0);
    std::vector<pid_t> pids;
    for (int i = 0; i < 3; ++i)
        pids.push_back(fork_child([&] {
            std::unique_lock<mproc::Condition> g(cond);
            waiting.release();
            check(cond.wait_for(g, [&] { return flag.value() == 1; }, kLong), "not woken");
        }));
    for (int i = 0; i < 3; ++i) REQUIRE(waiting.acquire(kLong));
    {
        std::unique_lock<mproc::Condition> g(cond);  // every child is now in wait()
        flag.value() = 1;
        cond.notify_all();
    }
    for (pid_t pid : pids) REQUIRE(wait_child(pid) == 0);
}

// ---- Semaphore ----------------------------------------------------------

TEST_CASE("Semaphore(2) never lets more than 2 processes in", "[sync][semaphore]") {
    mproc::Semaphore sem(2);
    struct Stats {
        int inside, max_inside, entries;
    };
    mproc::Value<Stats> stats(Stats{});
    std::vector<pid_t> pids;
    for (int p = 0; p < 4; ++p)
        pids.push_back(fork_child([&] {
            for (int i = 0; i < 500; ++i) {
                check(sem.acquire(kLong), "semaphore acquire timed out");
                {
                    auto g = stats.get_lock();
                    Stats& s = stats.value();
                    ++s.inside;
                    ++s.entries;
                    if (s.inside > s.max_inside) s.max_inside = s.inside;
                }
                for (int k = 0; k < 200; ++k) std::atomic_signal_fence(std::memory_order_seq_cst);
                {
                    auto g = stats.get_lock();
                    --stats.value().inside;
                }
                sem.release();
            }
        }));
    for (pid_t pid : pids) REQUIRE(wait_child(pid) == 0);
    Stats s = stats.load();
    REQUIRE(s.entries == 2000);
    REQUIRE(s.inside == 0);
    REQUIRE(s.max_inside >= 1);
    REQUIRE(s.max_inside <= 2);
    REQUIRE(sem.get_value() == 2);
}

TEST_CASE("Semaphore acquire times out, release wakes a waiting process", "[sync][semaphore]") {
    mproc::Semaphore sem(0);
    REQUIRE_FALSE(sem.acquire(Duration(0)));
    REQUIRE_FALSE(sem.acquire(20ms));
    REQUIRE_FALSE(sem.try_acquire());
    mproc::Event started;
    pid_t pid = fork_child([&] {
        started.set();
        check(sem.acquire(kLong), "never woken");
    });
    REQUIRE(started.wait(kLong));
    sem.release();
    REQUIRE(wait_child(pid) == 0);
    REQUIRE(sem.get_value() == 0);
}

TEST_CASE("Semaphore: locked() is true exactly when acquire would block", "[sync][semaphore]") {
    mproc::Semaphore sem(1);
    REQUIRE_FALSE(sem.locked());
    REQUIRE(sem.acquire(Duration(0)));
    REQUIRE(sem.locked());
    pid_t pid = fork_child([&] { check(sem.locked(), "locked() false in another process"); });
    REQUIRE(wait_child(pid) == 0);
    sem.release(2);
    REQUIRE_FALSE(sem.locked());
    REQUIRE(sem.get_value() == 2);
    REQUIRE_THROWS_AS(mproc::Semaphore(0x80000000u), mproc::ValueError);
}

TEST_CASE("BoundedSemaphore over-release throws and changes nothing", "[sync][semaphore]") {
    mproc::BoundedSemaphore sem(2);
    REQUIRE_THROWS_AS(sem.release(), mproc::ValueError);
    REQUIRE(sem.get_value() == 2);
    REQUIRE(sem.acquire());
    sem.release();
    REQUIRE_THROWS_AS(sem.release(), mproc::ValueError);
    REQUIRE(sem.acquire());
    REQUIRE(sem.acquire());
    REQUIRE_THROWS_AS(sem.release(3), mproc::ValueError);
    REQUIRE(sem.get_value() == 0);
    pid_t pid = fork_child([&] { sem.release(2); });
    REQUIRE(wait_child(pid) == 0);
    REQUIRE(sem.get_value() == 2);
}

// ---- Event --------------------------------------------------------------

TEST_CASE("Event wakes waiters in 3 other processes", "[sync][event]") {
    mproc::Event ev;
    mproc::Barrier ready(4);
    std::vector<pid_t> pids;
    for (int i = 0; i < 3; ++i)
        pids.push_back(fork_child([&] {
            ready.wait(kLong);
            check(ev.wait(kLong), "event never seen");
            check(ev.is_set(), "woken but not set");
        }));
    ready.wait(kLong);
    ev.set();
    for (pid_t pid : pids) REQUIRE(wait_child(pid) == 0);
}

TEST_CASE("Event wait times out, clear resets it", "[sync][event]") {
    mproc::Event ev;
    REQUIRE_FALSE(ev.is_set());
    REQUIRE_FALSE(ev.wait(Duration(0)));
    REQUIRE_FALSE(ev.wait(20ms));
    ev.set();
    REQUIRE(ev.wait(Duration(0)));
    REQUIRE(ev.wait());
    ev.clear();
    REQUIRE_FALSE(ev.is_set());
    REQUIRE_FALSE(ev.wait(10ms));
}

// ---- Barrier ------------------------------------------------------------

TEST_CASE("Barrier(4) reused 1000 times by 4 processes", "[sync][barrier]") {
    constexpr int kRounds = 1000, kParties = 4;
    mproc::Barrier bar(kParties);
    mproc::Array<int> round_of(kParties);      // last round each party entered
    mproc::Array<int> index_sum(kRounds);      // sum of indices per round: 0+1+2+3
    auto party = [&](int me) {
        for (int r = 0; r < kRounds; ++r) {
            std::atomic_ref<int>(round_of[me]).store(r);
            unsigned idx = bar.wait(kLong);
            check(idx < kParties, "index out of range");
            std::atomic_ref<int>(index_sum[r]).fetch_add(static_cast<int>(idx));
            for (int q = 0; q < kParties; ++q)
                check(std::atomic_ref<int>(round_of[q]).load() >= r, "passed before all arrived");
        }
    };
    std::vector<pid_t> pids;
    for (int p = 1; p < kParties; ++p) pids.push_back(fork_child([&, p] { party(p); }));
    party(0);
    for (pid_t pid : pids) REQUIRE(wait_child(pid) == 0);
    for (int r = 0; r < kRounds; ++r) REQUIRE(index_sum[r] == 0 + 1 + 2 + 3);
    REQUIRE(bar.n_waiting() == 0);
    REQUIRE_FALSE(bar.broken());
}

TEST_CASE("Barrier: a timed-out wait breaks it for everyone until reset", "[sync][barrier]") {
    mproc::Barrier bar(3);
    REQUIRE(bar.parties() == 3);
    mproc::Event child_waiting;
    pid_t pid = fork_child([&] {
        child_waiting.set();
        try {
            bar.wait(kLong);
        } catch (const mproc::BrokenBarrierError&) {
            ::_exit(7);  // the expected outcome
        }
    });
    REQUIRE(child_waiting.wait(kLong));
    REQUIRE_THROWS_AS(bar.wait(50ms), mproc::BrokenBarrierError);
    REQUIRE(wait_child(pid) == 7);
    REQUIRE(bar.broken());
    REQUIRE_THROWS_AS(bar.wait(Duration(0)), mproc::BrokenBarrierError);
    bar.reset();
    REQUIRE_FALSE(bar.broken());
    REQUIRE(bar.n_waiting() == 0);
}

void barrier_default_timeout_child(mproc::Barrier bar) {
    try {
        bar.wait();  // no timeout here: the creator's default must apply
    } catch (const mproc::BrokenBarrierError&) {
        std::exit(7);
    }
}

TEST_CASE("Barrier: its default timeout travels to spawned and forkserver children", "[sync][barrier][process]") {
    for (auto method : {mproc::StartMethod::spawn, mproc::StartMethod::forkserver}) {
        mproc::Barrier bar(2, {}, 100ms);
        mproc::Process p(barrier_default_timeout_child, bar);
        p.start_method(method).start();
        REQUIRE(p.join(kLong));
        REQUIRE(p.exitcode() == 7);
        REQUIRE(bar.broken());
    }
}

TEST_CASE("Barrier: abort() breaks waiters, the action runs once per round", "[sync][barrier]") {
    mproc::Value<int> actions(0);
    mproc::Barrier bar(2, [&] { actions.value() += 1; });
    pid_t pid = fork_child([&] {
        for (int i = 0; i < 10; ++i) bar.wait(kLong);
    });
    for (int i = 0; i < 10; ++i) bar.wait(kLong);
    REQUIRE(wait_child(pid) == 0);
    REQUIRE(actions.load() == 10);

    mproc::Event waiting;
    pid = fork_child([&] {
        waiting.set();
        try {
            bar.wait(kLong);
        } catch (const mproc::BrokenBarrierError&) {
            ::_exit(7);
        }
    });
    REQUIRE(waiting.wait(kLong));
    bar.abort();
    REQUIRE(wait_child(pid) == 7);
    REQUIRE_THROWS_AS(bar.wait(kLong), mproc::BrokenBarrierError);
    REQUIRE_THROWS_AS(mproc::Barrier(0), mproc::ValueError);
}
