// The ring sides' lock (lib/sync/owner_lock.hpp) across real processes:
// mutual exclusion under contention (its sleepers are woken by unlocks),
// and every way its owner can be gone — killed holding it while another
// process sleeps waiting, exited holding it and not yet reaped (a zombie),
// a thread id that names a live thread with another start time (a reused
// id) — each turning into owner_died for the next locker, never a hang;
// and the one wake an unlock may miss (a waiter flagging itself between
// the owner's load and its plain store) costs a slice, not a hang.
#include <catch2/catch.hpp>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mproc/detail/fault.hpp"
#include "mproc/detail/segment.hpp"
#include "os/os.hpp"
#include "support.hpp"
#include "sync/owner_lock.hpp"

namespace {

using mproc::detail::OwnerLock;
using mproc::detail::Segment;
using mproc::os::Deadline;
using mproc::os::LockStatus;
using mproc_test::fork_child;
using mproc_test::wait_child;

struct Shared {
    OwnerLock lock;
    std::atomic<int> stage{0};
    long counter = 0;  // guarded by lock, plain on purpose
};

struct SharedBlock {
    std::shared_ptr<Segment> seg = Segment::anonymous(sizeof(Shared), "mproc-test-owner-lock");
    Shared* s = new (seg->data()) Shared();
};

const Deadline kBound = Deadline::after(mproc::Duration(60));

void wait_stage(const Shared* s, int at_least) {
    while (s->stage.load(std::memory_order_acquire) < at_least) mproc::os::yield_cpu();
}

// A thread that lives until let go, and its lock identity.
class LiveThread {
public:
    LiveThread()
        : t_([this] {
              std::unique_lock g(m_);
              id_ = mproc::os::thread_identity();
              cv_.notify_all();
              cv_.wait(g, [this] { return done_; });
          }) {
        std::unique_lock g(m_);
        cv_.wait(g, [this] { return id_ != 0; });
    }
    ~LiveThread() {
        {
            std::lock_guard g(m_);
            done_ = true;
        }
        cv_.notify_all();
        t_.join();
    }
    std::uint64_t identity() const { return id_; }

private:
    std::mutex m_;
    std::condition_variable cv_;
    std::uint64_t id_ = 0;
    bool done_ = false;
    std::thread t_;
};

// Puts a chosen word into a free lock, as an owner that took it would.
void forge_owner(OwnerLock& lock, std::uint64_t word) {
    static_assert(sizeof(OwnerLock) == sizeof(std::uint64_t));
    std::memcpy(static_cast<void*>(&lock), &word, sizeof word);
}

}  // namespace

TEST_CASE("OwnerLock: 4 processes incrementing under it lose no update", "[owner_lock]") {
    SharedBlock b;
    constexpr int kProcs = 4, kEach = 50'000;
    std::vector<pid_t> kids;
    for (int p = 0; p < kProcs; ++p)
        kids.push_back(fork_child([&] {
            for (int i = 0; i < kEach; ++i) {
                if (b.s->lock.lock(kBound) != LockStatus::acquired) std::_Exit(3);
                const long v = b.s->counter;
                if (i % 64 == 0) mproc::os::yield_cpu();  // a holder preempted: others must sleep
                b.s->counter = v + 1;
                b.s->lock.unlock();
            }
        }));
    for (pid_t k : kids) CHECK(wait_child(k) == 0);
    CHECK(b.s->counter == long{kProcs} * kEach);
    CHECK(b.s->lock.snapshot().owner_tid == 0);
}

TEST_CASE("OwnerLock: an owner killed holding it hands it, marked, to a process asleep waiting",
          "[owner_lock][crash]") {
    SharedBlock b;
    const pid_t holder = fork_child([&] {
        REQUIRE(b.s->lock.lock(kBound) == LockStatus::acquired);
        b.s->stage.store(1, std::memory_order_release);
        for (;;) ::pause();
    });
    wait_stage(b.s, 1);
    const pid_t waiter = fork_child([&] {
        if (b.s->lock.lock(kBound) != LockStatus::owner_died) std::_Exit(3);
        b.s->lock.unlock();
    });
    // The waiter sleeps in the kernel, flagged in the word.
    REQUIRE(mproc_test::wait_asleep(waiter, std::chrono::steady_clock::now() + std::chrono::seconds(20)));
    REQUIRE(b.s->lock.snapshot().waiters);
    ::kill(holder, SIGKILL);
    CHECK(wait_child(holder) == -SIGKILL);
    CHECK(wait_child(waiter) == 0);
    CHECK(b.s->lock.lock(kBound) == LockStatus::acquired);
    b.s->lock.unlock();
}

TEST_CASE("OwnerLock: an owner that exited holding it, not yet reaped, counts as dead", "[owner_lock][crash]") {
    SharedBlock b;
    const pid_t holder = fork_child([&] { REQUIRE(b.s->lock.lock(kBound) == LockStatus::acquired); });
    // Not reaped: wait until it is a zombie, then lock.
    siginfo_t info{};
    REQUIRE(::waitid(P_PID, static_cast<id_t>(holder), &info, WEXITED | WNOWAIT) == 0);
    CHECK(b.s->lock.try_lock() == LockStatus::owner_died);
    b.s->lock.unlock();
    CHECK(wait_child(holder) == 0);
}

TEST_CASE("OwnerLock: a live thread id with another start time is a reused id: its lock is taken over",
          "[owner_lock]") {
    SharedBlock b;
    LiveThread live;
    // The real owner: alive, so the lock stays held.
    forge_owner(b.s->lock, live.identity());
    CHECK(b.s->lock.try_lock() == LockStatus::timed_out);
    CHECK(b.s->lock.lock(Deadline::after(mproc::Duration(0.05))) == LockStatus::timed_out);
    // The same tid, started at another time: a dead owner whose id was given again.
    forge_owner(b.s->lock, live.identity() + (std::uint64_t{1} << 32));
    CHECK(b.s->lock.lock(kBound) == LockStatus::owner_died);
    b.s->lock.unlock();
}

TEST_CASE("OwnerLock: a waiter that flags itself while the owner is between its load and its store gets the lock",
          "[owner_lock]") {
    SharedBlock b;
    const pid_t holder = fork_child([&] {
        if (b.s->lock.lock(kBound) != LockStatus::acquired) std::_Exit(3);
        mproc::detail::arm_fault("lock.releasing:1:stop");
        b.s->stage.store(1, std::memory_order_release);
        wait_stage(b.s, 2);
        b.s->lock.unlock();  // stops after finding no waiter flagged; stores 0 on SIGCONT
    });
    wait_stage(b.s, 1);
    b.s->stage.store(2, std::memory_order_release);
    int st = 0;
    REQUIRE(::waitpid(holder, &st, WUNTRACED) == holder);
    REQUIRE(WIFSTOPPED(st));
    // The holder has looked: no W. Now a waiter flags W and sleeps; the
    // holder's store then frees the lock without waking it.
    const pid_t waiter = fork_child([&] {
        // Woken or not, it must not sleep until its deadline (a slice: 1 ms).
        const Deadline d = Deadline::after(mproc::Duration(20));
        if (b.s->lock.lock(d) != LockStatus::acquired || d.expired()) std::_Exit(4);
        b.s->lock.unlock();
    });
    // Asleep in the kernel with W set: only a wake (or its slice) moves it.
    REQUIRE(mproc_test::wait_asleep(waiter, std::chrono::steady_clock::now() + std::chrono::seconds(20)));
    REQUIRE(b.s->lock.snapshot().waiters);
    ::kill(holder, SIGCONT);
    CHECK(wait_child(holder) == 0);
    CHECK(wait_child(waiter) == 0);  // 4: it slept until its deadline
    CHECK(b.s->lock.snapshot().owner_tid == 0);
}

TEST_CASE("OwnerLock: re-locking by its owner says would_deadlock", "[owner_lock]") {
    SharedBlock b;
    REQUIRE(b.s->lock.lock(kBound) == LockStatus::acquired);
    CHECK(b.s->lock.try_lock() == LockStatus::would_deadlock);
    CHECK(b.s->lock.lock(kBound) == LockStatus::would_deadlock);
    b.s->lock.unlock();
    CHECK(b.s->lock.snapshot().owner_tid == 0);
}

TEST_CASE("OwnerLock: a forked child has an identity of its own", "[owner_lock]") {
    SharedBlock b;
    REQUIRE(b.s->lock.lock(kBound) == LockStatus::acquired);
    // The child is not the owner: its lock waits (and times out), not would_deadlock.
    const pid_t kid = fork_child([&] {
        if (b.s->lock.try_lock() != LockStatus::timed_out) std::_Exit(3);
        if ((mproc::os::thread_identity() & 0x3fffffffu) != static_cast<std::uint64_t>(::getpid())) std::_Exit(4);
    });
    CHECK(wait_child(kid) == 0);
    b.s->lock.unlock();
}
