// The seeds' block sum: split an array into blocks, one process per block;
// each puts its partial sum on a Queue, and the parent checks the total
// against the sequential sum.
//
//   ./block_sum [--start-method fork|spawn|forkserver]
//
// Python original:
//   q = mp.Queue()
//   workers = [mp.Process(target=compute_sum, args=(arr, s, e, q)) for ...]
//   for w in workers: w.start()
//   for w in workers: w.join()
//   while not q.empty(): par_sum += q.get()
#include <mproc/mproc.hpp>

#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

#include "start_method_arg.hpp"

void compute_sum(mproc::Array<double> arr, std::size_t start, std::size_t end, mproc::Queue<double> q) {
    double sum = 0;
    for (std::size_t i = start; i < end; ++i) sum += arr[i];
    q.put(sum);
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);  // the C++ `if __name__ == "__main__":`
    start_method_from_args(argc, argv);

    mproc::Array<double> arr(1'000'000);  // shared memory: children read it in place
    std::mt19937_64 rng(42);
    std::uniform_real_distribution<double> uniform;
    for (double& x : arr) x = uniform(rng);

    mproc::Queue<double> q;
    const std::size_t blocks = 10;
    const std::size_t block_size = (arr.size() + blocks - 1) / blocks;
    std::vector<mproc::Process> workers;
    for (std::size_t i = 0; i < blocks; ++i)
        workers.emplace_back(compute_sum, arr, i * block_size, std::min((i + 1) * block_size, arr.size()), q);
    for (auto& w : workers) w.start();
    for (auto& w : workers) w.join();

    const double seq_sum = std::accumulate(arr.begin(), arr.end(), 0.0);
    double par_sum = 0;
    while (!q.empty()) par_sum += q.get();
    std::printf("sequential sum %.6f, parallel sum %.6f\n", seq_sum, par_sum);
    const bool ok = std::abs(seq_sum - par_sum) < 1e-4;
    std::printf("%s\n", ok ? "OK" : "MISMATCH");
    return ok ? 0 : 1;
}
