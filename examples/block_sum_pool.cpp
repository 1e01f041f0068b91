// Block sum with a Pool: pool.map over block ranges of a shared Array.
// The Array reaches the workers through initargs (so spawn works too), as
// Python shares a multiprocessing.Array with pool workers.
//
//   ./block_sum_pool [--start-method fork|spawn|forkserver]
#include <mproc/mproc.hpp>

#include <cmath>
#include <cstdio>
#include <numeric>
#include <optional>
#include <random>
#include <tuple>
#include <vector>

#include "start_method_arg.hpp"

std::optional<mproc::Array<double>> g_arr;  // set in each worker by init()

void init(mproc::Array<double> arr) { g_arr = arr; }

double block_sum(std::tuple<std::size_t, std::size_t> range) {
    auto [start, end] = range;
    double sum = 0;
    for (std::size_t i = start; i < end; ++i) sum += (*g_arr)[i];
    return sum;
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    start_method_from_args(argc, argv);
    const std::size_t n = 1'000'000, blocks = 8;
    mproc::Array<double> arr(n);
    std::mt19937_64 rng(42);
    std::uniform_real_distribution<double> uniform;
    for (double& x : arr) x = uniform(rng);

    std::vector<std::tuple<std::size_t, std::size_t>> ranges;
    for (std::size_t b = 0; b < blocks; ++b) ranges.emplace_back(b * n / blocks, (b + 1) * n / blocks);

    mproc::Pool pool(mproc::PoolOptions{.processes = 4, .initializer = init, .initargs = mproc::InitArgs(arr)});
    std::vector<double> partial = pool.map(block_sum, ranges);
    double par = std::accumulate(partial.begin(), partial.end(), 0.0);
    double seq = std::accumulate(arr.begin(), arr.end(), 0.0);
    bool ok = std::fabs(par - seq) < 1e-6 * seq;
    std::printf("parallel %.6f  sequential %.6f  %s\n", par, seq, ok ? "OK" : "MISMATCH");
    pool.close();
    pool.join();
    return ok ? 0 : 1;
}
