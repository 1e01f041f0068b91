// JoinableQueue, with the example of Python's queue module docs (which
// multiprocessing.JoinableQueue follows): a daemon worker marks each item
// task_done(), and join() waits until every item put has been processed.
//
//   ./docs_joinable_queue [--start-method fork|spawn|forkserver]
//
// Python original (queue docs, with a Process for the Thread):
//   def worker(q):
//       while True:
//           item = q.get()
//           print(f'Working on {item}')
//           print(f'Finished {item}')
//           q.task_done()
//
//   if __name__ == '__main__':
//       q = JoinableQueue()
//       Process(target=worker, args=(q,), daemon=True).start()
//       for item in range(30):
//           q.put(item)
//       q.join()
//       print('All work completed')
//
// The worker never returns: as a daemon it is terminated when main returns,
// as Python's exit handler does. (done is this port's addition, a count of
// processed items the parent can check.)
#include <mproc/mproc.hpp>

#include <chrono>
#include <cstdio>

#include "start_method_arg.hpp"

void worker(mproc::JoinableQueue<int> q, mproc::Value<int> done) {
    while (true) {
        int item = q.get();
        std::printf("Working on %d\n", item);
        std::printf("Finished %d\n", item);
        std::fflush(stdout);
        {
            auto guard = done.get_lock();
            done.value() += item;
        }
        q.task_done();
    }
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    start_method_from_args(argc, argv);
    mproc::JoinableQueue<int> q;
    mproc::Value<int> done(0);
    mproc::Process(worker, q, done).daemon(true).start();
    for (int item = 0; item < 30; ++item) q.put(item);
    const bool joined = q.join(std::chrono::seconds(60));
    std::printf("All work completed\n");
    const bool ok = joined && done.load() == 29 * 30 / 2;
    std::printf("%s\n", ok ? "OK" : "MISMATCH");
    return ok ? 0 : 1;
}
