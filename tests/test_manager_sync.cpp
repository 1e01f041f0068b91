// Manager sync factories: Lock, Event, Semaphore and Value proxies shared
// with a spawned child.
#include <catch2/catch.hpp>

#include <mutex>
#include <stdexcept>

#include "mproc/manager.hpp"
#include "mproc/process.hpp"

using namespace std::chrono_literals;

namespace {

constexpr auto kLong = mproc::Duration(60);

}  // namespace

TEST_CASE("Manager sync factories: a Lock and an Event shared with a child", "[manager][sync][process]") {
    mproc::Manager mgr;
    auto lock = mgr.Lock();
    auto ev = mgr.Event();
    auto sem = mgr.Semaphore(0);
    auto total = mgr.Value<long>(0);
    mproc::Process p(
        [](mproc::LockProxy lock, mproc::EventProxy ev, mproc::SemaphoreProxy sem, mproc::ValueProxy<long> total) {
            sem.release();
            if (!ev.wait(kLong)) throw std::runtime_error("event never set");
            std::lock_guard<mproc::LockProxy> g(lock);
            total.set(total.get() + 1);
        },
        lock, ev, sem, total);
    p.start_method(mproc::StartMethod::spawn).start();
    REQUIRE(sem.acquire(kLong));
    {
        std::lock_guard<mproc::LockProxy> g(lock);
        ev.set();
        total.set(total.get() + 10);
    }
    REQUIRE(p.join(kLong));
    REQUIRE(p.exitcode() == 0);
    REQUIRE(total.get() == 11);
}
