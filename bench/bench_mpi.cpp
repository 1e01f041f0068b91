// bench_mpi: mproc::mpi's per-task overhead next to mpi4py.futures' in the
// same run, with the same number of workers, and the parallel efficiency
// of fib(34) x 8 on the available cores.
//
//   ./bench_mpi [workers]               spawns the workers (as mpi4py does)
//   mpirun -np 3 ./bench_mpi            SPMD: the 2 other ranks are the workers
//
// Per-task overhead: serial submit -> result, batched (submit N, then
// collect), and map with chunksize 1 over N no-op tasks; medians of several
// runs. The mpi4py figures come from bench_mpi4py.py, started here after
// mproc's own measurements, in the same mode: spawned workers (`mpirun -np
// 1 python3 bench_mpi4py.py`, its MPIPoolExecutor spawning them, over the
// same transport as mproc's spawned workers), or, when this program runs
// SPMD under `mpirun -np N`, `mpirun -np N python3 -m mpi4py.futures
// bench_mpi4py.py`, where mpi4py's workers are the other ranks too.
#include <mproc/futures.hpp>
#include <mproc/mpi.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.hpp"

namespace {

long noop(long x) { return x; }
long fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

/// The ranks of this job (1 unless run SPMD under mpirun -np N).
int world_ranks() {
    const char* s = std::getenv("OMPI_COMM_WORLD_SIZE");
    return s ? std::max(1, std::atoi(s)) : 1;
}

std::map<std::string, double> mpi4py_figures(int workers, int n, int reps) {
    // A clean environment: this process's MPI variables must not reach the
    // nested mpirun. The same mode as this run: SPMD ranks, or spawned.
    const int ranks = world_ranks();
    const std::string launch = ranks > 1 ? "-np " + std::to_string(ranks) + " /usr/bin/python3 -m mpi4py.futures "
                                         : std::string("-np 1 /usr/bin/python3 ");
    std::string cmd = "env -i PATH=/usr/bin:/bin HOME=/tmp OMPI_ALLOW_RUN_AS_ROOT=1 "
                      "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 "
                      "mpirun --oversubscribe " + launch + MPROC_BENCH_DIR "/bench_mpi4py.py " +
                      std::to_string(workers) + " " + std::to_string(n) + " " + std::to_string(reps) +
                      " 2>/dev/null";
    std::map<std::string, double> out;
    FILE* f = ::popen(cmd.c_str(), "r");
    if (!f) return out;
    char name[64];
    double v = 0;
    while (std::fscanf(f, "%63s %lf", name, &v) == 2) out[name] = v;
    ::pclose(f);
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    mproc::mpi::init(argc, argv);
    const int asked = argc > 1 ? std::atoi(argv[1]) : 2;
    const int n = 2000, reps = 5;
    double serial = 0, batched = 0, mapped = 0, eff = 0, t1 = 0, tpar = 0;
    int workers = 0;
    {
        mproc::mpi::MPIPoolExecutor ex(asked);
        workers = ex.num_workers();
        std::vector<long> in(n);
        for (int i = 0; i < n; ++i) in[static_cast<std::size_t>(i)] = i;
        for (long r : ex.map(noop, in)) (void)r;  // workers up
        serial = bench::median_of(reps, [&] {
            auto t0 = bench::Clock::now();
            for (int i = 0; i < n; ++i) (void)ex.submit(noop, long{i}).result();
            return bench::seconds_since(t0) / n * 1e6;
        });
        batched = bench::median_of(reps, [&] {
            auto t0 = bench::Clock::now();
            std::vector<mproc::Future<long>> fs;
            fs.reserve(n);
            for (int i = 0; i < n; ++i) fs.push_back(ex.submit(noop, long{i}));
            for (auto& f : fs) (void)f.result();
            return bench::seconds_since(t0) / n * 1e6;
        });
        mapped = bench::median_of(reps, [&] {
            auto t0 = bench::Clock::now();
            for (long r : ex.map(noop, in, {.chunksize = 1})) (void)r;
            return bench::seconds_since(t0) / n * 1e6;
        });
    }
    {
        // fib(34) x 8 on as many workers as this machine has cores (not
        // cpu_count(): mpirun binds a one-rank job to one core).
        const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
        mproc::mpi::MPIPoolExecutor ex(cores);
        (void)ex.submit(fib, 10).result();
        // One fib(34) at a time on the workers (the time one task takes
        // where the parallel ones run: on rank 0 the measure moved 2x with
        // where mpirun placed the ranks), then 8 at once, in pairs: each
        // round's efficiency is its own pair's, and the figure is the
        // median round, so a slow stretch of the VM slows both halves of
        // a pair rather than one side of the ratio.
        constexpr int kRounds = 9;
        std::vector<double> one, par, effs;
        for (int r = 0; r < kRounds; ++r) {
            auto t0 = bench::Clock::now();
            (void)ex.submit(fib, 34).result();
            one.push_back(bench::seconds_since(t0));
            t0 = bench::Clock::now();
            std::vector<mproc::Future<long>> fs;
            for (int i = 0; i < 8; ++i) fs.push_back(ex.submit(fib, 34));
            for (auto& f : fs) (void)f.result();
            par.push_back(bench::seconds_since(t0));
            effs.push_back(8 * one.back() / (par.back() * ex.num_workers()));
        }
        t1 = bench::median(one);
        tpar = bench::median(par);
        eff = bench::median(effs);
        std::printf("fib(34) x 8 on %d workers (%d cores): %.3f s; one fib(34) alone on a worker %.3f s; "
                    "parallel efficiency %.0f%%\n",
                    ex.num_workers(), cores, tpar, t1, eff * 100);
    }
    std::printf("per-task overhead, %d no-op tasks, %d workers, median of %d runs (us per task); "
                "mpi4py in the same mode (%s)\n",
                n, workers, reps, world_ranks() > 1 ? "SPMD: the other ranks" : "spawned workers");
    auto py = std::getenv("MPROC_BENCH_NO_MPI4PY") ? std::map<std::string, double>{}
                                                   : mpi4py_figures(workers, n, reps);
    auto line = [&](const char* what, const char* key, double mine) {
        auto it = py.find(key);
        if (it == py.end()) {
            std::printf("  %-34s mproc %9.2f   mpi4py.futures      n/a\n", what, mine);
        } else {
            std::printf("  %-34s mproc %9.2f   mpi4py.futures %9.2f   ratio %6.1fx\n", what, mine, it->second,
                        it->second / mine);
        }
    };
    line("serial submit -> result", "serial_us", serial);
    line("batched submit, then results", "batched_us", batched);
    line("map, chunksize 1", "map1_us", mapped);
    return 0;
}
