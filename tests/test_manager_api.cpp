// Manager proxies: the whole Python API (list, dict, sync objects), each
// checked locally, from a forked child and over a connected manager; and
// shutdown waking waiters in other processes.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <ranges>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <signal.h>

#include "mproc/manager.hpp"
#include "mproc/process.hpp"

using namespace std::chrono_literals;

namespace {

constexpr auto kLong = mproc::Duration(60);

void check_list_api(mproc::Manager& mgr) {
    auto l = mgr.list<int>(std::vector<int>{5, 3, 9, 3, 1});
    REQUIRE(l.count(3) == 2);
    REQUIRE(l.count(4) == 0);
    REQUIRE(l.index(3) == 1);
    REQUIRE(l.index(3, 2) == 3);
    REQUIRE(l.index(3, -2) == 3);
    REQUIRE_THROWS_AS(l.index(3, 4), mproc::ValueError);
    REQUIRE_THROWS_AS(l.index(3, 0, 1), mproc::ValueError);
    REQUIRE_THROWS_AS(l.index(42), mproc::ValueError);
    l.remove(3);  // the first one
    REQUIRE(l.snapshot() == std::vector<int>{5, 9, 3, 1});
    REQUIRE_THROWS_AS(l.remove(42), mproc::ValueError);
    l.reverse();
    REQUIRE(l.snapshot() == std::vector<int>{1, 3, 9, 5});
    l.sort();
    REQUIRE(l.snapshot() == std::vector<int>{1, 3, 5, 9});
    l.sort(std::greater<>());
    REQUIRE(l.snapshot() == std::vector<int>{9, 5, 3, 1});
    l += std::vector<long>{7, 8};  // any convertible range
    l += {0};
    REQUIRE(l.copy() == std::vector<int>{9, 5, 3, 1, 7, 8, 0});
    std::vector<int> seen;
    for (int x : l) seen.push_back(x);
    REQUIRE(seen == std::vector<int>{9, 5, 3, 1, 7, 8, 0});
    // Iteration is over a snapshot: changes during the loop do not show.
    seen.clear();
    for (int x : l) {
        seen.push_back(x);
        if (seen.size() == 1) l.append(100);
    }
    REQUIRE(seen.size() == 7);
    REQUIRE(l.size() == 8);
    l.clear();
    REQUIRE(l.empty());
    for (int x : l) FAIL("an empty list has no items, got " << x);
    l.sort();
    l.reverse();
    REQUIRE(l.empty());

    // Sort is stable, with any comparator; strings and structured items.
    auto words = mgr.list<std::pair<int, std::string>>();
    words.extend(std::vector<std::pair<int, std::string>>{{2, "b"}, {1, "z"}, {2, "a"}, {1, "y"}});
    words.sort([](const auto& a, const auto& b) { return a.first < b.first; });
    REQUIRE(words.snapshot() ==
            std::vector<std::pair<int, std::string>>{{1, "z"}, {1, "y"}, {2, "b"}, {2, "a"}});
    auto big = mgr.list<long>(std::views::iota(0L, 5000L) | std::views::transform([](long i) { return (i * 7919) % 5000; }));
    big.sort();
    const auto sorted = big.snapshot();
    REQUIRE(sorted.size() == 5000);
    for (long i = 0; i < 5000; ++i) REQUIRE(sorted[static_cast<std::size_t>(i)] == i);
    REQUIRE(big.index(4999) == 4999);
    big += big;
    REQUIRE(big.size() == 10000);
    REQUIRE(big.count(17) == 2);
}

void check_dict_api(mproc::Manager& mgr) {
    auto d = mgr.dict<std::string, int>();
    // Insertion order, as Python's dict: replacing keeps the place,
    // deleting and re-inserting moves the key to the end.
    for (const char* k : {"c", "a", "d", "b"}) d.set(k, static_cast<int>(k[0]));
    d.set("a", 1);
    REQUIRE(d.keys() == std::vector<std::string>{"c", "a", "d", "b"});
    REQUIRE(d.erase("c"));
    d.set("c", 3);
    REQUIRE(d.keys() == std::vector<std::string>{"a", "d", "b", "c"});
    REQUIRE(d.values() == std::vector<int>{1, 'd', 'b', 3});
    std::vector<std::pair<std::string, int>> seen;
    for (const auto& [k, v] : d) seen.emplace_back(k, v);
    REQUIRE(seen == d.items());
    // popitem is LIFO.
    REQUIRE(d.popitem() == std::pair<std::string, int>{"c", 3});
    REQUIRE(d.popitem() == std::pair<std::string, int>{"b", 'b'});
    d.set("e", 5);
    REQUIRE(d.keys() == std::vector<std::string>{"a", "d", "e"});
    REQUIRE(d.popitem().first == "e");
    REQUIRE(d.pop("d", -1) == 'd');
    REQUIRE(d.pop("d", -1) == -1);
    REQUIRE(d.popitem().first == "a");
    REQUIRE_THROWS_AS(d.popitem(), mproc::KeyError);
    REQUIRE(d.empty());
    // |= takes any convertible range, or another dict.
    d |= std::map<std::string, long>{{"x", 10}, {"y", 20}};
    d |= {{"z", 30}};
    auto other = mgr.dict<std::string, int>(std::vector<std::pair<std::string, int>>{{"w", 40}, {"x", 11}});
    d |= other;
    REQUIRE(d.items() == std::vector<std::pair<std::string, int>>{{"x", 11}, {"y", 20}, {"z", 30}, {"w", 40}});
    // copy(): a plain map, of the kind asked for.
    const std::map<std::string, int> m = d.copy();
    REQUIRE(m.size() == 4);
    REQUIRE(m.at("w") == 40);
    const auto um = d.copy<std::unordered_map<std::string, int>>();
    REQUIRE(um.at("x") == 11);
    const auto ordered = d.copy<std::vector<std::pair<std::string, int>>>();
    REQUIRE(ordered.front().first == "x");
    // fromkeys: a new dict in the same manager.
    auto f = d.fromkeys(std::vector<std::string>{"p", "q", "p"}, 7);
    REQUIRE(f.items() == std::vector<std::pair<std::string, int>>{{"p", 7}, {"q", 7}});
    auto g = d.fromkeys({"r"});
    REQUIRE(g.at("r") == 0);
    REQUIRE(d.size() == 4);  // untouched
    REQUIRE(d.setdefault("x", 99) == 11);
    REQUIRE(d.setdefault("new", 99) == 99);
    REQUIRE(d.keys().back() == "new");

    // Order survives growth and heavy deletion (the table is rebuilt).
    auto n = mgr.dict<int, int>();
    for (int i = 0; i < 3000; ++i) n.set(i, i);
    for (int i = 0; i < 3000; i += 3) REQUIRE(n.erase(i));
    for (int i = 0; i < 100; ++i) n.set(10000 + i, i);
    const auto ks = n.keys();
    REQUIRE(ks.size() == 2000 + 100);
    std::vector<int> want;
    for (int i = 0; i < 3000; ++i)
        if (i % 3) want.push_back(i);
    for (int i = 0; i < 100; ++i) want.push_back(10000 + i);
    REQUIRE(ks == want);
    for (int i = 0; i < 2100; ++i) REQUIRE(n.popitem().first == want[want.size() - 1 - static_cast<std::size_t>(i)]);
    REQUIRE(n.empty());
}

void check_sync_api(mproc::Manager& mgr) {
    auto lock = mgr.Lock();
    REQUIRE_FALSE(lock.locked());
    REQUIRE(lock.acquire());
    REQUIRE(lock.locked());
    REQUIRE_FALSE(lock.owner_died());
    REQUIRE_FALSE(lock.acquire(mproc::Duration(0)));  // not re-entrant: a bounded wait says no
    lock.release();
    REQUIRE_THROWS_AS(lock.release(), mproc::ValueError);
    { std::lock_guard<mproc::LockProxy> g(lock); REQUIRE(lock.locked()); }
    REQUIRE_FALSE(lock.locked());

    auto rlock = mgr.RLock();
    REQUIRE(rlock.acquire());
    REQUIRE(rlock.acquire());
    REQUIRE(rlock.is_owned());
    rlock.release();
    REQUIRE(rlock.is_owned());
    rlock.release();
    REQUIRE_FALSE(rlock.is_owned());

    auto sem = mgr.Semaphore(2);
    REQUIRE(sem.acquire());
    REQUIRE(sem.acquire(mproc::Duration(0)));
    REQUIRE(sem.locked());
    REQUIRE_FALSE(sem.acquire(mproc::Duration(0.01)));
    sem.release(2);
    REQUIRE(sem.get_value() == 2);
    auto bounded = mgr.BoundedSemaphore(1);
    REQUIRE_THROWS_AS(bounded.release(), mproc::ValueError);
    REQUIRE(bounded.acquire());
    bounded.release();

    auto ev = mgr.Event();
    REQUIRE_FALSE(ev.is_set());
    REQUIRE_FALSE(ev.wait(mproc::Duration(0.01)));
    ev.set();
    REQUIRE(ev.wait());
    ev.clear();
    REQUIRE_FALSE(ev.is_set());

    auto cond = mgr.Condition();
    REQUIRE_THROWS_AS(cond.wait(mproc::Duration(0)), mproc::ValueError);  // lock not held
    {
        std::unique_lock<mproc::ConditionProxy> g(cond);
        REQUIRE_FALSE(cond.wait(mproc::Duration(0.01)));  // nobody notifies: times out, lock held again
        cond.notify();  // nobody waits: nothing happens
        REQUIRE_FALSE(cond.wait_for([] { return false; }, mproc::Duration(0.01)));
    }
    auto cl = mgr.Condition(mgr.Lock());
    { std::lock_guard<mproc::ConditionProxy> g(cl); }

    auto bar = mgr.Barrier(1);
    REQUIRE(bar.parties() == 1);
    REQUIRE(bar.wait() == 0);
    auto two = mgr.Barrier(2);
    REQUIRE_THROWS_AS(two.wait(mproc::Duration(0.01)), mproc::BrokenBarrierError);  // a timeout breaks it
    REQUIRE(two.broken());
    REQUIRE_THROWS_AS(two.wait(), mproc::BrokenBarrierError);
    two.reset();
    REQUIRE_FALSE(two.broken());
    two.abort();
    REQUIRE(two.broken());

    // Published and found by name, as every object.
    mgr.publish("the-lock", lock);
    mgr.publish("the-cond", cond);
    auto found = mgr.lookup<mproc::LockProxy>("the-lock");
    REQUIRE(found.acquire());
    REQUIRE(lock.locked());
    found.release();
    REQUIRE_THROWS_AS(mgr.lookup<mproc::RLockProxy>("the-lock"), mproc::SerializationError);
    auto fc = mgr.lookup<mproc::ConditionProxy>("the-cond");
    { std::lock_guard<mproc::ConditionProxy> g(fc); fc.notify_all(); }
}

// A child that works with the sync objects while the parent does too.
void sync_partner(mproc::LockProxy lock, mproc::SemaphoreProxy sem, mproc::EventProxy go,
                  mproc::ConditionProxy cond, mproc::ListProxy<int> box, mproc::BarrierProxy bar,
                  mproc::ValueProxy<long> counter) {
    sem.release();                          // 1: "I am here"
    if (!go.wait(kLong)) throw std::runtime_error("never told to go");
    for (int i = 0; i < 500; ++i) {         // 2: a counter under the lock
        std::lock_guard<mproc::LockProxy> g(lock);
        counter.set(counter.get() + 1);
    }
    {                                       // 3: a producer on a condition
        std::lock_guard<mproc::ConditionProxy> g(cond);
        box.append(42);
        cond.notify();
    }
    bar.wait(kLong);                        // 4: both meet
}

}  // namespace

TEST_CASE("Manager list: reverse, sort, index, count, remove, copy, += and iteration", "[manager][list]") {
    mproc::Manager mgr;
    check_list_api(mgr);
    mproc::Process p([](mproc::Manager* m) { check_list_api(*m); }, &mgr);
    p.start_method(mproc::StartMethod::fork).start();
    REQUIRE(p.join(kLong));
    REQUIRE(p.exitcode() == 0);
    auto remote = mproc::Manager::connect(mgr.serve("127.0.0.1:0", "lists"), "lists");
    check_list_api(remote);
}

TEST_CASE("Manager dict: insertion order, popitem, fromkeys, |=, copy and iteration", "[manager][dict]") {
    mproc::Manager mgr;
    check_dict_api(mgr);
    mproc::Process p([](mproc::Manager* m) { check_dict_api(*m); }, &mgr);
    p.start_method(mproc::StartMethod::fork).start();
    REQUIRE(p.join(kLong));
    REQUIRE(p.exitcode() == 0);
    auto remote = mproc::Manager::connect(mgr.serve("127.0.0.1:0", "dicts"), "dicts");
    check_dict_api(remote);
}

TEST_CASE("Manager sync objects: Lock, RLock, Semaphore, Event, Condition, Barrier", "[manager][sync]") {
    mproc::Manager mgr;
    check_sync_api(mgr);
    auto remote = mproc::Manager::connect(mgr.serve("127.0.0.1:0", "syncs"), "syncs");
    check_sync_api(remote);
}

namespace {
struct SyncSet {
    mproc::LockProxy lock;
    mproc::SemaphoreProxy sem;
    mproc::EventProxy go;
    mproc::ConditionProxy cond;
    mproc::ListProxy<int> box;
    mproc::BarrierProxy bar;
    mproc::ValueProxy<long> counter;
};

SyncSet make_sync_set(mproc::Manager& mgr) {
    auto lock = mgr.Lock();
    return {lock, mgr.Semaphore(0), mgr.Event(), mgr.Condition(), mgr.list<int>(), mgr.Barrier(2), mgr.Value<long>(0)};
}

void publish_sync_set(mproc::Manager& mgr, const SyncSet& s) {
    mgr.publish("lock", s.lock);
    mgr.publish("sem", s.sem);
    mgr.publish("go", s.go);
    mgr.publish("cond", s.cond);
    mgr.publish("box", s.box);
    mgr.publish("bar", s.bar);
    mgr.publish("counter", s.counter);
}

SyncSet lookup_sync_set(mproc::Manager& m) {
    return {m.lookup<mproc::LockProxy>("lock"),        m.lookup<mproc::SemaphoreProxy>("sem"),
            m.lookup<mproc::EventProxy>("go"),         m.lookup<mproc::ConditionProxy>("cond"),
            m.lookup<mproc::ListProxy<int>>("box"),    m.lookup<mproc::BarrierProxy>("bar"),
            m.lookup<mproc::ValueProxy<long>>("counter")};
}

// The parent's half of sync_partner's protocol.
void play_with_partner(SyncSet s) {
    REQUIRE(s.sem.acquire(kLong));
    {
        std::unique_lock<mproc::ConditionProxy> g(s.cond);
        s.go.set();
        for (int i = 0; i < 500; ++i) {
            std::lock_guard<mproc::LockProxy> lg(s.lock);
            s.counter.set(s.counter.get() + 1);
        }
        REQUIRE(s.cond.wait_for([&] { return !s.box.empty(); }, kLong));
    }
    REQUIRE(s.box.at(0) == 42);
    REQUIRE(s.bar.wait(kLong) < 2);
    REQUIRE(s.counter.get() == 1000);
}
}  // namespace

TEST_CASE("Manager sync objects across fork and spawn children", "[manager][sync][process]") {
    for (auto method : {mproc::StartMethod::fork, mproc::StartMethod::spawn}) {
        mproc::Manager mgr;
        SyncSet s = make_sync_set(mgr);
        mproc::Process p(sync_partner, s.lock, s.sem, s.go, s.cond, s.box, s.bar, s.counter);
        p.start_method(method).start();
        play_with_partner(s);
        REQUIRE(p.join(kLong));
        REQUIRE(p.exitcode() == 0);
    }
}

TEST_CASE("Connected manager sync objects: a spawned client and a local process share them",
          "[manager][sync][remote][process]") {
    mproc::Manager mgr;
    SyncSet s = make_sync_set(mgr);
    publish_sync_set(mgr, s);
    const std::string address = mgr.serve("127.0.0.1:0", "partners");
    // The partner reaches them over TCP; this process uses shared memory.
    mproc::Process p(
        [](std::string address) {
            auto m = mproc::Manager::connect(address, "partners");
            const SyncSet r = lookup_sync_set(m);
            sync_partner(r.lock, r.sem, r.go, r.cond, r.box, r.bar, r.counter);
        },
        address);
    p.start_method(mproc::StartMethod::spawn).start();
    play_with_partner(s);
    REQUIRE(p.join(kLong));
    REQUIRE(p.exitcode() == 0);

    // And the other way round: this process over TCP, the partner local.
    s.go.clear();
    s.box.clear();
    s.counter.set(0);
    s.bar.reset();
    auto m = mproc::Manager::connect(address, "partners");
    const SyncSet r = lookup_sync_set(m);
    mproc::Process q(sync_partner, s.lock, s.sem, s.go, s.cond, s.box, s.bar, s.counter);
    q.start_method(mproc::StartMethod::fork).start();
    play_with_partner(r);
    REQUIRE(q.join(kLong));
    REQUIRE(q.exitcode() == 0);
}

TEST_CASE("Manager Lock: a holder killed or disconnected releases it, and the next holder learns the owner died",
          "[manager][sync][crash][remote][process]") {
    mproc::Manager mgr;
    auto lock = mgr.Lock();
    mgr.publish("lock", lock);
    const std::string address = mgr.serve("127.0.0.1:0", "owners");
    auto remote = mproc::Manager::connect(address, "owners");
    auto rlock = remote.lookup<mproc::LockProxy>("lock");

    // A local holder killed with the lock held.
    {
        auto held = mgr.Event();
        mproc::Process p(
            [](mproc::LockProxy lock, mproc::EventProxy held) {
                lock.acquire();
                held.set();
                for (;;) ::pause();
            },
            lock, held);
        p.start_method(mproc::StartMethod::fork).start();
        REQUIRE(held.wait(kLong));
        REQUIRE_FALSE(rlock.acquire(mproc::Duration(0)));
        ::kill(static_cast<pid_t>(*p.pid()), SIGKILL);
        REQUIRE(p.join(kLong));
        REQUIRE(rlock.acquire(kLong));  // a remote acquirer takes it over
        REQUIRE(rlock.owner_died());
        rlock.release();
        REQUIRE(lock.acquire(mproc::Duration(0)));
        REQUIRE_FALSE(lock.owner_died());  // a clean hand-over after the repair
        lock.release();
    }
    // A remote holder (a client process) killed with the lock held.
    for (bool graceful : {false, true}) {
        auto held = mgr.Event(), go = mgr.Event();
        mgr.publish("held", held);
        mgr.publish("go", go);
        mproc::Process p(
            [](std::string address, bool graceful) {
                auto m = mproc::Manager::connect(address, "owners");
                auto lock = m.lookup<mproc::LockProxy>("lock");
                lock.acquire();
                m.lookup<mproc::EventProxy>("held").set();
                if (graceful) {
                    // Exits holding it once told to: the connection closes.
                    (void)m.lookup<mproc::EventProxy>("go").wait(kLong);
                    return;
                }
                for (;;) ::pause();
            },
            address, graceful);
        p.start_method(mproc::StartMethod::spawn).start();
        REQUIRE(held.wait(kLong));
        REQUIRE_FALSE(lock.acquire(mproc::Duration(0)));
        if (graceful)
            go.set();
        else
            ::kill(static_cast<pid_t>(*p.pid()), SIGKILL);
        REQUIRE(p.join(kLong));
        REQUIRE(lock.acquire(kLong));
        REQUIRE(lock.owner_died());
        lock.release();
    }
    // A thread of this process that ends holding a remote lock.
    std::thread([&] { REQUIRE(rlock.acquire()); }).join();
    REQUIRE(lock.acquire(kLong));
    REQUIRE(lock.owner_died());
    lock.release();
}

TEST_CASE("Manager shutdown wakes every waiter at once, in every process", "[manager][shutdown][process]") {
    auto mgr = std::make_unique<mproc::Manager>();
    auto q = mgr->Queue<int>();
    auto ev = mgr->Event();
    auto sem = mgr->Semaphore(0);
    auto bar = mgr->Barrier(3);
    auto cond = mgr->Condition();
    auto ready = mgr->Semaphore(0);
    auto woken = mproc::Array<long>(5);
    std::vector<mproc::Process> ps;
    for (int which = 0; which < 5; ++which) {
        ps.emplace_back(
            [](int which, mproc::QueueProxy<int> q, mproc::EventProxy ev, mproc::SemaphoreProxy sem,
               mproc::BarrierProxy bar, mproc::ConditionProxy cond, mproc::SemaphoreProxy ready,
               mproc::Array<long> woken) {
                try {
                    ready.release();
                    switch (which) {
                        case 0: (void)q.get(); break;
                        case 1: (void)ev.wait(); break;
                        case 2: (void)sem.acquire(); break;
                        case 3: (void)bar.wait(); break;
                        case 4: {
                            std::lock_guard<mproc::ConditionProxy> g(cond);
                            (void)cond.wait();
                            break;
                        }
                    }
                } catch (const mproc::ValueError&) {
                    woken[static_cast<std::size_t>(which)] = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                              std::chrono::steady_clock::now().time_since_epoch())
                                                              .count();
                    return;
                } catch (const mproc::BrokenBarrierError&) {
                }
                woken[static_cast<std::size_t>(which)] = -1;
            },
            which, q, ev, sem, bar, cond, ready, woken);
        ps.back().start_method(mproc::StartMethod::fork).start();
    }
    for (int i = 0; i < 5; ++i) REQUIRE(ready.acquire(kLong));
    // The Barrier's count says when its waiter is in.
    for (auto deadline = std::chrono::steady_clock::now() + 30s; bar.n_waiting() < 1;) {
        REQUIRE(std::chrono::steady_clock::now() < deadline);
        std::this_thread::yield();
    }
    const long t0 = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::chrono::steady_clock::now().time_since_epoch())
                        .count();
    mgr->shutdown();
    for (auto& p : ps) {
        REQUIRE(p.join(kLong));
        REQUIRE(p.exitcode() == 0);
    }
    long worst = 0;
    for (std::size_t i = 0; i < 5; ++i) {
        REQUIRE(woken[i] > 0);  // each got ValueError
        worst = std::max(worst, woken[i] - t0);
    }
    std::printf("manager shutdown woke 5 blocked processes; the last within %.3f ms\n", worst / 1e6);
}

TEST_CASE("Connected manager with pipelined stores: applied in order; a store's error comes with the next operation",
          "[manager][remote][pipeline]") {
    mproc::Manager mgr(mproc::ManagerOptions{.max_bytes = 16u << 20});
    auto d = mgr.dict<int, int>();
    mgr.publish("d", d);
    auto q = mgr.Queue<int>();
    mgr.publish("q", q);
    const std::string address = mgr.serve("127.0.0.1:0", "pipes");
    auto remote = mproc::Manager::connect(address, "pipes", mproc::ConnectOptions{.pipeline_stores = true});
    auto rd = remote.lookup<mproc::DictProxy<int, int>>("d");
    auto rq = remote.lookup<mproc::QueueProxy<int>>("q");
    for (int i = 0; i < 1000; ++i) {
        rd.set(i % 10, i);  // not waited for
        if (i % 100 == 99) REQUIRE(rd.at(i % 10) == i);  // this thread sees its own stores
    }
    rd.update({{100, 1}, {101, 2}});
    rq.put(1);  // ordered after the stores on the same connection
    REQUIRE(q.get(kLong) == 1);
    REQUIRE(d.at(101) == 2);  // applied before the put that followed them
    REQUIRE(d.size() == 12);
    // 300 stores in flight (past the bound of 256) settle without loss.
    auto rl = remote.list<int>();
    for (int i = 0; i < 300; ++i) rl.append(i);
    REQUIRE(rl.size() == 300);
    REQUIRE(rl.at(299) == 299);
    // A store that fails (20 MiB into a 16 MiB heap) returns; the next
    // operation throws its error, and the connection goes on.
    auto v = remote.Value<std::string>("x");
    v.set(std::string(20u << 20, 'x'));
    try {
        (void)rd.size();
        FAIL("the store's error was lost");
    } catch (const mproc::Error& e) {
        REQUIRE(std::string(e.what()).find("out of memory") != std::string::npos);
    }
    REQUIRE(rd.size() == 12);
    REQUIRE(v.get() == "x");
}
