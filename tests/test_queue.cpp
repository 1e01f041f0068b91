// Queue, JoinableQueue and SimpleQueue across real (forked) processes.
// Kills at chosen instructions are in test_crash.cpp, random kill -9s in
// the chaos suite (tests/chaos, ./build.sh chaos).
#include <catch2/catch.hpp>

#include <mproc/queue.hpp>
#include <mproc/shared_memory.hpp>
#include <mproc/sync.hpp>

#include <atomic>
#include <cstring>
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
constexpr Duration kLong = 30s;

struct Tagged {
    std::uint32_t producer;
    std::uint32_t seq;
};
}  // namespace

TEST_CASE("Queue: FIFO, qsize, maxsize counts items, Full and Empty on timeout", "[queue]") {
    mproc::Queue<int> q(3);
    REQUIRE(q.empty());
    REQUIRE(q.maxsize() == 3);
    q.put(1);
    q.put(2);
    q.put_nowait(3);
    REQUIRE(q.qsize() == 3);
    REQUIRE(q.full());
    REQUIRE_THROWS_AS(q.put_nowait(4), mproc::Full);
    REQUIRE_THROWS_AS(q.put(4, 20ms), mproc::Full);
    REQUIRE_FALSE(q.try_put(4));
    REQUIRE(q.get() == 1);
    REQUIRE(q.get_nowait() == 2);
    REQUIRE(q.try_get() == 3);
    REQUIRE(q.empty());
    REQUIRE_THROWS_AS(q.get_nowait(), mproc::Empty);
    REQUIRE_THROWS_AS(q.get(20ms), mproc::Empty);
    REQUIRE_FALSE(q.try_get(10ms).has_value());
}

TEST_CASE("Queue: a blocked get wakes when another process puts", "[queue]") {
    mproc::Queue<long> q;
    mproc::Event about_to_get;
    pid_t pid = fork_child([&] {
        check(about_to_get.wait(kLong), "parent never got ready");
        q.put(42);
    });
    about_to_get.set();
    REQUIRE(q.get(kLong) == 42);
    REQUIRE(wait_child(pid) == 0);
}

TEST_CASE("Queue: a blocked put wakes when another process gets", "[queue]") {
    mproc::Queue<int> q(1);
    q.put(1);
    mproc::Event about_to_put;
    pid_t pid = fork_child([&] {
        check(about_to_put.wait(kLong), "parent never got ready");
        check(q.get(kLong) == 1, "wrong first item");
        check(q.get(kLong) == 2, "wrong second item");
    });
    about_to_put.set();
    q.put(2, kLong);  // blocks until the child made room
    REQUIRE(wait_child(pid) == 0);
}

TEST_CASE("Queue: 4 producer processes, 2 consumer processes, FIFO per producer", "[queue]") {
    constexpr int kProducers = 4, kConsumers = 2, kItems = 50000;
    mproc::Queue<Tagged> q(0, mproc::QueueOptions{.capacity = 64 * 1024});
    mproc::Array<long> got(kProducers);          // items received per producer
    mproc::Array<long> seq_sum(kProducers);      // sum of their sequence numbers
    std::vector<pid_t> pids;
    for (int c = 0; c < kConsumers; ++c)
        pids.push_back(fork_child([&] {
            std::vector<long> last(kProducers, -1);
            for (;;) {
                Tagged t = q.get(kLong);
                if (t.producer == UINT32_MAX) return;
                check(t.producer < kProducers, "bad producer id");
                check(static_cast<long>(t.seq) > last[t.producer], "out of order for its producer");
                last[t.producer] = t.seq;
                std::atomic_ref<long>(got[t.producer]).fetch_add(1);
                std::atomic_ref<long>(seq_sum[t.producer]).fetch_add(t.seq);
            }
        }));
    std::vector<pid_t> producers;
    for (int p = 0; p < kProducers; ++p)
        producers.push_back(fork_child([&, p] {
            for (int i = 0; i < kItems; ++i)
                q.put(Tagged{static_cast<std::uint32_t>(p), static_cast<std::uint32_t>(i)}, kLong);
        }));
    for (pid_t pid : producers) REQUIRE(wait_child(pid) == 0);
    for (int c = 0; c < kConsumers; ++c) q.put(Tagged{UINT32_MAX, 0});
    for (pid_t pid : pids) REQUIRE(wait_child(pid) == 0);
    for (int p = 0; p < kProducers; ++p) {
        REQUIRE(got[p] == kItems);
        REQUIRE(seq_sum[p] == long{kItems} * (kItems - 1) / 2);
    }
    REQUIRE(q.empty());
}

TEST_CASE("Queue: items larger than the ring go through intact", "[queue][large]") {
    struct Big {
        std::uint32_t n;
        unsigned char bytes[200000];
    };
    mproc::Queue<Big> q(0, mproc::QueueOptions{.capacity = 4096});  // ring far smaller than an item
    pid_t pid = fork_child([&] {
        auto b = std::make_unique<Big>();
        for (std::uint32_t k = 0; k < 5; ++k) {
            b->n = k;
            for (std::size_t i = 0; i < sizeof b->bytes; ++i) b->bytes[i] = static_cast<unsigned char>(i * 7 + k);
            q.put(*b, kLong);
        }
    });
    auto b = std::make_unique<Big>();
    for (std::uint32_t k = 0; k < 5; ++k) {
        *b = q.get(kLong);
        REQUIRE(b->n == k);
        bool intact = true;
        for (std::size_t i = 0; i < sizeof b->bytes; ++i)
            intact = intact && b->bytes[i] == static_cast<unsigned char>(i * 7 + k);
        REQUIRE(intact);
    }
    REQUIRE(wait_child(pid) == 0);
    REQUIRE(q.empty());
}

TEST_CASE("Queue: close() makes this process's handles unusable", "[queue]") {
    mproc::Queue<int> q;
    auto copy = q;
    q.put(1);
    q.close();
    REQUIRE(q.closed());
    REQUIRE_THROWS_AS(q.put(2), mproc::ValueError);
    REQUIRE_THROWS_AS(copy.get(), mproc::ValueError);
}

TEST_CASE("Queue: close() from one thread stops another thread's use of the queue", "[queue][threads]") {
    mproc::Queue<int> q;
    std::atomic<bool> started{false}, stopped{false};
    std::thread user([&] {
        try {
            for (;;) {
                q.put(1);
                q.get();
                started = true;
            }
        } catch (const mproc::ValueError&) {
            stopped = true;
        }
    });
    while (!started) std::this_thread::yield();
    q.close();
    user.join();
    REQUIRE(stopped);
    REQUIRE(q.closed());
}

TEST_CASE("Queue: consume() leaves the item when the handler throws", "[queue]") {
    mproc::Queue<int> q;
    q.put(7);
    REQUIRE_THROWS_AS(q.consume([](int) { throw std::runtime_error("not now"); }), std::runtime_error);
    REQUIRE(q.qsize() == 1);
    int seen = 0;
    REQUIRE(q.consume([&](int x) { seen = x; }));
    REQUIRE(seen == 7);
    REQUIRE(q.empty());
    REQUIRE_FALSE(q.consume([](int) {}, Duration(0)));
}

TEST_CASE("JoinableQueue: join waits for task_done from worker processes", "[queue][joinable]") {
    mproc::JoinableQueue<int> q;
    REQUIRE(q.join(Duration(0)));
    for (int i = 0; i < 100; ++i) q.put(i);
    REQUIRE_FALSE(q.join(10ms));
    std::vector<pid_t> pids;
    for (int w = 0; w < 2; ++w)
        pids.push_back(fork_child([&] {
            while (auto x = q.try_get(Duration(0))) q.task_done();
        }));
    REQUIRE(q.join(kLong));
    for (pid_t pid : pids) REQUIRE(wait_child(pid) == 0);
    REQUIRE_THROWS_AS(q.task_done(), mproc::ValueError);
}

TEST_CASE("SimpleQueue: put, get, empty between processes", "[queue][simple]") {
    mproc::SimpleQueue<double> q;
    REQUIRE(q.empty());
    pid_t pid = fork_child([&] {
        for (int i = 0; i < 1000; ++i) q.put(i * 0.5);
    });
    double sum = 0;
    for (int i = 0; i < 1000; ++i) sum += q.get();
    REQUIRE(sum == 0.5 * 999 * 1000 / 2);
    REQUIRE(wait_child(pid) == 0);
}

// ---- across start methods ---------------------------------------------------

#include <mproc/process.hpp>

namespace {
void echo_doubled(mproc::Queue<long> in, mproc::Queue<long> out, int n) {
    for (int i = 0; i < n; ++i) out.put(in.get() * 2);
}
void put_strings(mproc::Queue<std::string> q, int n) {
    for (int i = 0; i < n; ++i) q.put(std::string(static_cast<std::size_t>(i % 50), 'x') + std::to_string(i));
}
void join_worker(mproc::JoinableQueue<int> q, mproc::Value<long> sum) {
    for (;;) {
        int x = q.get();
        if (x < 0) {
            q.task_done();
            return;
        }
        {
            auto g = sum.get_lock();
            sum.value() += x;
        }
        q.task_done();
    }
}
}  // namespace

TEST_CASE("Queue handles cross into fork, spawn and forkserver children", "[queue][process]") {
    for (auto method : {mproc::StartMethod::fork, mproc::StartMethod::spawn, mproc::StartMethod::forkserver}) {
        mproc::Queue<long> in, out;
        mproc::Process p(echo_doubled, in, out, 1000);
        p.start_method(method).start();
        for (long i = 0; i < 1000; ++i) in.put(i);
        long sum = 0;
        for (int i = 0; i < 1000; ++i) sum += out.get(kLong);
        REQUIRE(sum == 2 * 999 * 1000 / 2);
        REQUIRE(p.join(kLong));
        REQUIRE(p.exitcode() == 0);
    }
}

TEST_CASE("Queue<std::string>: serialized items from a spawned child, some larger than the ring",
          "[queue][process]") {
    mproc::Queue<std::string> q(0, mproc::QueueOptions{.capacity = 4096});
    mproc::Process p(put_strings, q, 200);
    p.start_method(mproc::StartMethod::spawn).start();
    for (int i = 0; i < 200; ++i)
        REQUIRE(q.get(kLong) == std::string(static_cast<std::size_t>(i % 50), 'x') + std::to_string(i));
    REQUIRE(p.join(kLong));
    std::string big(100000, 'b');
    q.put(big);  // far over a quarter of the 4 KiB ring: travels in its own segment
    REQUIRE(q.get() == big);
}

TEST_CASE("JoinableQueue: join() across spawned workers", "[queue][joinable][process]") {
    mproc::JoinableQueue<int> q;
    mproc::Value<long> sum(0);
    std::vector<mproc::Process> workers;
    for (int w = 0; w < 2; ++w) {
        workers.emplace_back(join_worker, q, sum);
        workers.back().start_method(mproc::StartMethod::spawn).start();
    }
    for (int i = 1; i <= 500; ++i) q.put(i);
    REQUIRE(q.join(kLong));
    REQUIRE(sum.load() == 500 * 501 / 2);
    q.put(-1);
    q.put(-1);
    for (auto& w : workers) REQUIRE(w.join(kLong));
    REQUIRE(q.join(kLong));
}
