// Code written for boost::interprocess::managed_shared_memory, moved onto an
// mproc::ManagedSegment: the same construct/find and containers, but the
// memory is anonymous (nothing in /dev/shm to clean up after a crash) and
// reaches the workers as a Process argument, under fork or spawn.
//
//   ./managed_segment [--start-method fork|spawn|forkserver]
//
// Boost.Interprocess original (the shape of its vector example):
//   managed_shared_memory segment(create_only, "MySharedMemory", 65536);
//   MyVector* v = segment.construct<MyVector>("MyVector")(alloc_inst);
//   ... child: segment(open_only, "MySharedMemory"); segment.find<MyVector>("MyVector")
//   shared_memory_object::remove("MySharedMemory");   // forgotten after a crash: a leak
#include <mproc/managed_segment.hpp>
#include <mproc/mproc.hpp>

#include <boost/interprocess/containers/vector.hpp>

#include <cstdio>
#include <numeric>
#include <vector>

#include "start_method_arg.hpp"

using MyVector = boost::interprocess::vector<long, mproc::ManagedSegment::allocator<long>>;

// Each worker appends its own block of numbers; the Lock keeps appends apart.
void worker(mproc::ManagedSegment segment, mproc::Lock lock, long first, long count) {
    MyVector* v = segment.find<MyVector>("MyVector").first;
    for (long i = first; i < first + count; ++i) {
        std::lock_guard<mproc::Lock> g(lock);
        v->push_back(i);  // allocates inside the segment
    }
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    start_method_from_args(argc, argv);
    mproc::ManagedSegment segment(1 << 20);
    MyVector* v = segment.construct<MyVector>("MyVector")(segment.get_allocator<long>());
    mproc::Lock lock;
    std::vector<mproc::Process> workers;
    for (long w = 0; w < 4; ++w) workers.emplace_back(worker, segment, lock, w * 1000, 1000L);
    for (auto& p : workers) p.start();
    bool ok = true;
    for (auto& p : workers) {
        p.join();
        ok = ok && p.exitcode() == 0;
    }
    std::vector<long> got(v->begin(), v->end());
    std::sort(got.begin(), got.end());
    std::vector<long> want(4000);
    std::iota(want.begin(), want.end(), 0L);
    std::printf("%zu elements appended by 4 processes, %zu bytes of the segment free\n", got.size(),
                segment.get_free_memory());
    ok = ok && got == want && segment.check_sanity();
    std::printf("%s\n", ok ? "OK" : "MISMATCH");
    return ok ? 0 : 1;
}
