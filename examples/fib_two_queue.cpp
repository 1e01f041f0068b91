// The seeds' two-queue fib: N workers get n from a task queue, put fib(n) on
// a result queue, and stop at a sentinel (std::nullopt, Python's None).
//
//   ./fib_two_queue [workers] [n] [--start-method fork|spawn|forkserver]
//
// Python original:
//   def worker(inq, outq):
//       while True:
//           data = inq.get()
//           if data is None: return
//           outq.put(fib(data))
#include <mproc/mproc.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <vector>

long fib(int n) { return n <= 2 ? 1 : fib(n - 1) + fib(n - 2); }

void worker(mproc::Queue<std::optional<int>> inq, mproc::Queue<long> outq) {
    while (std::optional<int> n = inq.get()) outq.put(fib(*n));
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    int workernum = 4, fibnum = 30;
    std::vector<char*> pos;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--start-method") == 0 && i + 1 < argc) {
            const char* m = argv[++i];
            mproc::set_start_method(std::strcmp(m, "spawn") == 0        ? mproc::StartMethod::spawn
                                    : std::strcmp(m, "forkserver") == 0 ? mproc::StartMethod::forkserver
                                                                        : mproc::StartMethod::fork);
        } else {
            pos.push_back(argv[i]);
        }
    }
    if (pos.size() > 0) workernum = std::atoi(pos[0]);
    if (pos.size() > 1) fibnum = std::atoi(pos[1]);

    mproc::Queue<std::optional<int>> tasks;
    mproc::Queue<long> results;
    for (int i = 0; i < workernum; ++i) tasks.put(fibnum);

    std::vector<mproc::Process> workers;
    for (int i = 0; i < workernum; ++i) workers.emplace_back(worker, tasks, results).start();

    const long expected = fib(fibnum);
    bool ok = true;
    for (int i = 0; i < workernum; ++i) {
        long r = results.get();
        std::printf("%ld\n", r);
        ok = ok && r == expected;
    }
    for (int i = 0; i < workernum; ++i) tasks.put(std::nullopt);  // one sentinel per worker
    for (auto& w : workers) ok = w.join() && w.exitcode() == 0 && ok;
    std::printf("%s\n", ok ? "OK" : "FAILED");
    return ok ? 0 : 1;
}
