// Python's multiprocessing docs, "Using a pool of workers": map,
// imap_unordered, apply_async with get(timeout), several workers' pids, and
// a task that outlasts its timeout.
//
//   ./docs_pool [--start-method fork|spawn|forkserver]
//
// Python original:
//   def f(x):
//       return x*x
//
//   if __name__ == '__main__':
//       with Pool(processes=4) as pool:
//           print(pool.map(f, range(10)))
//           for i in pool.imap_unordered(f, range(10)):
//               print(i)
//           res = pool.apply_async(f, (20,))
//           print(res.get(timeout=1))             # prints "400"
//           res = pool.apply_async(os.getpid, ())
//           print(res.get(timeout=1))             # prints the PID of that process
//           multiple_results = [pool.apply_async(os.getpid, ()) for i in range(4)]
//           print([res.get(timeout=1) for res in multiple_results])
//           res = pool.apply_async(time.sleep, (10,))
//           try:
//               print(res.get(timeout=1))
//           except TimeoutError:
//               print("We lacked patience and got a multiprocessing.TimeoutError")
//           print("For the moment, the pool remains available for more work")
//       print("Now the pool is closed and no longer available")
//
// Leaving the block is the Pool's destructor: it terminates the workers,
// the sleeping one included, as leaving Python's `with Pool()` does. The
// timeouts here are longer than the docs' one second, for a loaded machine.
#include <mproc/mproc.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ranges>
#include <set>
#include <thread>
#include <vector>

#include "start_method_arg.hpp"

int f(int x) { return x * x; }
int getpid_task() { return mproc::current_process().pid(); }
void sleep_task(int seconds) { std::this_thread::sleep_for(std::chrono::seconds(seconds)); }

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    start_method_from_args(argc, argv);
    using std::chrono::seconds;
    const std::vector<int> squares{0, 1, 4, 9, 16, 25, 36, 49, 64, 81};
    bool ok = true;
    {
        mproc::Pool pool(4);
        std::vector<int> m = pool.map(f, std::views::iota(0, 10));
        std::printf("[");
        for (std::size_t i = 0; i < m.size(); ++i) std::printf("%s%d", i ? ", " : "", m[i]);
        std::printf("]\n");
        ok = ok && m == squares;

        std::vector<int> u;
        for (int i : pool.imap_unordered(f, std::views::iota(0, 10))) {
            std::printf("%d\n", i);
            u.push_back(i);
        }
        std::sort(u.begin(), u.end());
        ok = ok && u == squares;

        auto res = pool.apply_async(f, 20);
        int r = res.get(seconds(30));
        std::printf("%d\n", r);
        ok = ok && r == 400;

        int pid = pool.apply_async(getpid_task).get(seconds(30));
        std::printf("%d\n", pid);
        ok = ok && pid != mproc::current_process().pid();

        std::vector<mproc::AsyncResult<int>> multiple_results;
        for (int i = 0; i < 4; ++i) multiple_results.push_back(pool.apply_async(getpid_task));
        std::printf("[");
        std::set<int> pids;
        for (std::size_t i = 0; i < multiple_results.size(); ++i) {
            int p = multiple_results[i].get(seconds(30));
            std::printf("%s%d", i ? ", " : "", p);
            pids.insert(p);
        }
        std::printf("]\n");
        ok = ok && pids.size() <= 4 && !pids.contains(mproc::current_process().pid());

        auto sleeping = pool.apply_async(sleep_task, 10);
        bool timed_out = false;
        try {
            sleeping.get(seconds(1));
        } catch (const mproc::TimeoutError&) {
            std::printf("We lacked patience and got a mproc::TimeoutError\n");
            timed_out = true;
        }
        ok = ok && timed_out;
        std::printf("For the moment, the pool remains available for more work\n");
        ok = ok && pool.apply_async(f, 3).get(seconds(30)) == 9;
    }
    std::printf("Now the pool is closed and no longer available\n");
    std::printf("%s\n", ok ? "OK" : "MISMATCH");
    return ok ? 0 : 1;
}
