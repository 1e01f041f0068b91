// Executors and futures: submit/result under each start method, the
// one-word switch to threads, exceptions, the broken state after a worker
// is killed, cancel of a queued future, as_completed, wait.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <vector>

#include <signal.h>
#include <unistd.h>

#include <mproc/futures.hpp>
#include <mproc/queue.hpp>
#include <mproc/sync.hpp>

namespace {

long fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }
int twice(int x) { return 2 * x; }
int boom(int) { throw std::out_of_range("boom"); }

std::optional<mproc::Event> g_go;
std::optional<mproc::Queue<int>> g_pids;
int report_then_wait(int x) {
    g_pids->put(static_cast<int>(::getpid()));
    g_go->wait();
    return x;
}
int wait_go(int x) {
    g_go->wait();
    return x;
}

template <class Executor>
void exercise(Executor& ex) {
    auto f = ex.submit(fib, 20);
    CHECK(f.result() == 6765);
    CHECK(f.done());
    CHECK_FALSE(f.cancelled());
    CHECK(std::vector<int>(ex.map(twice, std::vector<int>{1, 2, 3})) == std::vector<int>{2, 4, 6});
    auto e = ex.submit(boom, 1);
    CHECK_THROWS_AS(e.result(), std::out_of_range);
    CHECK(e.exception() != nullptr);
}

}  // namespace

TEST_CASE("ProcessPoolExecutor under each start method, ThreadPoolExecutor the same way") {
    auto method = GENERATE(mproc::StartMethod::fork, mproc::StartMethod::spawn, mproc::StartMethod::forkserver);
    {
        mproc::ProcessPoolExecutor ex(2, method);
        exercise(ex);
        CHECK(std::vector<int>(ex.map(twice, std::vector<int>{1, 2, 3, 4, 5}, 2)) == std::vector<int>{2, 4, 6, 8, 10});
    }
    {
        mproc::ThreadPoolExecutor ex(2);
        exercise(ex);
    }
}

TEST_CASE("as_completed yields every future once; wait() splits done and not done") {
    mproc::ProcessPoolExecutor ex(2);
    std::vector<mproc::Future<int>> fs;
    for (int i = 0; i < 20; ++i) fs.push_back(ex.submit(twice, i));
    std::multiset<int> seen;
    for (const auto& f : mproc::as_completed(fs)) seen.insert(f.result());
    CHECK(seen.size() == 20);
    for (int i = 0; i < 20; ++i) CHECK(seen.count(2 * i) == 1);

    auto [done, not_done] = mproc::wait(fs);
    CHECK(done.size() == 20);
    CHECK(not_done.empty());

    fs.push_back(ex.submit(boom, 0));
    auto r = mproc::wait(fs, std::nullopt, mproc::FIRST_EXCEPTION);
    CHECK(std::any_of(r.done.begin(), r.done.end(), [](auto& f) { return f.exception() != nullptr; }));
    auto r2 = mproc::wait(fs, std::nullopt, mproc::FIRST_COMPLETED);
    CHECK(!r2.done.empty());
}

TEST_CASE("cancel of a queued future") {
    mproc::Event go;  // before the executor: fork workers inherit it
    g_go = go;
    {
        mproc::ProcessPoolExecutor ex(1, mproc::StartMethod::fork);
        std::vector<mproc::Future<int>> fs;
        for (int i = 0; i < 8; ++i) fs.push_back(ex.submit(wait_go, i));
        // One worker, window of 2: the last futures are still queued here.
        CHECK(fs.back().cancel());
        CHECK(fs.back().cancelled());
        CHECK_THROWS_AS(fs.back().result(), mproc::CancelledError);
        go.set();
        for (int i = 0; i < 7; ++i) CHECK(fs[static_cast<std::size_t>(i)].result() == i);
        CHECK_FALSE(fs[0].cancel());  // done: too late
    }
    {
        mproc::Event never;
        mproc::ThreadPoolExecutor ex(1);
        auto first = ex.submit([never] { never.wait(); });
        auto second = ex.submit(twice, 4);
        CHECK(second.cancel());
        never.set();
        first.result();
        CHECK(second.cancelled());
    }
    g_go.reset();
}

TEST_CASE("a killed worker breaks the ProcessPoolExecutor: every pending future fails") {
    mproc::Event go;
    mproc::Queue<int> pids;
    g_go = go;
    g_pids = pids;
    {
        mproc::ProcessPoolExecutor ex(2, mproc::StartMethod::fork);
        std::vector<mproc::Future<int>> fs;
        for (int i = 0; i < 6; ++i) fs.push_back(ex.submit(report_then_wait, i));
        int victim = pids.get(std::chrono::seconds(30));
        REQUIRE(::kill(victim, SIGKILL) == 0);
        for (auto& f : fs) CHECK_THROWS_AS(f.result(std::chrono::seconds(60)), mproc::BrokenProcessPool);
        CHECK_THROWS_AS(ex.submit(twice, 1), mproc::BrokenProcessPool);
        go.set();
    }
    g_go.reset();
    g_pids.reset();
}

TEST_CASE("max_tasks_per_child replaces executor workers") {
    mproc::ProcessPoolExecutor ex(1, mproc::StartMethod::fork, 1);
    std::set<int> pids;
    for (int i = 0; i < 4; ++i) {
        auto f = ex.submit([](int) { return static_cast<int>(::getpid()); }, i);
        pids.insert(f.result());
    }
    CHECK(pids.size() == 4);
}

TEST_CASE("shutdown(cancel_futures) cancels what no worker took") {
    mproc::Event go;
    g_go = go;
    mproc::ProcessPoolExecutor ex(1, mproc::StartMethod::fork);
    std::vector<mproc::Future<int>> fs;
    for (int i = 0; i < 6; ++i) fs.push_back(ex.submit(wait_go, i));
    ex.shutdown(false, true);
    CHECK(fs.back().cancelled());
    go.set();
    CHECK(fs[0].result() == 0);
    ex.shutdown(true);
    CHECK_THROWS_AS(ex.submit(twice, 1), mproc::ValueError);
    g_go.reset();
}

TEST_CASE("Threads waiting on futures take each other's results off the channel correctly") {
    // Each waiting thread may handle results for the others (the result
    // pump): every future must still get exactly its own value, and the
    // done-callbacks run once each.
    mproc::ProcessPoolExecutor ex(2);
    std::atomic<int> callbacks{0};
    std::vector<std::thread> threads;
    std::atomic<int> wrong{0};
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            for (int i = 0; i < 300; ++i) {
                const int x = t * 1000 + i;
                auto f = ex.submit(twice, x);
                f.add_done_callback([&](mproc::Future<int>) { callbacks.fetch_add(1); });
                if (f.result(std::chrono::seconds(60)) != 2 * x) wrong.fetch_add(1);
            }
        });
    for (auto& th : threads) th.join();
    REQUIRE(wrong.load() == 0);
    ex.shutdown(true);
    REQUIRE(callbacks.load() == 4 * 300);
}

TEST_CASE("Futures compare and hash by their shared state: a dict of future -> input") {
    mproc::ProcessPoolExecutor ex(2);
    std::unordered_map<mproc::Future<int>, int> input_of;  // Python's {ex.submit(f, x): x for x in xs}
    for (int x = 0; x < 20; ++x) input_of.emplace(ex.submit(twice, x), x);
    REQUIRE(input_of.size() == 20);
    std::vector<mproc::Future<int>> fs;
    for (auto& [f, x] : input_of) fs.push_back(f);
    int seen = 0;
    for (auto& f : mproc::as_completed(fs)) {
        const mproc::Future<int> copy = f;
        REQUIRE(copy == f);
        REQUIRE(std::hash<mproc::Future<int>>{}(copy) == std::hash<mproc::Future<int>>{}(f));
        REQUIRE(input_of.count(copy) == 1);
        REQUIRE(f.result() == 2 * input_of.at(copy));
        ++seen;
    }
    REQUIRE(seen == 20);
    REQUIRE_FALSE(fs[0] == fs[1]);
}
