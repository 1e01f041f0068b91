// The seeds' two patterns, mproc against their Python originals, in one run:
//  - block sum: 10 processes each sum a block of a 1 000 000-double array and
//    put the partial sum on a Queue (start, compute, join, drain);
//  - two-queue fib: 4 workers get n from a task queue and put fib(n) on a
//    result queue until a sentinel (fib(25), 4 tasks, then 10 000 fib(10)
//    tasks to show per-message cost).
// Both with the fork start method (Python's default on Linux). Medians.
#include <mproc/mproc.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <random>
#include <vector>

#include "bench_util.hpp"

namespace {

constexpr int kReps = 5;

void compute_sum(mproc::Array<double> arr, std::size_t start, std::size_t end, mproc::Queue<double> q) {
    double sum = 0;
    for (std::size_t i = start; i < end; ++i) sum += arr[i];
    q.put(sum);
}

long fib(int n) { return n <= 2 ? 1 : fib(n - 1) + fib(n - 2); }

void worker(mproc::Queue<std::optional<int>> inq, mproc::Queue<long> outq) {
    while (std::optional<int> n = inq.get()) outq.put(fib(*n));
}

double block_sum_ms(const mproc::Array<double>& arr) {
    return bench::median_of(kReps, [&] {
        auto t0 = bench::Clock::now();
        mproc::Queue<double> q;
        const std::size_t blocks = 10, bs = (arr.size() + blocks - 1) / blocks;
        std::vector<mproc::Process> ws;
        for (std::size_t i = 0; i < blocks; ++i)
            ws.emplace_back(compute_sum, arr, i * bs, std::min((i + 1) * bs, arr.size()), q);
        for (auto& w : ws) w.start();
        for (auto& w : ws) w.join();
        double par = 0;
        for (std::size_t i = 0; i < blocks; ++i) par += q.get();
        const double ms = bench::seconds_since(t0) * 1e3;
        double seq = 0;
        for (std::size_t i = 0; i < arr.size(); ++i) seq += arr[i];
        if (std::abs(par - seq) > 1e-6 * std::abs(seq) + 1e-9) {
            std::fprintf(stderr, "bench_seeds: block sum %.17g != sequential sum %.17g\n", par, seq);
            std::exit(1);
        }
        return ms;
    });
}

double fib_ms(int workers, int tasks, int n) {
    return bench::median_of(kReps, [&] {
        auto t0 = bench::Clock::now();
        mproc::Queue<std::optional<int>> inq;
        mproc::Queue<long> outq;
        for (int i = 0; i < tasks; ++i) inq.put(n);
        std::vector<mproc::Process> ws;
        for (int i = 0; i < workers; ++i) ws.emplace_back(worker, inq, outq).start();
        for (int i = 0; i < tasks; ++i) outq.get();
        for (int i = 0; i < workers; ++i) inq.put(std::nullopt);
        for (auto& w : ws) w.join();
        return bench::seconds_since(t0) * 1e3;
    });
}

const char* kPy =
    "import multiprocessing as mp, random, math, time, statistics\n"
    "def compute_sum(arr, s, e, q):\n"
    "    t = 0\n"
    "    for i in range(s, e): t += arr[i]\n"
    "    q.put(t)\n"
    "def fib(n): return 1 if n <= 2 else fib(n-1) + fib(n-2)\n"
    "def worker(inq, outq):\n"
    "    while True:\n"
    "        n = inq.get()\n"
    "        if n is None: return\n"
    "        outq.put(fib(n))\n"
    "def block_sum(arr):\n"
    "    t = time.perf_counter(); q = mp.Queue(); blocks = 10; bs = math.ceil(len(arr) / blocks)\n"
    "    ws = [mp.Process(target=compute_sum, args=(arr, i*bs, min((i+1)*bs, len(arr)), q)) for i in range(blocks)]\n"
    "    for w in ws: w.start()\n"
    "    for w in ws: w.join()\n"
    "    s = 0\n"
    "    while not q.empty(): s += q.get()\n"
    "    return (time.perf_counter() - t) * 1e3\n"
    "def fibq(workers, tasks, n):\n"
    "    t = time.perf_counter(); inq = mp.Queue(); outq = mp.Queue()\n"
    "    for i in range(tasks): inq.put(n)\n"
    "    ws = [mp.Process(target=worker, args=(inq, outq)) for _ in range(workers)]\n"
    "    for w in ws: w.start()\n"
    "    for i in range(tasks): outq.get()\n"
    "    for i in range(workers): inq.put(None)\n"
    "    for w in ws: w.join()\n"
    "    return (time.perf_counter() - t) * 1e3\n"
    "if __name__ == '__main__':\n"
    "    mp.set_start_method('fork')\n";

std::optional<double> py(const std::string& expr) {
    return bench::python_figure(std::string(kPy) + "    " + expr + "\n");
}

}  // namespace

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    mproc::set_fork_warning(false);
    std::printf("seed patterns, mproc vs Python's originals (fork; median of %d runs)\n\n", kReps);

    mproc::Array<double> arr(1'000'000);
    std::mt19937_64 rng(1);
    std::uniform_real_distribution<double> u;
    for (double& x : arr) x = u(rng);

    double m1 = block_sum_ms(arr);
    auto p1 = py("arr = [random.random() for _ in range(1_000_000)]; "
                 "print(statistics.median(block_sum(arr) for _ in range(5)))");
    bench::group("block sum, 10 processes over 1 000 000 doubles (ms)\n");
    bench::row("mproc", m1, "ms");
    if (p1) bench::row("python multiprocessing", *p1, "ms");
    if (p1) bench::ratio("python / mproc", *p1 / m1);

    double m2 = fib_ms(4, 4, 25);
    auto p2 = py("print(statistics.median(fibq(4, 4, 25) for _ in range(5)))");
    bench::group("\ntwo-queue fib, 4 workers, 4 x fib(25) (ms)\n");
    bench::row("mproc", m2, "ms");
    if (p2) bench::row("python multiprocessing", *p2, "ms");
    if (p2) bench::ratio("python / mproc", *p2 / m2);

    double m3 = fib_ms(4, 10000, 10);
    auto p3 = py("print(statistics.median(fibq(4, 10000, 10) for _ in range(5)))");
    bench::group("\ntwo-queue fib, 4 workers, 10 000 x fib(10): per-message cost (ms)\n");
    bench::row("mproc", m3, "ms");
    if (p3) bench::row("python multiprocessing", *p3, "ms");
    if (p3) bench::ratio("python / mproc", *p3 / m3);
    return 0;
}
