// A user's MPI program built against an installed mproc with
// find_package(mproc CONFIG REQUIRED COMPONENTS mpi): one spawned worker
// squares a number.
#include <mproc/mpi.hpp>

#include <cstdio>

long square(long x) { return x * x; }

int main(int argc, char** argv) {
    mproc::mpi::init(argc, argv);
    mproc::mpi::MPIPoolExecutor ex(1);
    long r = ex.submit(square, 12L).result();
    std::printf("consumer: rank %d, square(12) = %ld on %d worker\n", mproc::mpi::rank(), r, ex.num_workers());
    return r == 144 ? 0 : 1;
}
