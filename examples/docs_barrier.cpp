// The usual multiprocessing Barrier example (PyMOTW's threading.Barrier
// one, with processes): workers started in a loop and never kept, each
// waiting at the barrier, then reporting the index wait() gave it.
//
//   ./docs_barrier [--start-method fork|spawn|forkserver]
//
// Python original:
//   def worker(barrier, results):
//       print(current_process().name,
//             'waiting for barrier with {} others'.format(barrier.n_waiting))
//       worker_id = barrier.wait()
//       print(current_process().name, 'after barrier', worker_id)
//       results.put(worker_id)
//
//   if __name__ == '__main__':
//       NUM_WORKERS = 3
//       barrier = Barrier(NUM_WORKERS)
//       results = Queue()
//       for i in range(NUM_WORKERS):
//           Process(target=worker, args=(barrier, results),
//                   name='worker-{}'.format(i)).start()
//       print(sorted(results.get() for _ in range(NUM_WORKERS)))   # [0, 1, 2]
//
// (results is this port's addition, so the parent can check the indices.)
#include <mproc/mproc.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "start_method_arg.hpp"

void worker(mproc::Barrier barrier, mproc::Queue<unsigned> results) {
    const std::string name = mproc::current_process().name();
    std::printf("%s waiting for barrier with %u others\n", name.c_str(), barrier.n_waiting());
    std::fflush(stdout);
    unsigned worker_id = barrier.wait(std::chrono::seconds(60));
    std::printf("%s after barrier %u\n", name.c_str(), worker_id);
    results.put(worker_id);
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    start_method_from_args(argc, argv);
    const unsigned NUM_WORKERS = 3;
    mproc::Barrier barrier(NUM_WORKERS);
    mproc::Queue<unsigned> results;
    for (unsigned i = 0; i < NUM_WORKERS; ++i)
        mproc::Process(worker, barrier, results).name("worker-" + std::to_string(i)).start();

    std::vector<unsigned> ids;
    for (unsigned i = 0; i < NUM_WORKERS; ++i) ids.push_back(results.get(std::chrono::seconds(60)));
    std::sort(ids.begin(), ids.end());
    std::printf("[%u, %u, %u]\n", ids[0], ids[1], ids[2]);
    const bool ok = ids == std::vector<unsigned>{0, 1, 2};
    std::printf("%s\n", ok ? "OK" : "MISMATCH");
    return ok ? 0 : 1;
}
