// Programs whose main returns while children run, for test_process_lifetime:
// what mproc's exit handler does at a normal exit (Python's
// util._exit_function): join non-daemon children, terminate daemon ones.
//
//   process_exit_helper running-child <method>   a child that waits for a line on
//       stdin, then prints it; main prints "main returns" and returns at once.
//   process_exit_helper daemon <method>          a daemon child that waits forever
//       (it prints "daemon: SIGTERM" when terminated) and a non-daemon child
//       that finishes after the daemon has started; main returns at once.
//   process_exit_helper worker-queue <method>    Python's docs example "feeding
//       tasks to a collection of worker processes": workers are started in a
//       loop and dropped; main returns after putting the STOP sentinels.
#include <mproc/process.hpp>
#include <mproc/queue.hpp>
#include <mproc/sync.hpp>

#include <csignal>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <tuple>

#include <unistd.h>

namespace {

mproc::StartMethod method_of(const std::string& m) {
    if (m == "spawn") return mproc::StartMethod::spawn;
    if (m == "forkserver") return mproc::StartMethod::forkserver;
    return mproc::StartMethod::fork;
}

void echo_stdin() {
    std::string line;
    std::getline(std::cin, line);
    std::cout << "child got: " << line << std::endl;
}

void on_sigterm(int) {
    const char msg[] = "daemon: SIGTERM\n";
    (void)!::write(1, msg, sizeof msg - 1);
    ::_exit(0);
}

void daemon_main(mproc::Event started, mproc::Event never) {
    std::signal(SIGTERM, on_sigterm);
    started.set();
    never.wait();
}

void after_daemon(mproc::Event daemon_started) {
    daemon_started.wait();
    std::cout << "non-daemon done" << std::endl;
}

// ---- Python's worker-queue example --------------------------------------------

using Task = std::optional<std::tuple<std::string, int, int>>;  // nullopt: 'STOP'

std::string calculate(const std::string& func, int a, int b) {
    const int result = func == "mul" ? a * b : a + b;
    return mproc::current_process().name() + " says that " + func + "(" + std::to_string(a) + ", " +
           std::to_string(b) + ") = " + std::to_string(result);
}

void worker(mproc::Queue<Task> input, mproc::Queue<std::string> output) {
    for (Task t = input.get(); t; t = input.get()) {
        auto [func, a, b] = *t;
        output.put(calculate(func, a, b));
    }
}

void worker_queue(mproc::StartMethod method) {
    constexpr int kProcesses = 4;
    mproc::Queue<Task> task_queue;
    mproc::Queue<std::string> done_queue;
    for (int i = 0; i < 20; ++i) task_queue.put(Task{{"mul", i, 7}});
    for (int i = 0; i < kProcesses; ++i)
        mproc::Process(worker, task_queue, done_queue).start_method(method).start();
    std::cout << "Unordered results:" << std::endl;
    for (int i = 0; i < 20; ++i) std::cout << "\t" << done_queue.get() << std::endl;
    for (int i = 0; i < 10; ++i) task_queue.put(Task{{"plus", i, 8}});
    for (int i = 0; i < 10; ++i) std::cout << "\t" << done_queue.get() << std::endl;
    for (int i = 0; i < kProcesses; ++i) task_queue.put(std::nullopt);
}

}  // namespace

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    if (argc < 3) return 2;
    const std::string mode = argv[1];
    const mproc::StartMethod method = method_of(argv[2]);
    if (mode == "running-child") {
        {
            mproc::Process p(echo_stdin);
            p.start_method(method).start();
        }
        std::cout << "main returns" << std::endl;
        return 0;
    }
    if (mode == "daemon") {
        mproc::Event started, never;
        mproc::Process d(daemon_main, started, never);
        d.daemon(true).start_method(method).start();
        mproc::Process(after_daemon, started).start_method(method).start();
        started.wait();
        std::cout << "daemon " << *d.pid() << std::endl;
        return 0;
    }
    if (mode == "worker-queue") {
        worker_queue(method);
        return 0;
    }
    return 2;
}
