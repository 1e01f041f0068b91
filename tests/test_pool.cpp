// Pool: map / imap / imap_unordered / starmap / apply_async under every
// start method, chunksize edge cases, initializer, maxtasksperchild,
// callbacks, exceptions, a worker killed mid-map, terminate.
#include <catch2/catch.hpp>

#include <algorithm>
#include <optional>
#include <atomic>
#include <chrono>
#include <csignal>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <signal.h>
#include <unistd.h>

#include <mproc/pool.hpp>
#include <mproc/queue.hpp>
#include <mproc/shared_memory.hpp>
#include <mproc/sync.hpp>

namespace {

int square(int x) { return x * x; }
int add(int a, int b) { return a + b; }
std::string shout(std::string s) { return s + "!"; }
int my_pid(int) { return static_cast<int>(::getpid()); }

struct CustomError : std::exception {
    const char* what() const noexcept override { return "custom failure"; }
};
int fail_on_3(int x) {
    if (x == 3) throw std::invalid_argument("three is not allowed");
    return x;
}
int fail_custom(int) { throw CustomError(); }

// Initializer: counts worker starts in a shared Value.
void count_init(mproc::Value<int> counter) {
    auto g = counter.get_lock();
    counter.value() += 1;
}

// Blocks until `go` is set; returns its pid (so the test knows whom to kill).
int wait_for(mproc::Event go, int x) {
    go.wait();
    return x;
}
std::optional<mproc::Queue<int>> g_pids;
std::optional<mproc::Event> g_go;
void keep_handles(mproc::Queue<int> pids, mproc::Event go) {
    g_pids = pids;
    g_go = go;
}
int report_then_wait(int x) {
    g_pids->put(static_cast<int>(::getpid()));
    g_go->wait();
    return x;
}

std::vector<int> iota(int n) {
    std::vector<int> v(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = i;
    return v;
}
std::vector<int> squares(int n) {
    std::vector<int> v;
    for (int i = 0; i < n; ++i) v.push_back(i * i);
    return v;
}

}  // namespace

TEST_CASE("map, imap, imap_unordered, starmap, apply_async under each start method") {
    auto method = GENERATE(mproc::StartMethod::fork, mproc::StartMethod::spawn, mproc::StartMethod::forkserver);
    mproc::Pool pool(mproc::PoolOptions{.processes = 2, .start_method = method});
    auto in = iota(50);
    CHECK(pool.map(square, in) == squares(50));
    CHECK(pool.map([](int x) { return x + 1; }, std::vector<int>{1, 2, 3}) == std::vector<int>{2, 3, 4});

    std::vector<int> ordered;
    for (int x : pool.imap(square, in, 3)) ordered.push_back(x);
    CHECK(ordered == squares(50));

    std::vector<int> unordered;
    for (int x : pool.imap_unordered(square, in)) unordered.push_back(x);
    std::sort(unordered.begin(), unordered.end());
    CHECK(unordered == squares(50));

    std::vector<std::tuple<int, int>> pairs{{1, 2}, {3, 4}, {5, 6}};
    CHECK(pool.starmap(add, pairs) == std::vector<int>{3, 7, 11});

    CHECK(pool.map(shout, std::vector<std::string>{"a", "bc"}) == std::vector<std::string>{"a!", "bc!"});
    CHECK(pool.apply_async(add, 20, 22).get(std::chrono::seconds(30)) == 42);
    CHECK(pool.apply(square, 9) == 81);
    pool.close();
    pool.join();
}

TEST_CASE("chunksize edge cases") {
    mproc::Pool pool(2);
    auto in = iota(10);
    std::size_t cs = GENERATE(0u, 1u, 3u, 10u, 1000u);
    CHECK(pool.map(square, in, cs) == squares(10));
    CHECK(pool.map(square, std::vector<int>{}, cs).empty());
    CHECK(pool.map_async(square, in, cs).get() == squares(10));
    CHECK(mproc::detail::default_chunksize(100, 4, 0) == 7);  // divmod(100, 16) rounded up
    CHECK(mproc::detail::default_chunksize(0, 4, 0) == 1);
    CHECK(mproc::detail::default_chunksize(16, 4, 0) == 1);
    CHECK(mproc::detail::default_chunksize(17, 4, 0) == 2);
}

TEST_CASE("the initializer runs once per worker, with its initargs") {
    auto method = GENERATE(mproc::StartMethod::fork, mproc::StartMethod::spawn);
    mproc::Value<int> counter(0);
    {
        mproc::Pool pool(mproc::PoolOptions{.processes = 3,
                                            .initializer = count_init,
                                            .initargs = mproc::InitArgs(counter),
                                            .start_method = method});
        CHECK(pool.map(square, iota(30), 1) == squares(30));
        pool.close();
        pool.join();
    }
    CHECK(counter.value() == 3);
}

TEST_CASE("maxtasksperchild replaces workers and results stay correct") {
    mproc::Pool pool(mproc::PoolOptions{.processes = 2, .maxtasksperchild = 2});
    auto pids = pool.map(my_pid, iota(20), 1);
    std::set<int> distinct(pids.begin(), pids.end());
    CHECK(distinct.size() >= 5);  // 20 chunks, 2 per worker: at least 10 workers ran them
    CHECK(pool.map(square, iota(40), 1) == squares(40));
}

TEST_CASE("callbacks run in the parent") {
    mproc::Pool pool(2);
    const int parent = static_cast<int>(::getpid());
    std::atomic<int> seen_pid{0};
    std::atomic<int> seen_value{0};
    std::atomic<bool> error_seen{false};
    mproc::Event done;  // a plain flag would do; an Event lets the test wait without sleeping
    auto ar = pool.apply_async(square, 12);
    ar.then([&](int v) {
        seen_pid = static_cast<int>(::getpid());
        seen_value = v;
        done.set();
    });
    CHECK(done.wait(std::chrono::seconds(30)));
    CHECK(seen_pid == parent);
    CHECK(seen_value == 144);

    mproc::Event failed;
    pool.apply_async(fail_on_3, 3).then([](int) {}, [&](std::exception_ptr) {
        error_seen = true;
        failed.set();
    });
    CHECK(failed.wait(std::chrono::seconds(30)));
    CHECK(error_seen);
}

TEST_CASE("AsyncResult: the callback has run when wait() and get() return, as in Python") {
    mproc::Pool pool(2);
    int late = 0;
    for (int i = 0; i < 500; ++i) {
        std::atomic<bool> ran{false};
        auto ar = pool.apply_async(square, i);
        ar.then([&](int) {
            ran = true;
        });
        ar.wait();
        if (!ran) ++late;
        auto failing = pool.map_async(fail_on_3, std::vector<int>{3});
        std::atomic<bool> failed{false};
        failing.then(nullptr, [&](std::exception_ptr) { failed = true; });
        CHECK_THROWS(failing.get());
        if (!failed) ++late;
    }
    CHECK(late == 0);
}

TEST_CASE("exceptions come back: standard types as themselves, others as RemoteError") {
    mproc::Pool pool(2);
    CHECK_THROWS_AS(pool.map(fail_on_3, iota(10)), std::invalid_argument);
    CHECK_THROWS_WITH(pool.apply(fail_on_3, 3), "three is not allowed");
    try {
        pool.apply(fail_custom, 1);
        FAIL("no exception");
    } catch (const mproc::RemoteError& e) {
        CHECK(std::string(e.type_name()).find("CustomError") != std::string::npos);
        CHECK(std::string(e.what()) == "custom failure");
    }
    auto ar = pool.apply_async(fail_on_3, 3);
    ar.wait();
    CHECK(ar.ready());
    CHECK_FALSE(ar.successful());
    // imap: the failed item throws when reached; the others still arrive.
    auto it = pool.imap(fail_on_3, iota(5));
    int got = 0;
    CHECK_THROWS_AS([&] { for (int x : it) got += x; }(), std::invalid_argument);
    CHECK(got == 0 + 1 + 2);
}

TEST_CASE("AsyncResult::get times out") {
    mproc::Event go;  // made before the pool: fork workers inherit it
    mproc::Pool pool(1);
    auto ar = pool.apply_async(wait_for, go, 5);
    CHECK_THROWS_AS(ar.get(std::chrono::milliseconds(50)), mproc::TimeoutError);
    CHECK_FALSE(ar.ready());
    go.set();
    CHECK(ar.get() == 5);
}

TEST_CASE("kill -9 of a worker during map: BrokenProcessPool, the pool carries on") {
    auto method = GENERATE(mproc::StartMethod::fork, mproc::StartMethod::spawn);
    mproc::Queue<int> pids;
    mproc::Event go;
    // The handles reach spawned workers through initargs, as in Python.
    mproc::Pool pool(mproc::PoolOptions{.processes = 2,
                                        .initializer = keep_handles,
                                        .initargs = mproc::InitArgs(pids, go),
                                        .start_method = method});
    auto ar = pool.map_async(report_then_wait, iota(4), 1);
    int victim = pids.get(std::chrono::seconds(30));
    REQUIRE(::kill(victim, SIGKILL) == 0);
    try {
        ar.get(std::chrono::seconds(60));
        FAIL("no exception");
    } catch (const mproc::BrokenProcessPool& e) {
        CHECK(std::string(e.what()).find("SIGKILL") != std::string::npos);
    }
    go.set();
    // Usable afterwards, with a replacement worker.
    CHECK(pool.map(square, iota(20)) == squares(20));
    // The watcher starts the replacement after it reports the death, so it
    // may still be starting (spawn: an exec) when map() returns. Wait for it,
    // bounded: a replacement that never comes fails here.
    std::vector<int> now = pool.worker_pids();
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (now.size() < 2 && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));  // polling a pid list, not synchronizing the pool
        now = pool.worker_pids();
    }
    CHECK(now.size() == 2);
    CHECK(pool.map(square, iota(20)) == squares(20));
    CHECK(std::find(now.begin(), now.end(), victim) == now.end());
}

TEST_CASE("terminate while tasks run leaves no stray processes") {
    mproc::Event go;  // never set: the tasks block
    std::vector<int> pids;
    mproc::AsyncResult<std::vector<int>> ar;
    {
        mproc::Pool pool(2);
        std::vector<std::tuple<mproc::Event, int>> items{{go, 1}, {go, 2}, {go, 3}};
        ar = pool.starmap_async(wait_for, items, 1);
        pids = pool.worker_pids();
        REQUIRE(pids.size() == 2);
        pool.terminate();
    }
    CHECK_THROWS_AS(ar.get(std::chrono::seconds(10)), mproc::BrokenProcessPool);
    for (int pid : pids) CHECK(::kill(pid, 0) == -1);
}

TEST_CASE("a closed pool refuses work") {
    mproc::Pool pool(1);
    pool.close();
    CHECK_THROWS_AS(pool.apply(square, 2), mproc::ValueError);
    pool.join();
}

namespace {
int meet(mproc::Barrier b) {
    b.wait(mproc::Duration(60));  // BrokenBarrierError unless every worker is alive at once
    return static_cast<int>(::getpid());
}
}  // namespace

TEST_CASE("Pool: 70 workers (more than a 64-bit poll mask) are all watched and replaced",
          "[pool][process]") {
    constexpr int n = 70;
    mproc::Pool pool(n);
    std::vector<std::tuple<mproc::Barrier>> args(n, std::tuple<mproc::Barrier>(mproc::Barrier(n)));
    const std::vector<int> first = pool.starmap(meet, args, 1);
    REQUIRE(std::set<int>(first.begin(), first.end()).size() == n);
    // Kill every worker while idle; each death must be noticed (the last
    // ones sit past bit 63 of any mask) and the worker replaced, or the
    // next 70-party barrier can never fill.
    for (int pid : first) ::kill(pid, SIGKILL);
    std::vector<std::tuple<mproc::Barrier>> again(n, std::tuple<mproc::Barrier>(mproc::Barrier(n)));
    const std::vector<int> second = pool.starmap(meet, again, 1);
    std::set<int> fresh(second.begin(), second.end());
    REQUIRE(fresh.size() == n);
    for (int pid : first) REQUIRE(fresh.count(pid) == 0);
}
