// fork() while other threads of the parent are inside the library: a child
// must never inherit a process-local mutex held by a thread it does not
// have. (A pool's watcher thread forks replacement workers while the main
// thread makes segments; a worker forked with the segment registry's mutex
// held hung at its first handle, and its pool's next barrier never filled.)
// Each case keeps a thread busy in one such mutex while the main thread
// forks children that need the same one; the children must all finish.
#include <catch2/catch.hpp>

#include <mproc/process.hpp>
#include <mproc/shared_memory.hpp>
#include <mproc/sync.hpp>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

constexpr int kForks = 150;

// Runs `churn` in a thread until the main thread has forked kForks children
// that each run `child`, and checks that each child ended by itself with 0.
template <class Churn, class Child>
void fork_against(Churn churn, Child child) {
    std::atomic<bool> stop{false};
    std::atomic<long> rounds{0};
    std::thread busy([&] {
        while (!stop.load(std::memory_order_relaxed)) {
            churn();
            rounds.fetch_add(1, std::memory_order_relaxed);
        }
    });
    while (rounds.load() == 0) std::this_thread::yield();  // the churn has begun
    int hung = 0, failed = 0;
    for (int i = 0; i < kForks; ++i) {
        mproc::Process p(child);
        p.start_method(mproc::StartMethod::fork);
        p.start();
        if (!p.join(mproc::Duration(30))) {
            ++hung;
            p.kill();
            p.join();
        } else if (p.exitcode() != 0) {
            ++failed;
        }
    }
    stop = true;
    busy.join();
    CHECK(hung == 0);
    CHECK(failed == 0);
}

}  // namespace

TEST_CASE("a child forked while another thread makes segments makes and imports its own", "[process][fork]") {
    mproc::Array<int> shared(8);  // its handle is imported by every child
    fork_against([] { mproc::Array<int> a(16); },
                 [shared] {
                     mproc::Array<int> mine(16);
                     mine[0] = shared[0];
                 });
}
