// The seeds' runprocesses(workernum, fibnum) table past one machine:
// examples/executor_fib.cpp's ProcessPoolExecutor run with one word
// changed — mproc::ProcessPoolExecutor became mproc::mpi::MPIPoolExecutor.
// (mproc::init starts MPI too when the program links mproc::mpi.)
//
//   mpirun -np 1 ./mpi_fib [fibnum] [tasks]   each executor spawns its workers
//   mpirun -np 5 ./mpi_fib                    the 4 other ranks are the workers
#include <mproc/mproc.hpp>
#include <mproc/mpi.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

long fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

template <class Executor>
bool runprocesses(const char* kind, int workernum, int fibnum, int tasks, long expect) {
    auto t0 = std::chrono::steady_clock::now();
    Executor ex(workernum);
    std::vector<mproc::Future<long>> fs;
    for (int i = 0; i < tasks; ++i) fs.push_back(ex.submit(fib, fibnum));
    bool ok = true;
    for (auto& f : fs) ok = ok && f.result() == expect;
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%-20s workers=%d  %d x fib(%d)  %.3f s\n", kind, workernum, tasks, fibnum, s);
    return ok;
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    int fibnum = argc > 1 ? std::atoi(argv[1]) : 34;
    int tasks = argc > 2 ? std::atoi(argv[2]) : 8;
    long expect = fib(fibnum);
    bool ok = true;
    for (int w : {1, 2, 4}) ok = runprocesses<mproc::mpi::MPIPoolExecutor>("MPIPoolExecutor", w, fibnum, tasks, expect) && ok;
    std::printf("%s\n", ok ? "OK" : "MISMATCH");
    return ok ? 0 : 1;
}
