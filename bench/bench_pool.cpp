// Pool benchmark against Python's multiprocessing, one run:
//  - Pool.map per-task overhead on 100 000 trivial tasks, chunksize 1 and default;
//  - ProcessPoolExecutor submit->result round trip, serial and batched;
//  - fib(34) x 8 tasks: parallel efficiency on the available cores;
//  - imap over 10 M inputs with buffersize: peak RSS growth beside Python's
//    imap (each resets its peak with /proc/self/clear_refs first);
//  - the per-task timeout machinery's overhead (map chunksize 1, serial
//    submit, with and without a timeout).
// Figures are medians; ratios are Python's time / mproc's (higher is better).
#include <mproc/mproc.hpp>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "bench_util.hpp"

using namespace bench;

int trivial(int x) { return x + 1; }

// VmHWM (peak RSS) of this process in KiB, after an optional reset.
long peak_rss_kib(bool reset) {
    if (reset) std::ofstream("/proc/self/clear_refs") << "5";
    std::ifstream st("/proc/self/status");
    std::string line;
    while (std::getline(st, line))
        if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
    return -1;
}
long fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    const int procs = mproc::cpu_count();
    const int n = 100'000;
    std::vector<int> in(n);
    for (int i = 0; i < n; ++i) in[static_cast<std::size_t>(i)] = i;

    bench::group("Pool.map, %d trivial tasks, %d workers (fork)\n", n, procs);
    mproc::Pool pool(procs);
    double c1 = median_of(3, [&] {
        auto t0 = Clock::now();
        auto r = pool.map(trivial, in, 1);
        return seconds_since(t0) / n * 1e9;
    });
    double cd = median_of(5, [&] {
        auto t0 = Clock::now();
        auto r = pool.map(trivial, in);
        return seconds_since(t0) / n * 1e9;
    });
    row("mproc map chunksize=1, per task", c1);
    row("mproc map default chunksize, per task", cd);
    auto py1 = python_figure(
        "import multiprocessing as mp, time\n"
        "def f(x): return x+1\n"
        "if __name__=='__main__':\n"
        " with mp.get_context('fork').Pool(" + std::to_string(procs) + ") as p:\n"
        "  p.map(f, range(1000))\n"
        "  ts=[]\n"
        "  for _ in range(3):\n"
        "   t=time.perf_counter(); p.map(f, range(100000), 1); ts.append(time.perf_counter()-t)\n"
        "  print(sorted(ts)[1]/100000*1e9)\n");
    auto pyd = python_figure(
        "import multiprocessing as mp, time\n"
        "def f(x): return x+1\n"
        "if __name__=='__main__':\n"
        " with mp.get_context('fork').Pool(" + std::to_string(procs) + ") as p:\n"
        "  p.map(f, range(1000))\n"
        "  ts=[]\n"
        "  for _ in range(5):\n"
        "   t=time.perf_counter(); p.map(f, range(100000)); ts.append(time.perf_counter()-t)\n"
        "  print(sorted(ts)[2]/100000*1e9)\n");
    if (py1) { row("python map chunksize=1, per task", *py1); ratio("python / mproc (chunksize=1)", *py1 / c1); }
    if (pyd) { row("python map default chunksize, per task", *pyd); ratio("python / mproc (default)", *pyd / cd); }
    pool.close();
    pool.join();

    bench::group("\nProcessPoolExecutor submit->result, %d workers\n", procs);
    {
        mproc::ProcessPoolExecutor ex(procs);
        const int k = 2000;
        double serial = median_of(3, [&] {
            auto t0 = Clock::now();
            for (int i = 0; i < k; ++i) ex.submit(trivial, i).result();
            return seconds_since(t0) / k * 1e9;
        });
        double batched = median_of(3, [&] {
            auto t0 = Clock::now();
            std::vector<mproc::Future<int>> fs;
            fs.reserve(k);
            for (int i = 0; i < k; ++i) fs.push_back(ex.submit(trivial, i));
            for (auto& f : fs) f.result();
            return seconds_since(t0) / k * 1e9;
        });
        row("mproc submit->result serial", serial);
        row("mproc submit->result batched, per task", batched);
        auto pys = python_figure(
            "import concurrent.futures as cf, multiprocessing as mp, time\n"
            "def f(x): return x+1\n"
            "if __name__=='__main__':\n"
            " with cf.ProcessPoolExecutor(" + std::to_string(procs) + ", mp_context=mp.get_context('fork')) as ex:\n"
            "  ex.submit(f,1).result()\n"
            "  t=time.perf_counter()\n"
            "  for i in range(2000): ex.submit(f,i).result()\n"
            "  s=(time.perf_counter()-t)/2000*1e9\n"
            "  print(s)\n");
        auto pyb = python_figure(
            "import concurrent.futures as cf, multiprocessing as mp, time\n"
            "def f(x): return x+1\n"
            "if __name__=='__main__':\n"
            " with cf.ProcessPoolExecutor(" + std::to_string(procs) + ", mp_context=mp.get_context('fork')) as ex:\n"
            "  ex.submit(f,1).result()\n"
            "  t=time.perf_counter()\n"
            "  fs=[ex.submit(f,i) for i in range(2000)]\n"
            "  [x.result() for x in fs]\n"
            "  print((time.perf_counter()-t)/2000*1e9)\n");
        if (pys) { row("python submit->result serial", *pys); ratio("python / mproc (serial)", *pys / serial); }
        if (pyb) { row("python submit->result batched", *pyb); ratio("python / mproc (batched)", *pyb / batched); }
    }

    bench::group("\nfib(34) x 8 tasks, %d workers\n", procs);
    {
        // The serial baseline is a median too: one cold run overstated the
        // efficiency (110%).
        double one = median_of(5, [] {
            auto t0 = Clock::now();
            volatile long sink = fib(34);
            (void)sink;
            return seconds_since(t0);
        });
        mproc::ProcessPoolExecutor ex(procs);
        ex.submit(trivial, 0).result();
        double par = median_of(3, [&] {
            auto t0 = Clock::now();
            std::vector<mproc::Future<long>> fs;
            for (int i = 0; i < 8; ++i) fs.push_back(ex.submit(fib, 34));
            for (auto& f : fs) f.result();
            return seconds_since(t0);
        });
        double eff = (8 * one) / (par * procs);
        row("one fib(34), serial", one * 1e3, "ms");
        row("8 x fib(34) on the pool", par * 1e3, "ms");
        bench::row("parallel efficiency (8*serial / (wall*workers))", eff * 100, "%");
    }

    std::printf("\nimap over 10 M inputs (chunksize 100), %d workers\n", procs);
    {
        mproc::Pool p(procs);
        const long items = 10'000'000;
        double growth = 0;
        double secs = median_of(3, [&] {
            const long before = peak_rss_kib(true);
            auto t0 = Clock::now();
            long sum = 0;
            for (int x : p.imap(trivial, std::views::iota(0, static_cast<int>(items)),
                                {.chunksize = 100, .buffersize = 64}))
                sum += x;
            double s = seconds_since(t0);
            growth = static_cast<double>(peak_rss_kib(false) - before);
            if (sum == 0) std::printf("?");
            return s;
        });
        row("mproc imap buffersize=64, wall", secs * 1e3, "ms");
        row("mproc imap buffersize=64, peak RSS growth", growth / 1024.0, "MiB");
        auto pyt = python_figure(
            "import multiprocessing as mp, time\n"
            "def f(x): return x+1\n"
            "def hwm():\n"
            "  for l in open('/proc/self/status'):\n"
            "    if l.startswith('VmHWM:'): return int(l.split()[1])\n"
            "if __name__=='__main__':\n"
            " with mp.get_context('fork').Pool(" + std::to_string(procs) + ") as p:\n"
            "  open('/proc/self/clear_refs','w').write('5')\n"
            "  b=hwm(); t=time.perf_counter(); s=0\n"
            "  for x in p.imap(f, range(10000000), 100): s+=x\n"
            "  print((hwm()-b)/1024, time.perf_counter()-t)\n");
        if (pyt) row("python imap chunksize=100, peak RSS growth", *pyt, "MiB");
    }

    std::printf("\nper-task timeout machinery, %d workers\n", procs);
    {
        mproc::Pool p(procs);
        const int m = 50'000;
        std::vector<int> xs(in.begin(), in.begin() + m);
        double plain = median_of(3, [&] {
            auto t0 = Clock::now();
            auto r = p.map(trivial, xs, 1);
            return seconds_since(t0) / m * 1e9;
        });
        double timed = median_of(3, [&] {
            auto t0 = Clock::now();
            auto r = p.map(trivial, xs, {.chunksize = 1, .task_timeout = std::chrono::seconds(60)});
            return seconds_since(t0) / m * 1e9;
        });
        row("map chunksize=1, per task, no timeout", plain);
        row("map chunksize=1, per task, task_timeout=60s", timed);
        mproc::ProcessPoolExecutor ex(procs);
        const int k = 2000;
        double s_plain = median_of(3, [&] {
            auto t0 = Clock::now();
            for (int i = 0; i < k; ++i) ex.submit(trivial, i).result();
            return seconds_since(t0) / k * 1e9;
        });
        double s_timed = median_of(3, [&] {
            auto t0 = Clock::now();
            for (int i = 0; i < k; ++i) ex.submit(mproc::TaskOptions{.timeout = std::chrono::seconds(60)}, trivial, i).result();
            return seconds_since(t0) / k * 1e9;
        });
        row("submit->result serial, no timeout", s_plain);
        row("submit->result serial, timeout=60s", s_timed);
    }
    return 0;
}
