// Python's multiprocessing docs, "Examples": worker processes fed from one
// task queue, answering on another (task_queue / done_queue, calculate,
// mul, plus). The workers are started in a loop and never kept.
//
//   ./docs_worker_queue [--start-method fork|spawn|forkserver]
//
// Python original (abridged):
//   def worker(input, output):
//       for func, args in iter(input.get, 'STOP'):
//           result = calculate(func, args)
//           output.put(result)
//
//   def calculate(func, args):
//       result = func(*args)
//       return '%s says that %s%s = %s' % (
//           current_process().name, func.__name__, args, result)
//
//   def mul(a, b):
//       time.sleep(0.5*random.random())
//       return a * b
//
//   def plus(a, b):
//       time.sleep(0.5*random.random())
//       return a + b
//
//   def test():
//       NUMBER_OF_PROCESSES = 4
//       TASKS1 = [(mul, (i, 7)) for i in range(20)]
//       TASKS2 = [(plus, (i, 8)) for i in range(10)]
//       task_queue = Queue()
//       done_queue = Queue()
//       for task in TASKS1:
//           task_queue.put(task)
//       for i in range(NUMBER_OF_PROCESSES):
//           Process(target=worker, args=(task_queue, done_queue)).start()
//       print('Unordered results:')
//       for i in range(len(TASKS1)):
//           print('\t', done_queue.get())
//       for task in TASKS2:
//           task_queue.put(task)
//       for i in range(len(TASKS2)):
//           print('\t', done_queue.get())
//       for i in range(NUMBER_OF_PROCESSES):
//           task_queue.put('STOP')
//
// A task is (function, arguments): the function pointer travels by
// reference, so it is valid in a spawned worker too. The 'STOP' sentinel is
// an empty optional. The sleeps are a fifth of the docs' (0.1 s at most).
#include <mproc/mproc.hpp>

#include <chrono>
#include <cstdio>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <tuple>

#include "start_method_arg.hpp"

using Func = long (*)(long, long);
using Task = std::optional<std::tuple<Func, long, long>>;

void nap() {
    thread_local std::mt19937 rng(std::random_device{}());
    std::this_thread::sleep_for(std::chrono::duration<double>(0.1 * std::uniform_real_distribution<>(0, 1)(rng)));
}
long mul(long a, long b) { nap(); return a * b; }
long plus(long a, long b) { nap(); return a + b; }
const char* name_of(Func f) { return f == mul ? "mul" : f == plus ? "plus" : "?"; }  // func.__name__

std::string calculate(Func func, long a, long b) {
    long result = func(a, b);
    return mproc::current_process().name() + " says that " + name_of(func) + "(" + std::to_string(a) + ", " +
           std::to_string(b) + ") = " + std::to_string(result);
}

void worker(mproc::Queue<Task> input, mproc::Queue<std::string> output) {
    while (Task t = input.get()) {
        auto [func, a, b] = *t;
        output.put(calculate(func, a, b));
    }
}

// What a result line must end with, for each task.
std::string expected(const char* name, long a, long b, long r) {
    return std::string(" says that ") + name + "(" + std::to_string(a) + ", " + std::to_string(b) + ") = " +
           std::to_string(r);
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    start_method_from_args(argc, argv);
    const int NUMBER_OF_PROCESSES = 4;
    mproc::Queue<Task> task_queue;
    mproc::Queue<std::string> done_queue;
    std::multiset<std::string> want;

    for (long i = 0; i < 20; ++i) {
        task_queue.put(std::tuple{Func(mul), i, 7L});
        want.insert(expected("mul", i, 7, i * 7));
    }
    for (int i = 0; i < NUMBER_OF_PROCESSES; ++i) mproc::Process(worker, task_queue, done_queue).start();

    bool ok = true;
    auto take = [&] {
        std::string line = done_queue.get(std::chrono::seconds(60));
        std::printf("\t %s\n", line.c_str());
        auto at = line.find(" says that ");
        auto it = at == std::string::npos ? want.end() : want.find(line.substr(at));
        if (it == want.end() || line.rfind("Process-", 0) != 0) ok = false;
        else want.erase(it);
    };
    std::printf("Unordered results:\n");
    for (int i = 0; i < 20; ++i) take();

    for (long i = 0; i < 10; ++i) {
        task_queue.put(std::tuple{Func(plus), i, 8L});
        want.insert(expected("plus", i, 8, i + 8));
    }
    for (int i = 0; i < 10; ++i) take();

    for (int i = 0; i < NUMBER_OF_PROCESSES; ++i) task_queue.put(std::nullopt);  // 'STOP'
    ok = ok && want.empty();
    std::printf("%s\n", ok ? "OK" : "MISMATCH");
    return ok ? 0 : 1;  // the exit handler joins the four workers
}
