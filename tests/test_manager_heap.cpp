// The manager heap's striped free lists (lib/manager/heap.hpp): a block
// given back on one CPU is taken on another before the heap grows, the
// bytes in use add up across stripes, and threads on different CPUs that
// allocate, hand over and free blocks concurrently never get one block
// twice.
#include <catch2/catch.hpp>

#include <atomic>
#include <cstring>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include <sched.h>

#include "manager/heap.hpp"
#include "mproc/detail/segment.hpp"

namespace {

using mproc::detail::Segment;
using mproc::detail::mgr::Heap;
using mproc::detail::mgr::kStripes;

/// The CPUs this process may run on.
std::vector<int> allowed_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    std::vector<int> cpus;
    if (::sched_getaffinity(0, sizeof set, &set) != 0) return cpus;
    for (int c = 0; c < CPU_SETSIZE; ++c)
        if (CPU_ISSET(c, &set)) cpus.push_back(c);
    return cpus;
}

/// Two allowed CPUs whose stripes differ, or {-1, -1}.
std::pair<int, int> two_stripes() {
    const auto cpus = allowed_cpus();
    for (int a : cpus)
        for (int b : cpus)
            if (static_cast<unsigned>(a) % kStripes != static_cast<unsigned>(b) % kStripes) return {a, b};
    return {-1, -1};
}

/// Binds the calling thread to `cpu`; true if it now runs there.
bool bind_to(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return ::pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0 && sched_getcpu() == cpu;
}

/// Runs f on a thread bound to `cpu`; false if it could not be bound.
template <class F>
bool on_cpu(int cpu, F&& f) {
    bool bound = false;
    std::thread t([&] {
        bound = bind_to(cpu);
        if (bound) f();
    });
    t.join();
    return bound;
}

struct TestHeap {
    std::shared_ptr<Segment> seg = Segment::anonymous(64u << 20, "mproc-test-heap");
    TestHeap() { Heap::format(*seg, seg->size()); }
    Heap heap() const { return Heap(*seg); }
};

}  // namespace

TEST_CASE("Manager heap: blocks freed on one CPU are taken on another before the heap grows", "[manager][heap]") {
    const auto [a, b] = two_stripes();
    if (a < 0) {
        WARN("one CPU (or one stripe) only: nothing to cross");
        return;
    }
    TestHeap th;
    const Heap heap = th.heap();
    std::vector<std::uint64_t> blocks;
    REQUIRE(on_cpu(a, [&] {
        for (int i = 0; i < 1000; ++i) blocks.push_back(heap.alloc(200));
        for (std::uint64_t off : blocks) heap.free(off);
    }));
    const std::uint64_t bump = heap.header().bump.load();
    CHECK(heap.header().used() == 0);
    const std::set<std::uint64_t> freed(blocks.begin(), blocks.end());
    std::vector<std::uint64_t> again;
    REQUIRE(on_cpu(b, [&] {
        for (int i = 0; i < 1000; ++i) again.push_back(heap.alloc(200));
    }));
    CHECK(heap.header().bump.load() == bump);  // every one came from a free list
    for (std::uint64_t off : again) CHECK(freed.count(off) == 1);
    CHECK(heap.header().used() == 1000u * 256u);  // 200 bytes and a 16-byte header: 256-byte blocks
    REQUIRE(on_cpu(a, [&] {
        for (std::uint64_t off : again) heap.free(off);  // given back to the first stripe
    }));
    CHECK(heap.header().used() == 0);
}

TEST_CASE("Manager heap: threads on different CPUs hand blocks to each other, none is given twice",
          "[manager][heap]") {
    const auto cpus = allowed_cpus();
    REQUIRE(!cpus.empty());
    TestHeap th;
    const Heap heap = th.heap();
    constexpr int kThreads = 4, kRounds = 2000, kBatch = 16;
    std::mutex mu;
    std::vector<std::uint64_t> handed;  // allocated by one thread, freed by the next that comes
    std::atomic<int> bad{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < kThreads; ++t)
        ts.emplace_back([&, t] {
            (void)bind_to(cpus[static_cast<std::size_t>(t) % cpus.size()]);  // unbound still races
            auto size = [](int r, int i) { return 8 + static_cast<std::uint64_t>((r * 7 + i * 13) % 200); };
            for (int r = 0; r < kRounds; ++r) {
                std::uint64_t mine[kBatch];
                for (int i = 0; i < kBatch; ++i) {
                    mine[i] = heap.alloc(size(r, i));
                    std::memset(heap.at(mine[i]), t + 1, size(r, i));
                }
                // Each block holds only this thread's bytes until it is let go.
                for (int i = 0; i < kBatch; ++i) {
                    const std::uint64_t n = size(r, i);
                    const auto* p = heap.at<unsigned char>(mine[i]);
                    for (std::uint64_t j = 0; j < n; ++j)
                        if (p[j] != t + 1) {
                            ++bad;
                            break;
                        }
                }
                std::vector<std::uint64_t> theirs;
                {
                    std::lock_guard<std::mutex> g(mu);
                    theirs.swap(handed);
                    handed.assign(mine, mine + kBatch / 2);
                }
                for (int i = kBatch / 2; i < kBatch; ++i) heap.free(mine[i]);
                for (std::uint64_t off : theirs) heap.free(off);
            }
        });
    for (auto& t : ts) t.join();
    for (std::uint64_t off : handed) heap.free(off);
    CHECK(bad.load() == 0);
    CHECK(heap.header().used() == 0);
}
