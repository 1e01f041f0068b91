// Python's multiprocessing docs, "Programming guidelines", "Joining
// processes that use queues": in Python this program deadlocks — the child
// cannot exit until its queue's feeder thread has flushed the big item into
// the pipe, and the parent joins before it gets. An mproc Queue has no
// feeder thread: put() has copied the item into shared memory when it
// returns, so the child exits, join() returns, and get() finds the item.
// Tried with an item that fits the queue's ring and one larger than it
// (which travels in its own segment).
//
//   ./docs_join_before_get [--start-method fork|spawn|forkserver]
//
// Python original:
//   def f(q):
//       q.put('X' * 1000000)
//
//   if __name__ == '__main__':
//       queue = Queue()
//       p = Process(target=f, args=(queue,))
//       p.start()
//       p.join()                    # this deadlocks
//       obj = queue.get()
#include <mproc/mproc.hpp>

#include <chrono>
#include <cstdio>
#include <string>

#include "start_method_arg.hpp"

void f(mproc::Queue<std::string> q, std::size_t n) { q.put(std::string(n, 'X')); }

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    start_method_from_args(argc, argv);
    bool ok = true;
    for (std::size_t n : {std::size_t{1000000}, std::size_t{20000000}}) {  // in the ring; larger than its 8 MiB
        mproc::Queue<std::string> queue;
        mproc::Process p(f, queue, n);
        p.start();
        const bool joined = p.join(std::chrono::seconds(60));  // Python deadlocks here
        std::string obj = joined ? queue.get(std::chrono::seconds(60)) : std::string();
        std::printf("join() %s; got %zu bytes\n", joined ? "returned" : "TIMED OUT", obj.size());
        ok = ok && joined && p.exitcode() == 0 && obj == std::string(n, 'X');
        if (!joined) p.kill();
    }
    std::printf("%s\n", ok ? "OK" : "MISMATCH");
    return ok ? 0 : 1;
}
