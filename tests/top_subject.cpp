// A program for the mproc-top test (tests/test_mproc_top.py): it holds a
// Queue with three items and a blocked reader, a Pool of two workers with
// both tasks running, a Manager whose dict is published, and a named
// SharedMemory segment;
// prints "ready <pid>" and waits until its stdin closes.
#include <mproc/mproc.hpp>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

namespace {
// A task that runs until the line on its queue arrives.
int hold(mproc::Queue<int> gate) { return gate.get(); }
}  // namespace

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    mproc::set_start_method(mproc::StartMethod::fork);
    mproc::Queue<int> items(10);
    for (int i = 0; i < 3; ++i) items.put(i);

    mproc::Queue<int> gate;  // a pool task blocks reading it
    mproc::Pool pool(2);
    std::vector<mproc::AsyncResult<int>> running;
    for (int i = 0; i < 2; ++i) running.push_back(pool.apply_async(hold, gate));

    mproc::Manager manager;
    auto d = manager.dict<std::string, int>();
    for (int i = 0; i < 5; ++i) d[std::to_string(i)] = i;
    manager.publish("counts", d);

    // A named segment (unlinked when this process ends, even by kill -9:
    // the tracker does it).
    const int me = mproc::current_process().pid();
    auto named = mproc::SharedMemory::create("mproc-top-test-" + std::to_string(me), 8192);

    std::printf("ready %d\n", me);
    std::fflush(stdout);
    std::string line;
    while (std::getline(std::cin, line)) {
    }
    for (int i = 0; i < 2; ++i) gate.put(i);
    for (auto& r : running) r.get(std::chrono::seconds(30));
    pool.close();
    pool.join();
    return 0;
}
