// Process start + join, per process, for each start method, next to what
// it is built from (fork + waitpid, posix_spawn + waitpid) and next to
// Python's multiprocessing. Prints medians (microseconds) and ratios.
//
//   ./bench/bench_process [reps]
//
// Baselines: "raw fork" is fork() + _exit(0) in the child + waitpid; "raw
// posix_spawn" runs /bin/true, and also this very binary told to leave at
// the top of main (the cost of exec'ing and loading this program, which an
// mproc spawn child pays before its init() runs).
#include <mproc/process.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.hpp"

extern char** environ;

namespace {

void noop() {}

double us_since(bench::Clock::time_point t0) { return bench::seconds_since(t0) * 1e6; }

double raw_fork() {
    auto t0 = bench::Clock::now();
    pid_t pid = ::fork();
    if (pid == 0) ::_exit(0);
    int st;
    ::waitpid(pid, &st, 0);
    return us_since(t0);
}

double raw_spawn(const char* path, char* const* argv, char* const* envp) {
    auto t0 = bench::Clock::now();
    pid_t pid;
    if (::posix_spawn(&pid, path, nullptr, nullptr, argv, envp) != 0) {
        std::perror("posix_spawn");
        std::exit(1);
    }
    int st;
    ::waitpid(pid, &st, 0);
    return us_since(t0);
}

double mproc_start_join(mproc::StartMethod m) {
    auto t0 = bench::Clock::now();
    mproc::Process p(noop);
    p.start_method(m);
    p.start();
    p.join();
    return us_since(t0);
}

const char* kPython = R"PY(
import multiprocessing as mp, statistics, sys, time
def main():
    method, n = sys.argv[1], int(sys.argv[2])
    ctx = mp.get_context(method)
    p = ctx.Process(); p.start(); p.join()   # warm-up (starts the fork server)
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        p = ctx.Process(); p.start(); p.join()
        ts.append(time.perf_counter() - t0)
    print(statistics.median(ts) * 1e6)
if __name__ == '__main__':
    main()
)PY";

std::optional<double> python(const char* method, int reps) {
    // python_figure runs a file; pass the method and count through argv by
    // baking them into the script.
    std::string code = std::string("import sys\nsys.argv = ['bench', '") + method + "', '" +
                       std::to_string(reps) + "']\n" + kPython;
    return bench::python_figure(code);
}

}  // namespace

int main(int argc, char** argv) {
    // The "exec this program" baseline: leave before anything else.
    if (std::getenv("MPROC_BENCH_EXIT_AT_ONCE")) return 0;
    mproc::init(argc, argv);
    mproc::set_fork_warning(false);

    const int reps = argc > 1 ? std::atoi(argv[1]) : 200;
    const int spawn_reps = reps / 2 > 10 ? reps / 2 : 10;

    char true_path[] = "/bin/true";
    char* true_argv[] = {true_path, nullptr};
    char self_path[] = "/proc/self/exe";
    char* self_argv[] = {argv[0], nullptr};
    std::vector<char*> self_env;
    std::string exit_var = "MPROC_BENCH_EXIT_AT_ONCE=1";
    for (char** e = environ; *e; ++e) self_env.push_back(*e);
    self_env.push_back(exit_var.data());
    self_env.push_back(nullptr);

    // Warm up: page cache, the fork server.
    for (int i = 0; i < 5; ++i) {
        raw_fork();
        raw_spawn(true_path, true_argv, environ);
        mproc_start_join(mproc::StartMethod::fork);
        mproc_start_join(mproc::StartMethod::spawn);
        mproc_start_join(mproc::StartMethod::forkserver);
    }

    // Interleaved, so that a burst of load elsewhere hits every method alike.
    std::vector<double> t_fork, t_mfork, t_true, t_self, t_mspawn, t_mserver;
    for (int i = 0; i < reps; ++i) {
        t_fork.push_back(raw_fork());
        t_mfork.push_back(mproc_start_join(mproc::StartMethod::fork));
        t_mserver.push_back(mproc_start_join(mproc::StartMethod::forkserver));
        if (i < spawn_reps) {
            t_true.push_back(raw_spawn(true_path, true_argv, environ));
            t_self.push_back(raw_spawn(self_path, self_argv, self_env.data()));
            t_mspawn.push_back(mproc_start_join(mproc::StartMethod::spawn));
        }
    }
    const double fork_us = bench::median(t_fork), mfork_us = bench::median(t_mfork);
    const double true_us = bench::median(t_true), self_us = bench::median(t_self);
    const double mspawn_us = bench::median(t_mspawn), mserver_us = bench::median(t_mserver);

    bench::group("Process start + join, median per process (%d reps; %d for spawn), microseconds\n",
                reps, spawn_reps);
    bench::row("raw fork + waitpid", fork_us, "us");
    bench::row("mproc fork", mfork_us, "us");
    bench::row("mproc forkserver", mserver_us, "us");
    bench::row("raw posix_spawn(/bin/true) + waitpid", true_us, "us");
    bench::row("raw posix_spawn(this binary, exits at once)", self_us, "us");
    bench::row("mproc spawn", mspawn_us, "us");

    const int py_reps_fork = 100, py_reps_spawn = 20;
    auto py_fork = python("fork", py_reps_fork);
    auto py_server = python("forkserver", py_reps_fork);
    auto py_spawn = python("spawn", py_reps_spawn);
    if (py_fork) bench::row("python multiprocessing fork", *py_fork, "us");
    if (py_server) bench::row("python multiprocessing forkserver", *py_server, "us");
    if (py_spawn) bench::row("python multiprocessing spawn", *py_spawn, "us");
    if (!py_fork || !py_server || !py_spawn) std::printf("  (python3 figures unavailable)\n");

    bench::group("Ratios\n");
    bench::ratio("mproc fork / raw fork         (goal <= 1.5)", mfork_us / fork_us);
    bench::ratio("mproc spawn / raw posix_spawn(/bin/true) (goal <= 2)", mspawn_us / true_us);
    bench::ratio("mproc spawn / raw posix_spawn(this binary)", mspawn_us / self_us);
    bench::ratio("mproc forkserver / raw fork", mserver_us / fork_us);
    if (py_fork) bench::ratio("python fork / mproc fork", *py_fork / mfork_us);
    if (py_server) bench::ratio("python forkserver / mproc forkserver", *py_server / mserver_us);
    if (py_spawn) bench::ratio("python spawn / mproc spawn", *py_spawn / mspawn_us);
    return 0;
}
