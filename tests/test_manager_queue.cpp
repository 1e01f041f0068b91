// Manager queues: FIFO, bounds, timeouts and join, shared by producers and
// consumers across fork, spawn, forkserver and pool workers, and proxies
// sent through a Queue.
#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include <signal.h>

#include "mproc/manager.hpp"
#include "mproc/pool.hpp"
#include "mproc/process.hpp"

using namespace std::chrono_literals;

namespace {

constexpr auto kLong = mproc::Duration(60);

struct Order {
    int id = 0;
    int bike = -1;
    template <class A>
    void serialize(A& a, unsigned) { a & id & bike; }
};

void order_picker(mproc::QueueProxy<int> orders, mproc::QueueProxy<int> empty_bikes,
                  mproc::QueueProxy<Order> loaded_bikes) {
    for (;;) {
        int order = orders.get(kLong);
        if (order < 0) return;
        int bike = empty_bikes.get(kLong);
        loaded_bikes.put(Order{order, bike}, kLong);
    }
}

void messenger(mproc::QueueProxy<Order> loaded_bikes, mproc::QueueProxy<int> empty_bikes, mproc::QueueProxy<int> orders,
               mproc::ListProxy<int> delivered, mproc::DictProxy<int, int> per_bike) {
    for (;;) {
        Order o = loaded_bikes.get(kLong);
        if (o.id < 0) return;
        delivered.append(o.id);
        per_bike[o.bike] += 1;
        empty_bikes.put(o.bike, kLong);
        orders.task_done();
    }
}

}  // namespace

TEST_CASE("Manager: a proxy sent through a Queue to a running process", "[manager][queue][process]") {
    mproc::Queue<mproc::ListProxy<int>> inbox;
    mproc::Queue<int> done;
    mproc::Process p(
        [](mproc::Queue<mproc::ListProxy<int>> inbox, mproc::Queue<int> done) {
            auto l = inbox.get(kLong);
            for (int i = 0; i < 10; ++i) l.append(i);
            done.put(1);
        },
        inbox, done);
    p.start_method(mproc::StartMethod::spawn).start();
    mproc::Manager mgr;  // created after the child started
    auto l = mgr.list<int>();
    inbox.put(l);
    REQUIRE(done.get(kLong) == 1);
    REQUIRE(p.join(kLong));
    REQUIRE(l.snapshot() == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
}

TEST_CASE("Manager: the bike-business pattern with manager queues", "[manager][queue][process]") {
    mproc::Manager mgr;
    const int n_orders = 60, n_bikes = 5, n_pickers = 2, n_messengers = 3;
    auto orders = mgr.JoinableQueue<int>();
    auto empty_bikes = mgr.Queue<int>(n_bikes);
    auto loaded_bikes = mgr.Queue<Order>(n_bikes);
    auto delivered = mgr.list<int>();
    auto per_bike = mgr.dict<int, int>();
    for (int b = 0; b < n_bikes; ++b) empty_bikes.put(b);
    for (int o = 0; o < n_orders; ++o) orders.put(o);
    std::vector<mproc::Process> staff;
    for (int i = 0; i < n_pickers; ++i) {
        staff.emplace_back(order_picker, orders, empty_bikes, loaded_bikes);
        staff.back().start_method(i ? mproc::StartMethod::spawn : mproc::StartMethod::fork).start();
    }
    for (int i = 0; i < n_messengers; ++i) {
        staff.emplace_back(messenger, loaded_bikes, empty_bikes, orders, delivered, per_bike);
        staff.back().start_method(i ? mproc::StartMethod::spawn : mproc::StartMethod::fork).start();
    }
    REQUIRE(orders.join(kLong));
    std::vector<int> got = delivered.snapshot();
    std::sort(got.begin(), got.end());
    std::vector<int> want(n_orders);
    for (int i = 0; i < n_orders; ++i) want[static_cast<std::size_t>(i)] = i;
    REQUIRE(got == want);
    int rides = 0;
    for (const auto& [bike, n] : per_bike.items()) {
        REQUIRE(bike >= 0);
        REQUIRE(bike < n_bikes);
        rides += n;
    }
    REQUIRE(rides == n_orders);
    for (int i = 0; i < n_pickers; ++i) orders.put(-1);
    for (int i = 0; i < n_messengers; ++i) loaded_bikes.put(Order{-1, -1});
    for (auto& p : staff) {
        REQUIRE(p.join(kLong));
        REQUIRE(p.exitcode() == 0);
    }
}

TEST_CASE("Manager Queue: FIFO, bounds, timeouts, task_done and join", "[manager][queue]") {
    mproc::Manager mgr;
    auto q = mgr.Queue<std::string>(3);
    REQUIRE(q.empty());
    q.put("a");
    q.put("b");
    q.put_nowait("c");
    REQUIRE(q.full());
    REQUIRE_THROWS_AS(q.put_nowait("d"), mproc::Full);
    REQUIRE_THROWS_AS(q.put("d", mproc::Duration(0.02)), mproc::Full);
    REQUIRE(q.get() == "a");
    q.put("d");  // wraps around the ring
    REQUIRE(q.get() == "b");
    REQUIRE(q.get() == "c");
    REQUIRE(q.get() == "d");
    REQUIRE_FALSE(q.try_get().has_value());
    REQUIRE_THROWS_AS(q.get_nowait(), mproc::Empty);
    REQUIRE_THROWS_AS(q.get(mproc::Duration(0.02)), mproc::Empty);
    REQUIRE_FALSE(q.join(mproc::Duration(0)));  // four put, none done
    for (int i = 0; i < 4; ++i) q.task_done();
    REQUIRE(q.join(mproc::Duration(0)));
    REQUIRE_THROWS_AS(q.task_done(), mproc::ValueError);
    // Unbounded: grows past any ring size, keeps order.
    auto big = mgr.Queue<int>();
    for (int i = 0; i < 10000; ++i) big.put(i);
    REQUIRE(big.qsize() == 10000);
    for (int i = 0; i < 10000; ++i) REQUIRE(big.get() == i);
}

TEST_CASE("Manager Queue: producers and consumers across fork and spawn, and pool tasks",
          "[manager][queue][process]") {
    mproc::Pool pool(2);  // started before the manager exists
    mproc::Manager mgr;
    auto q = mgr.Queue<long>(16);
    auto results = mgr.Queue<long>();
    std::vector<mproc::Process> consumers;
    for (int i = 0; i < 2; ++i) {
        consumers.emplace_back(
            [](mproc::QueueProxy<long> q, mproc::QueueProxy<long> results) {
                long sum = 0;
                for (long x; (x = q.get(kLong)) >= 0;) sum += x;
                results.put(sum);
            },
            q, results);
        // The Pool's threads make fork unsafe here: forkserver and spawn.
        consumers.back().start_method(i ? mproc::StartMethod::spawn : mproc::StartMethod::forkserver).start();
    }
    // Pool tasks put into the manager queue too (a bounded one: they block
    // until the consumers make room).
    std::vector<std::tuple<mproc::QueueProxy<long>, long>> args;
    for (long i = 1; i <= 100; ++i) args.emplace_back(q, i);
    pool.starmap([](mproc::QueueProxy<long> q, long i) { q.put(i, kLong); return 0; }, args);
    for (long i = 101; i <= 200; ++i) q.put(i);
    q.put(-1);
    q.put(-1);
    long total = results.get(kLong) + results.get(kLong);
    REQUIRE(total == 200 * 201 / 2);
    for (auto& c : consumers) {
        REQUIRE(c.join(kLong));
        REQUIRE(c.exitcode() == 0);
    }
}

TEST_CASE("Manager Queue: a consumer killed while waiting does not lose items or block others",
          "[manager][queue][crash][process]") {
    mproc::Manager mgr;
    auto q = mgr.Queue<int>();
    mproc::Event waiting;
    mproc::Process p(
        [](mproc::QueueProxy<int> q, mproc::Event waiting) {
            waiting.set();
            (void)q.get();  // blocks: nothing is put until it is dead
        },
        q, waiting);
    p.start_method(mproc::StartMethod::fork).start();
    REQUIRE(waiting.wait(kLong));
    ::kill(static_cast<pid_t>(*p.pid()), SIGKILL);
    REQUIRE(p.join(kLong));
    q.put(7);
    REQUIRE(q.get(kLong) == 7);
    REQUIRE(q.empty());
}
