// Chaos: Lock and RLock holders and waiters, Condition, Event and Barrier
// users, killed at random. Waits have no timeouts where a lost wake-up
// would show as a hang; "wrong" counts broken mutual exclusion and
// impossible states.
#include <catch2/catch.hpp>

#include <mproc/shared_memory.hpp>
#include <mproc/sync.hpp>

#include <atomic>

#include <unistd.h>

#include "harness.hpp"

using mproc::Duration;

namespace {

constexpr int kRoles = 4;

struct SyncShared {
    std::uint64_t ops[kRoles];
    std::int32_t holder;       // pid inside the critical section, 0 if none
    std::uint64_t value;       // guarded state (Condition)
    std::uint32_t violations;  // counted by the roles themselves
};

template <class T>
std::atomic_ref<T> ref(T& x) {
    return std::atomic_ref<T>(x);
}

// One lock user: holds the lock for a short critical section; a mix of
// blocking and timed acquires; RLocks are taken twice.
template <class L>
void locker(L& lock, SyncShared& s, int role, bool recursive) {
    const std::int32_t me = ::getpid();
    for (std::uint64_t i = 0;; ++i) {
        const bool timed = (i % 3) == 0;
        if (timed ? !lock.acquire(Duration(0.5)) : !lock.acquire()) {
            ref(s.ops[role]).fetch_add(1);
            continue;
        }
        if (recursive) lock.acquire();
        // The previous holder may have died inside: then owner_died() says so.
        const std::int32_t prev = ref(s.holder).exchange(me);
        if (prev != 0 && !lock.owner_died()) ref(s.violations).fetch_add(1);
        for (int k = 0; k < 100; ++k) std::atomic_signal_fence(std::memory_order_seq_cst);
        if (ref(s.holder).exchange(0) != me) ref(s.violations).fetch_add(1);
        if (recursive) lock.release();
        lock.release();
        ref(s.ops[role]).fetch_add(1);
    }
}

template <class L>
chaos::Row run_locks(const char* name, long kills, bool recursive) {
    chaos::Scope scope(name);
    chaos::Row& row = scope.row();
    mproc::Value<SyncShared> sh(SyncShared{});
    SyncShared& s = sh.value();
    L lock;
    std::vector<chaos::Role> roles;
    for (int r = 0; r < kRoles; ++r)
        roles.push_back({[&, r] { return chaos::fork_role([&, r] { locker(lock, s, r, recursive); }); },
                         [&] {
                             // A victim inside leaves its pid as holder; the next
                             // holder sees owner_died(). One outside leaves 0.
                         }});
    std::vector<chaos::Child> running;
    for (auto& r : roles) running.push_back(r.start());
    std::mt19937 rng(4242);
    chaos::kill_loop(roles, running, s.ops, chaos::scaled(kills), rng, row, 200);
    chaos::kill_all(running);
    row.wrong += ref(s.violations).load();
    // The lock is still usable and free.
    if (!lock.acquire(Duration(5))) ++row.hangs;
    else lock.release();
    return scope.finish();
}

}  // namespace

TEST_CASE("chaos: Lock holders and waiters", "[chaos][lock]") {
    chaos::require_clean(run_locks<mproc::Lock>("Lock holders + waiters (fork)", 12000, false));
}

TEST_CASE("chaos: RLock holders and waiters", "[chaos][lock]") {
    chaos::require_clean(run_locks<mproc::RLock>("RLock holders + waiters (fork)", 6000, true));
}

TEST_CASE("chaos: Condition notifiers and waiters", "[chaos][condition]") {
    // Each role bumps the guarded value, notifies one waiter, then waits
    // (no timeout) until someone else has bumped it: with every role doing
    // so, a lost notification shows as all of them asleep.
    chaos::Scope scope("Condition notify/wait (fork)");
    chaos::Row& row = scope.row();
    mproc::Value<SyncShared> sh(SyncShared{});
    SyncShared& s = sh.value();
    mproc::Condition cond;
    auto user = [&](int role) {
        for (;;) {
            std::unique_lock<mproc::Condition> g(cond);
            const std::uint64_t mine = ++s.value;
            cond.notify((role & 1) ? 1 : 2);
            cond.wait_for(g, [&] { return s.value != mine; });
            ref(s.ops[role]).fetch_add(1);
        }
    };
    std::vector<chaos::Role> roles;
    for (int r = 0; r < kRoles; ++r)
        roles.push_back({[&, r] { return chaos::fork_role([&, r] { user(r); }); }});
    std::vector<chaos::Child> running;
    for (auto& r : roles) running.push_back(r.start());
    std::mt19937 rng(99);
    chaos::kill_loop(roles, running, s.ops, chaos::scaled(6000), rng, row, 30);
    chaos::kill_all(running);
    chaos::require_clean(scope.finish());
}

TEST_CASE("chaos: Event setters and waiters", "[chaos][event]") {
    // Role 0 opens and closes a gate (set, wait for every waiter to pass,
    // clear); the others wait on it with no timeout. A waiter asleep while
    // the gate is open is a hang.
    chaos::Scope scope("Event set/clear/wait (fork)");
    chaos::Row& row = scope.row();
    mproc::Value<SyncShared> sh(SyncShared{});
    SyncShared& s = sh.value();
    mproc::Array<std::uint64_t> seen(kRoles);
    mproc::Event gate;
    auto setter = [&] {
        for (;;) {
            const std::uint64_t gen = ref(s.value).fetch_add(1) + 1;
            gate.set();
            // Until each waiter saw this generation, or a short while (a
            // waiter being restarted has not seen it yet).
            auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(20);
            for (int r = 1; r < kRoles; ++r)
                while (ref(seen[static_cast<std::size_t>(r)]).load() < gen && std::chrono::steady_clock::now() < until)
                    ::sched_yield();
            gate.clear();
            ref(s.ops[0]).fetch_add(1);
        }
    };
    auto waiter = [&](int role) {
        for (;;) {
            gate.wait();
            const std::uint64_t gen = ref(s.value).load();
            if (gen > ref(seen[static_cast<std::size_t>(role)]).load()) {
                ref(seen[static_cast<std::size_t>(role)]).store(gen);
                ref(s.ops[role]).fetch_add(1);
            }
            while (gate.is_set() && ref(s.value).load() == gen) ::sched_yield();
        }
    };
    std::vector<chaos::Role> roles;
    roles.push_back({[&] { return chaos::fork_role(setter); }});
    for (int r = 1; r < kRoles; ++r)
        roles.push_back({[&, r] { return chaos::fork_role([&, r] { waiter(r); }); }});
    std::vector<chaos::Child> running;
    for (auto& r : roles) running.push_back(r.start());
    std::mt19937 rng(5);
    chaos::kill_loop(roles, running, s.ops, chaos::scaled(6000), rng, row, 20);
    chaos::kill_all(running);
    chaos::require_clean(scope.finish());
}

TEST_CASE("chaos: Barrier parties", "[chaos][barrier]") {
    // Three parties loop on wait() with no timeout; a killed party is
    // replaced at once, so every round completes (a killed party that had
    // arrived counts). A party asleep after its round completed is a hang.
    constexpr int kParties = 3;
    chaos::Scope scope("Barrier parties (fork)");
    chaos::Row& row = scope.row();
    mproc::Value<SyncShared> sh(SyncShared{});
    SyncShared& s = sh.value();
    mproc::Barrier bar(kParties);
    auto party = [&](int role) {
        for (;;) {
            try {
                if (bar.wait() >= kParties) ref(s.violations).fetch_add(1);
            } catch (const mproc::BrokenBarrierError&) {
                ref(s.violations).fetch_add(1);  // nothing here breaks it
            }
            ref(s.ops[role]).fetch_add(1);
        }
    };
    std::vector<chaos::Role> roles;
    for (int r = 0; r < kParties; ++r)
        roles.push_back({[&, r] { return chaos::fork_role([&, r] { party(r); }); }});
    std::vector<chaos::Child> running;
    for (auto& r : roles) running.push_back(r.start());
    std::mt19937 rng(31);
    chaos::kill_loop(roles, running, s.ops, chaos::scaled(4000), rng, row, 30);
    chaos::kill_all(running);
    row.wrong += ref(s.violations).load();
    chaos::require_clean(scope.finish());
}
