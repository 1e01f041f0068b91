// Pool and executors on the one submitter: lazy and bounded imap / executor
// map (a counting input proves at most `buffersize` chunks were read ahead;
// an endless input), IMapIterator::next(timeout), progress counts, under
// fork, spawn and forkserver.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <optional>
#include <ranges>
#include <vector>

#include <mproc/futures.hpp>
#include <mproc/pool.hpp>
#include <mproc/sync.hpp>

namespace {

int square(int x) { return x * x; }

std::optional<mproc::Event> g_gate;
void keep_gate(mproc::Event e) { g_gate = e; }
int gated(int x) {
    g_gate->wait();
    return x;
}

// Items the parent has read from the input so far.
std::size_t g_reads = 0;
auto counting(int n) {
    return std::views::iota(0, n) | std::views::transform([](int x) {
               ++g_reads;
               return x;
           });
}
auto counting_endless() {
    return std::views::iota(0) | std::views::transform([](int x) {
               ++g_reads;
               return x;
           });
}

}  // namespace

TEST_CASE("imap with buffersize reads at most buffersize chunks ahead of the consumer") {
    auto method = GENERATE(mproc::StartMethod::fork, mproc::StartMethod::spawn, mproc::StartMethod::forkserver);
    const bool ordered = GENERATE(true, false);
    mproc::Pool pool(mproc::PoolOptions{.processes = 2, .start_method = method});
    const std::size_t cs = 3, bs = 4;
    g_reads = 0;
    auto opts = mproc::MapOptions{.chunksize = cs, .buffersize = bs};
    auto it = ordered ? pool.imap(square, counting(100), opts) : pool.imap_unordered(square, counting(100), opts);
    CHECK(g_reads <= cs * bs);
    std::size_t taken = 0;
    long sum = 0;
    while (auto x = it.next(std::chrono::seconds(60))) {
        if (ordered) CHECK(*x == static_cast<int>(taken * taken));
        sum += *x;
        ++taken;
        // Chunks fully taken + bs in flight, at most.
        CHECK(g_reads <= (taken / cs + bs) * cs);
    }
    CHECK(taken == 100);
    CHECK(sum == 328350);
    CHECK(g_reads == 100);
    CHECK(it.completed() == 100);
    CHECK(it.total() == 100);
}

TEST_CASE("imap over an endless input with buffersize runs in constant memory and stops when dropped") {
    auto method = GENERATE(mproc::StartMethod::fork, mproc::StartMethod::forkserver);
    mproc::Pool pool(mproc::PoolOptions{.processes = 2, .start_method = method});
    g_reads = 0;
    {
        auto it = pool.imap(square, counting_endless(), {.chunksize = 2, .buffersize = 8});
        int i = 0;
        for (int x : it) {
            REQUIRE(x == i * i);
            CHECK(g_reads <= static_cast<std::size_t>((i + 1) / 2 + 8) * 2);
            if (++i == 5000) break;
        }
    }
    // The pool is still usable, and close/join does not wait for the
    // dropped endless map.
    CHECK(pool.map(square, std::vector<int>{1, 2, 3}) == std::vector<int>{1, 4, 9});
    pool.close();
    pool.join();
}

TEST_CASE("executor map is a lazy range in input order with buffersize, chunksize and timeout") {
    auto method = GENERATE(mproc::StartMethod::fork, mproc::StartMethod::spawn);
    mproc::ProcessPoolExecutor ex(mproc::ExecutorOptions{.max_workers = 2, .start_method = method});
    g_reads = 0;
    auto r = ex.map(square, counting(50), {.chunksize = 2, .buffersize = 3});
    CHECK(g_reads <= 6);
    int i = 0;
    for (int x : r) {
        CHECK(x == i * i);
        ++i;
        CHECK(g_reads <= static_cast<std::size_t>(i / 2 + 3) * 2);
    }
    CHECK(i == 50);
    // Unbounded: the classic form, as a vector.
    std::vector<int> v = ex.map(square, std::vector<int>{1, 2, 3});
    CHECK(v == std::vector<int>{1, 4, 9});
}

TEST_CASE("IMapIterator::next(timeout) throws TimeoutError when nothing arrives in time, then carries on") {
    auto method = GENERATE(mproc::StartMethod::fork, mproc::StartMethod::spawn, mproc::StartMethod::forkserver);
    mproc::Event gate;
    mproc::Pool pool(mproc::PoolOptions{.processes = 2, .initializer = keep_gate, .initargs = mproc::InitArgs(gate),
                                        .start_method = method});
    auto it = pool.imap(gated, std::vector<int>{7, 8, 9});
    CHECK_THROWS_AS(it.next(std::chrono::milliseconds(50)), mproc::TimeoutError);
    CHECK_THROWS_AS(it.next(std::chrono::seconds(0)), mproc::TimeoutError);
    gate.set();
    CHECK(it.next(std::chrono::seconds(60)) == 7);
    CHECK(it.next(std::chrono::seconds(60)) == 8);
    CHECK(it.next(std::chrono::seconds(60)) == 9);
    CHECK(it.next(std::chrono::seconds(60)) == std::nullopt);
}

TEST_CASE("the whole-map timeout of executor map and Pool::map") {
    mproc::Event gate;
    mproc::ProcessPoolExecutor ex(mproc::ExecutorOptions{.max_workers = 1, .initializer = keep_gate,
                                                         .initargs = mproc::InitArgs(gate)});
    auto r = ex.map(gated, std::vector<int>{1, 2}, {.timeout = std::chrono::milliseconds(100)});
    CHECK_THROWS_AS(r.next(), mproc::TimeoutError);
    gate.set();
    mproc::Pool pool(1);
    CHECK(pool.map(square, std::vector<int>{2, 3}, {.timeout = std::chrono::seconds(60)}) == std::vector<int>{4, 9});
}

TEST_CASE("progress counts of map_async and imap, and the progress line") {
    mproc::Pool pool(2);
    auto ar = pool.map_async(square, std::vector<int>(40, 3), {.chunksize = 4, .progress = true});
    CHECK(ar.total() == 40);
    ar.wait();
    CHECK(ar.completed() == 40);
    auto it = pool.imap(square, counting(10), {.progress = true});
    std::size_t n = 0;
    for (int x : it) n += static_cast<std::size_t>(x >= 0);
    CHECK(n == 10);
    CHECK(it.completed() == 10);
    CHECK(it.total() == 10);
    auto one = pool.apply_async(square, 5);
    one.wait();
    CHECK(one.completed() == 1);
    CHECK(one.total() == 1);
}
