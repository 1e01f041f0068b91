// The seeds' Pool example: Pool(processes=4).map(worker, range(6)), then
// imap_unordered and apply_async(...).get(timeout).
//
//   ./pool_map [--start-method fork|spawn|forkserver]
//
// Python original:
//   with Pool(processes=4) as pool:
//       print(pool.map(f, range(6)))                 # [0, 1, 4, 9, 16, 25]
//       for x in pool.imap_unordered(f, range(6)): ...
//       print(pool.apply_async(f, (10,)).get(timeout=1))
#include <mproc/mproc.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "start_method_arg.hpp"

int worker(int x) { return x * x; }

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    start_method_from_args(argc, argv);
    mproc::Pool pool(4);
    std::vector<int> r = pool.map(worker, std::vector<int>{0, 1, 2, 3, 4, 5});
    std::printf("map:");
    for (int x : r) std::printf(" %d", x);
    std::printf("\n");

    std::vector<int> u;
    for (int x : pool.imap_unordered(worker, std::vector<int>{0, 1, 2, 3, 4, 5})) u.push_back(x);
    std::sort(u.begin(), u.end());

    int a = pool.apply_async(worker, 10).get(std::chrono::seconds(10));
    std::printf("apply_async: %d\n", a);

    bool ok = r == std::vector<int>{0, 1, 4, 9, 16, 25} && u == r && a == 100;
    std::printf("%s\n", ok ? "OK" : "MISMATCH");
    pool.close();
    pool.join();
    return ok ? 0 : 1;
}
