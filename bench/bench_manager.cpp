// Manager dict throughput: set/get operations per second on one shared
// dict<std::string, int>, from 1 process and from 2 processes at once,
// against what a user would otherwise use in the same run:
//  - Python's multiprocessing Manager().dict() (python3), the thing ported
//    (a server process, a round trip per operation); mproc's own served
//    manager is the like-for-like figure: over TCP against Python's manager
//    served on TCP, and over a unix socket against Python's default
//    Manager(), which listens on one (also with
//    ConnectOptions::pipeline_stores, where a set does not wait for its
//    reply);
//  - a Boost.Interprocess map in managed shared memory guarded by an
//    interprocess_mutex, the hand-rolled C++ alternative (not crash-safe:
//    a process killed holding the mutex or mid-insert breaks it).
// The workload alternates d[key] = i and d.get(key) over 1000 keys. Medians
// of 5 runs, Python's too, all in the same run. Also: how long a process
// blocked in a manager Queue's get() takes to wake after shutdown().
#include <mproc/mproc.hpp>

#include <boost/interprocess/allocators/allocator.hpp>
#include <boost/interprocess/containers/map.hpp>
#include <boost/interprocess/containers/string.hpp>
#include <boost/interprocess/managed_external_buffer.hpp>
#include <boost/interprocess/sync/interprocess_mutex.hpp>
#include <boost/interprocess/sync/scoped_lock.hpp>

#include <cstdio>
#include <string>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

#include "bench_util.hpp"

namespace bip = boost::interprocess;

namespace {

constexpr int kReps = 5;
constexpr int kKeys = 1000;
constexpr long kOps = 1'000'000;  // per process

std::vector<std::string> make_keys() {
    std::vector<std::string> k;
    for (int i = 0; i < kKeys; ++i) k.push_back("key" + std::to_string(i));
    return k;
}
const std::vector<std::string> g_keys = make_keys();

void mproc_ops(mproc::DictProxy<std::string, int> d, long ops, int seed) {
    long sink = 0;
    for (long i = 0; i < ops; ++i) {
        const std::string& k = g_keys[static_cast<std::size_t>((i * 7 + seed) % kKeys)];
        if (i & 1) sink += d.get(k, 0);
        else d.set(k, static_cast<int>(i));
    }
    if (sink == -1) std::puts("");
}

// Runs `body(worker)` in `procs` forked processes released together;
// returns operations per second over all of them.
template <class Body>
double ops_per_sec(int procs, long ops, Body body) {
    return bench::median_of(kReps, [&] {
        mproc::Barrier start(static_cast<unsigned>(procs) + 1);
        std::vector<mproc::Process> ps;
        for (int w = 0; w < procs; ++w)
            ps.emplace_back([&, w] {
                start.wait();
                body(w);
            }).start_method(mproc::StartMethod::fork).start();
        start.wait();
        auto t0 = bench::Clock::now();
        for (auto& p : ps) p.join();
        return static_cast<double>(ops) * procs / bench::seconds_since(t0);
    });
}

// One producer process puts `n` ints on a manager Queue, this one gets them.
double queue_items_per_sec(mproc::Manager& mgr, long n) {
    return bench::median_of(kReps, [&] {
        auto q = mgr.Queue<long>(1000);
        mproc::Process p([](mproc::QueueProxy<long> q, long n) {
            for (long i = 0; i < n; ++i) q.put(i);
        }, q, n);
        auto t0 = bench::Clock::now();
        p.start();
        for (long i = 0; i < n; ++i) q.get();
        p.join();
        return static_cast<double>(n) / bench::seconds_since(t0);
    });
}

std::optional<double> python_queue_items_per_sec(long n) {
    std::string code = R"PY(
import multiprocessing as mp, time, statistics
def produce(q, n):
    for i in range(n): q.put(i)
def once(n):
    with mp.Manager() as m:
        q = m.Queue(1000)
        p = mp.Process(target=produce, args=(q, n))
        t0 = time.perf_counter()
        p.start()
        for _ in range(n): q.get()
        p.join()
        return n / (time.perf_counter() - t0)
if __name__ == "__main__":
    mp.set_start_method("fork")
    print(statistics.median(once(N) for _ in range(5)))
)PY";
    code.replace(code.find("once(N)"), 7, "once(" + std::to_string(n) + ")");
    return bench::python_figure(code);
}

// A child blocked in get() on an empty manager Queue; the time from
// shutdown() to its waking with ValueError (CLOCK_MONOTONIC, one clock for
// every process). Median of kReps, in microseconds.
double shutdown_wake_us() {
    return bench::median_of(kReps, [] {
        mproc::Manager mgr;
        auto q = mgr.Queue<int>();
        auto woke = mproc::Value<long>(0);
        mproc::Event ready;
        mproc::Process p(
            [](mproc::QueueProxy<int> q, mproc::Value<long> woke, mproc::Event ready) {
                ready.set();
                try {
                    (void)q.get();
                } catch (const mproc::ValueError&) {
                    woke.store(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   bench::Clock::now().time_since_epoch()).count());
                }
            },
            q, woke, ready);
        p.start_method(mproc::StartMethod::fork).start();
        ready.wait();
        ::usleep(50'000);  // asleep in the kernel by now (a benchmark may wait; a test may not)
        const long t0 =
            std::chrono::duration_cast<std::chrono::nanoseconds>(bench::Clock::now().time_since_epoch()).count();
        mgr.shutdown();
        p.join();
        return static_cast<double>(woke.load() - t0) / 1e3;
    });
}

// ---- Boost.Interprocess -----------------------------------------------------------

using Segment = bip::managed_external_buffer;
using CharAlloc = bip::allocator<char, Segment::segment_manager>;
using ShmString = bip::basic_string<char, std::char_traits<char>, CharAlloc>;
using PairAlloc = bip::allocator<std::pair<const ShmString, int>, Segment::segment_manager>;
using ShmMap = bip::map<ShmString, int, std::less<ShmString>, PairAlloc>;

struct BoostDict {
    bip::interprocess_mutex mu;
    ShmMap* map = nullptr;
};

void boost_ops(Segment& seg, BoostDict* d, long ops, int seed) {
    long sink = 0;
    ShmString key(CharAlloc(seg.get_segment_manager()));
    for (long i = 0; i < ops; ++i) {
        const std::string& k = g_keys[static_cast<std::size_t>((i * 7 + seed) % kKeys)];
        key.assign(k.begin(), k.end());
        bip::scoped_lock<bip::interprocess_mutex> g(d->mu);
        if (i & 1) {
            auto it = d->map->find(key);
            sink += it == d->map->end() ? 0 : it->second;
        } else {
            auto [it, inserted] = d->map->try_emplace(key, static_cast<int>(i));
            if (!inserted) it->second = static_cast<int>(i);
        }
    }
    if (sink == -1) std::puts("");
}

// ---- Python ------------------------------------------------------------------------

/// Python's Manager().dict(): `tcp` served on 127.0.0.1 (SyncManager with a
/// TCP address), else Manager()'s default, a unix socket.
std::optional<double> python_ops(int procs, long ops, bool tcp) {
    std::string code = R"PY(
import multiprocessing as mp, multiprocessing.managers, time, statistics
KEYS = ["key%d" % i for i in range(1000)]
def work(d, ops, seed, start):
    start.wait()
    s = 0
    for i in range(ops):
        k = KEYS[(i * 7 + seed) % 1000]
        if i & 1: s += d.get(k, 0)
        else: d[k] = i
def once(procs, ops):
    with (mp.managers.SyncManager(address=("127.0.0.1", 0)) if TCP else mp.Manager()) as m:
        d = m.dict()
        start = mp.Barrier(procs + 1)
        ps = [mp.Process(target=work, args=(d, ops, w, start)) for w in range(procs)]
        for p in ps: p.start()
        start.wait()
        t0 = time.perf_counter()
        for p in ps: p.join()
        return ops * procs / (time.perf_counter() - t0)
if __name__ == "__main__":
    mp.set_start_method("fork")
    print(statistics.median(once(PROCS, OPS) for _ in range(5)))
)PY";
    code.replace(code.find("PROCS, OPS"), 10, std::to_string(procs) + ", " + std::to_string(ops));
    code.replace(code.find("if TCP"), 6, tcp ? "if True" : "if False");
    return bench::python_figure(code);
}

}  // namespace

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    bench::group("Manager dict<string,int>: alternating set/get over %d keys, ops/s (median of %d)\n", kKeys,
                kReps);

    mproc::Manager mgr;
    auto d = mgr.dict<std::string, int>();
    for (int i = 0; i < kKeys; ++i) d.set(g_keys[static_cast<std::size_t>(i)], 0);
    const double m1 = ops_per_sec(1, kOps, [&](int w) { mproc_ops(d, kOps, w); });
    const double m2 = ops_per_sec(2, kOps, [&](int w) { mproc_ops(d, kOps, w); });
    auto d2 = mgr.dict<std::string, int>();
    const double m2s = ops_per_sec(2, kOps, [&](int w) { mproc_ops(w ? d2 : d, kOps, w); });

    // Served over TCP on localhost: a round trip per operation, as Python's.
    mgr.publish("d", d);
    const std::string address = mgr.serve();
    const long remote_ops = 50'000;
    const double r1 = ops_per_sec(1, remote_ops, [&](int w) {
        auto remote = mproc::Manager::connect(address);
        mproc_ops(remote.lookup<mproc::DictProxy<std::string, int>>("d"), remote_ops, w);
    });
    const double r2 = ops_per_sec(2, remote_ops, [&](int w) {
        auto remote = mproc::Manager::connect(address);
        mproc_ops(remote.lookup<mproc::DictProxy<std::string, int>>("d"), remote_ops, w);
    });
    const mproc::ConnectOptions pipelined{.pipeline_stores = true};
    const double rp1 = ops_per_sec(1, remote_ops, [&](int w) {
        auto remote = mproc::Manager::connect(address, mproc::current_process().authkey(), pipelined);
        mproc_ops(remote.lookup<mproc::DictProxy<std::string, int>>("d"), remote_ops, w);
    });
    const double rp2 = ops_per_sec(2, remote_ops, [&](int w) {
        auto remote = mproc::Manager::connect(address, mproc::current_process().authkey(), pipelined);
        mproc_ops(remote.lookup<mproc::DictProxy<std::string, int>>("d"), remote_ops, w);
    });

    // Served on a unix socket (an abstract name), as Python's Manager() is.
    mproc::Manager unix_mgr;
    auto du = unix_mgr.dict<std::string, int>();
    for (int i = 0; i < kKeys; ++i) du.set(g_keys[static_cast<std::size_t>(i)], 0);
    unix_mgr.publish("d", du);
    const std::string unix_address = unix_mgr.serve("@mproc-bench-manager-" + std::to_string(::getpid()));
    const double ru1 = ops_per_sec(1, remote_ops, [&](int w) {
        auto remote = mproc::Manager::connect(unix_address);
        mproc_ops(remote.lookup<mproc::DictProxy<std::string, int>>("d"), remote_ops, w);
    });
    const double ru2 = ops_per_sec(2, remote_ops, [&](int w) {
        auto remote = mproc::Manager::connect(unix_address);
        mproc_ops(remote.lookup<mproc::DictProxy<std::string, int>>("d"), remote_ops, w);
    });

    const std::size_t bytes = std::size_t{64} << 20;
    void* mem = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return 1;
    Segment seg(bip::create_only, mem, bytes);
    auto* bd = seg.construct<BoostDict>(bip::anonymous_instance)();
    bd->map = seg.construct<ShmMap>(bip::anonymous_instance)(std::less<ShmString>(),
                                                              PairAlloc(seg.get_segment_manager()));
    const double b1 = ops_per_sec(1, kOps, [&](int w) { boost_ops(seg, bd, kOps, w); });
    const double b2 = ops_per_sec(2, kOps, [&](int w) { boost_ops(seg, bd, kOps, w); });

    const double mq = queue_items_per_sec(mgr, 200'000);
    const double wake = shutdown_wake_us();
    const auto pq = python_queue_items_per_sec(10'000);

    const long py_ops = 20'000;
    const auto p1 = python_ops(1, py_ops, false);
    const auto p2 = python_ops(2, py_ops / 2, false);
    const auto pt1 = python_ops(1, py_ops, true);
    const auto pt2 = python_ops(2, py_ops / 2, true);

    bench::row("mproc Manager dict, 1 process", m1, "ops/s");
    bench::row("mproc Manager dict, 2 processes, one dict", m2, "ops/s");
    bench::row("mproc Manager dict, 2 processes, a dict each", m2s, "ops/s");
    bench::row("mproc connected Manager (TCP localhost), 1 process", r1, "ops/s");
    bench::row("mproc connected Manager (TCP localhost), 2 processes", r2, "ops/s");
    bench::row("mproc connected, pipelined stores, 1 process", rp1, "ops/s");
    bench::row("mproc connected, pipelined stores, 2 processes", rp2, "ops/s");
    bench::row("mproc connected Manager (unix socket), 1 process", ru1, "ops/s");
    bench::row("mproc connected Manager (unix socket), 2 processes", ru2, "ops/s");
    bench::row("Boost.Interprocess map + mutex, 1 process", b1, "ops/s");
    bench::row("Boost.Interprocess map + mutex, 2 processes", b2, "ops/s");
    if (p1 && p2 && pt1 && pt2) {
        bench::row("Python Manager().dict(), 1 process", *p1, "ops/s");
        bench::row("Python Manager().dict(), 2 processes", *p2, "ops/s");
        bench::row("Python Manager().dict() served on TCP, 1 process", *pt1, "ops/s");
        bench::row("Python Manager().dict() served on TCP, 2 processes", *pt2, "ops/s");
        bench::ratio("mproc / Python, 1 process", m1 / *p1);
        bench::ratio("mproc / Python, 2 processes", m2 / *p2);
        bench::ratio("mproc connected / Python, both on TCP, 1 process", r1 / *pt1);
        bench::ratio("mproc connected / Python, both on TCP, 2 processes", r2 / *pt2);
        bench::ratio("mproc connected, pipelined / Python, both on TCP, 1 process", rp1 / *pt1);
        bench::ratio("mproc connected, pipelined / Python, both on TCP, 2 processes", rp2 / *pt2);
        bench::ratio("mproc connected / Python, both on a unix socket, 1 process", ru1 / *p1);
        bench::ratio("mproc connected / Python, both on a unix socket, 2 processes", ru2 / *p2);
        bench::ratio("mproc connected (TCP) / Python Manager() (unix), 1 process", r1 / *p1);
        if (pq) {
            bench::row("mproc Manager Queue<long>, 1 -> 1 process", mq, "items/s");
            bench::row("Python Manager().Queue(), 1 -> 1 process", *pq, "items/s");
            bench::ratio("mproc / Python, Queue", mq / *pq);
        }
    } else {
        std::printf("  (python3 not available: no Python comparison)\n");
    }
    bench::row("manager Queue get(): shutdown() to the blocked process awake", wake, "us");
    bench::ratio("mproc / Boost.Interprocess, 1 process", m1 / b1);
    bench::ratio("mproc / Boost.Interprocess, 2 processes", m2 / b2);
    ::munmap(mem, bytes);
    return 0;
}
