// Pool and executors: a per-task timeout and an interrupting cancel kill
// and replace only the worker concerned; failures never hang (a result that
// cannot be serialized, throw 42, std::exit in a task, workers killed by
// terminate / terminate_workers / kill_workers, SIGINT to the parent during
// a map), under fork, spawn and forkserver. ExecutorOptions.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

#include <signal.h>
#include <unistd.h>

#include <mproc/futures.hpp>
#include <mproc/pool.hpp>
#include <mproc/queue.hpp>
#include <mproc/sync.hpp>

#include "support.hpp"

namespace {

int square(int x) { return x * x; }
int my_pid() { return static_cast<int>(::getpid()); }
int hang(int x) {
    std::this_thread::sleep_for(std::chrono::hours(1));
    return x;
}
int hang_on_3(int x) { return x == 3 ? hang(x) : x * x; }
int throw_42(int) { throw 42; }
int exit_3(int) { std::exit(3); }

std::optional<mproc::Queue<int>> g_started;
void keep_started(mproc::Queue<int> q) { g_started = q; }
int announce_then_hang(int x) {
    g_started->put(static_cast<int>(::getpid()));
    return hang(x);
}

// Serializing it throws: a result that cannot travel back.
struct Unsendable {
    int v = 0;
    template <class Archive>
    void serialize(Archive& ar, unsigned) {
        if constexpr (Archive::is_saving::value) throw std::runtime_error("Unsendable cannot be serialized");
        ar & v;
    }
};
Unsendable make_unsendable(int x) { return Unsendable{x}; }

int g_init_value = 0;
void set_init(int v) { g_init_value = v; }
int read_init() { return g_init_value; }

const auto kMethods = {mproc::StartMethod::fork, mproc::StartMethod::spawn, mproc::StartMethod::forkserver};

}  // namespace

TEST_CASE("a per-task timeout fails that task with TimeoutError, replaces its worker, disturbs nothing else") {
    auto method = GENERATE(values(kMethods));
    mproc::Pool pool(mproc::PoolOptions{.processes = 2, .start_method = method});
    auto slow = pool.apply_async(mproc::TaskOptions{.timeout = std::chrono::milliseconds(200)}, hang, 1);
    auto others = pool.map_async(square, std::vector<int>{1, 2, 3, 4, 5, 6}, 1);
    CHECK_THROWS_AS(slow.get(std::chrono::seconds(60)), mproc::TimeoutError);
    CHECK(others.get(std::chrono::seconds(60)) == std::vector<int>{1, 4, 9, 16, 25, 36});
    // Maps: the item past its task_timeout fails, the rest are right.
    auto it = pool.imap(hang_on_3, std::vector<int>{1, 2, 3, 4},
                        {.chunksize = 1, .task_timeout = std::chrono::milliseconds(200)});
    CHECK(it.next(std::chrono::seconds(60)) == 1);
    CHECK(it.next(std::chrono::seconds(60)) == 4);
    CHECK_THROWS_AS(it.next(std::chrono::seconds(60)), mproc::TimeoutError);
    CHECK(it.next(std::chrono::seconds(60)) == 16);
    CHECK_THROWS_AS(pool.map(hang_on_3, std::vector<int>{1, 3}, {.chunksize = 1,
                                                                 .task_timeout = std::chrono::milliseconds(100)}),
                    mproc::TimeoutError);
    CHECK(pool.worker_pids().size() <= 2);
    CHECK(pool.apply(square, 9) == 81);
    pool.close();
    pool.join();
}

TEST_CASE("an executor's per-task timeout does not break it") {
    auto method = GENERATE(values(kMethods));
    mproc::ProcessPoolExecutor ex(mproc::ExecutorOptions{.max_workers = 1, .start_method = method});
    auto f = ex.submit(mproc::TaskOptions{.timeout = std::chrono::milliseconds(200)}, hang, 1);
    CHECK_THROWS_AS(f.result(std::chrono::seconds(60)), mproc::TimeoutError);
    CHECK(ex.submit(square, 7).result(std::chrono::seconds(60)) == 49);
    // A fast task with a timeout is unaffected by it.
    CHECK(ex.submit(mproc::TaskOptions{.timeout = std::chrono::seconds(60)}, square, 8).result() == 64);
}

TEST_CASE("cancel(interrupt=true) stops a running task; the executor stays usable") {
    auto method = GENERATE(values(kMethods));
    mproc::Queue<int> started;
    mproc::ProcessPoolExecutor ex(mproc::ExecutorOptions{.max_workers = 1, .initializer = keep_started,
                                                         .initargs = mproc::InitArgs(started),
                                                         .start_method = method});
    auto f = ex.submit(announce_then_hang, 1);
    const int pid = started.get(std::chrono::seconds(60));
    CHECK(f.running());
    CHECK_FALSE(f.cancel());  // Python's cancel: not once running
    mproc_test::ExitWatch gone(pid);
    CHECK(f.cancel(true));
    CHECK(f.cancelled());
    CHECK_THROWS_AS(f.result(), mproc::CancelledError);
    CHECK(gone.wait(std::chrono::seconds(60)));
    // One worker, and it is free again: the hung task is gone.
    CHECK(ex.submit(square, 4).result(std::chrono::seconds(60)) == 16);
    CHECK(ex.submit(square, 5).result(std::chrono::seconds(60)) == 25);
}

TEST_CASE("failures never hang: throw 42, std::exit, a result that cannot be serialized") {
    auto method = GENERATE(values(kMethods));
    mproc::Pool pool(mproc::PoolOptions{.processes = 2, .start_method = method});
    CHECK_THROWS_AS(pool.apply_async(throw_42, 1).get(std::chrono::seconds(60)), mproc::RemoteError);
    CHECK_THROWS_AS(pool.apply_async(exit_3, 1).get(std::chrono::seconds(60)), mproc::BrokenProcessPool);
    CHECK_THROWS_AS(pool.apply_async(make_unsendable, 1).get(std::chrono::seconds(60)), std::runtime_error);
    // The items around a bad one keep their results.
    auto it = pool.imap(exit_3, std::vector<int>{1});
    CHECK_THROWS_AS(it.next(std::chrono::seconds(60)), mproc::BrokenProcessPool);
    CHECK(pool.map(square, std::vector<int>{1, 2, 3}, 3) == std::vector<int>{1, 4, 9});

    mproc::ProcessPoolExecutor ex(mproc::ExecutorOptions{.max_workers = 1, .start_method = method});
    CHECK_THROWS_AS(ex.submit(throw_42, 1).result(std::chrono::seconds(60)), mproc::RemoteError);
    CHECK_THROWS_AS(ex.submit(make_unsendable, 1).result(std::chrono::seconds(60)), std::runtime_error);
    CHECK_THROWS_AS(ex.submit(exit_3, 1).result(std::chrono::seconds(60)), mproc::BrokenProcessPool);
    CHECK_THROWS_AS(ex.submit(square, 1), mproc::BrokenProcessPool);
}

TEST_CASE("workers killed by terminate, terminate_workers and kill_workers fail what they ran") {
    auto method = GENERATE(values(kMethods));
    {
        mproc::Pool pool(mproc::PoolOptions{.processes = 2, .start_method = method});
        auto r = pool.map_async(hang, std::vector<int>{1, 2, 3, 4, 5}, 1);
        pool.terminate();
        CHECK_THROWS_AS(r.get(std::chrono::seconds(60)), mproc::BrokenProcessPool);
        pool.join();
        CHECK(pool.worker_pids().empty());
    }
    for (bool kill : {false, true}) {
        mproc::ProcessPoolExecutor ex(mproc::ExecutorOptions{.max_workers = 2, .start_method = method});
        std::vector<mproc::Future<int>> fs;
        for (int i = 0; i < 5; ++i) fs.push_back(ex.submit(hang, i));
        if (kill) ex.kill_workers();
        else ex.terminate_workers();
        for (auto& f : fs) {
            CHECK(f.done());
            CHECK_THROWS_AS(f.result(std::chrono::seconds(0)), mproc::Error);
        }
        CHECK(ex.worker_pids().empty());
        CHECK_THROWS(ex.submit(square, 1));
    }
}

TEST_CASE("SIGINT to the parent during a map leaves no worker behind") {
    auto method = GENERATE(values(kMethods));
    mproc::Queue<int> started;
    mproc::Queue<int> pids_out;
    pid_t child = mproc_test::fork_child([&] {
        ::signal(SIGINT, SIG_DFL);  // not Catch's handler: die of it, as a program would
        mproc::Pool pool(mproc::PoolOptions{.processes = 2, .initializer = keep_started,
                                            .initargs = mproc::InitArgs(started), .start_method = method});
        for (int pid : pool.worker_pids()) pids_out.put(pid);
        auto r = pool.map_async(announce_then_hang, std::vector<int>{1, 2, 3, 4}, 1);
        r.wait();
    });
    std::vector<int> workers{pids_out.get(std::chrono::seconds(60)), pids_out.get(std::chrono::seconds(60))};
    std::vector<std::unique_ptr<mproc_test::ExitWatch>> watches;
    for (int pid : workers) watches.push_back(std::make_unique<mproc_test::ExitWatch>(pid));
    started.get(std::chrono::seconds(60));  // the map is running
    ::kill(child, SIGINT);
    CHECK(mproc_test::wait_child(child) == -SIGINT);
    for (auto& w : watches) CHECK(w->wait(std::chrono::seconds(60)));
}

TEST_CASE("ExecutorOptions: initializer and initargs, max_tasks_per_child, start_method") {
    auto method = GENERATE(values(kMethods));
    mproc::ProcessPoolExecutor ex(mproc::ExecutorOptions{.max_workers = 1, .initializer = set_init,
                                                         .initargs = mproc::InitArgs(41),
                                                         .max_tasks_per_child = 2, .start_method = method});
    CHECK(ex.submit(read_init).result(std::chrono::seconds(60)) == 41);
    std::set<int> pids;
    for (int i = 0; i < 6; ++i) pids.insert(ex.submit(my_pid).result(std::chrono::seconds(60)));
    CHECK(pids.size() >= 3);  // a fresh worker every two tasks
}
