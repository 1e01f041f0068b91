// Python's multiprocessing docs, Process.terminate() and exitcode: a child
// sleeping for 1000 s is terminated, and its exit code is -SIGTERM.
//
//   ./docs_process_terminate [--start-method fork|spawn|forkserver]
//
// Python original (an interactive session):
//   >>> p = multiprocessing.Process(target=time.sleep, args=(1000,))
//   >>> print(p, p.is_alive())
//   <Process ... initial> False
//   >>> p.start()
//   >>> print(p, p.is_alive())
//   <Process ... started> True
//   >>> p.terminate()
//   >>> time.sleep(0.1)
//   >>> print(p, p.is_alive())
//   <Process ... stopped exitcode=-SIGTERM> False
//   >>> p.exitcode == -signal.SIGTERM
//   True
//
// The port joins instead of sleeping 0.1 s (the child may take longer to
// die on a loaded machine).
#include <mproc/mproc.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <string>
#include <thread>

#include "start_method_arg.hpp"

void sleep_for_seconds(int s) { std::this_thread::sleep_for(std::chrono::seconds(s)); }  // time.sleep

void show(const mproc::Process& p) {
    const auto code = p.exitcode();
    const std::string state = !p.pid() ? "initial" : code ? "stopped exitcode=" + std::to_string(*code) : "started";
    std::printf("<Process name='%s' %s> %s\n", p.name().c_str(), state.c_str(), p.is_alive() ? "True" : "False");
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    start_method_from_args(argc, argv);
    mproc::Process p(sleep_for_seconds, 1000);
    show(p);
    const bool initial_dead = !p.is_alive();
    p.start();
    show(p);
    const bool started_alive = p.is_alive();
    p.terminate();
    const bool joined = p.join(std::chrono::seconds(60));
    show(p);
    const bool sigterm = p.exitcode() == -SIGTERM;
    std::printf("p.exitcode() == -SIGTERM: %s\n", sigterm ? "True" : "False");
    const bool ok = initial_dead && started_alive && joined && !p.is_alive() && sigterm;
    std::printf("%s\n", ok ? "OK" : "MISMATCH");
    return ok ? 0 : 1;
}
