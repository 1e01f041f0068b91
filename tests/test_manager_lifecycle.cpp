// Manager lifecycle: kill -9 in the middle of operations and while holding
// a lock, a full heap, an address-space limit, and shutdown ending every
// proxy and waking blocked processes.
#include <catch2/catch.hpp>

#include <algorithm>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include "mproc/manager.hpp"
#include "mproc/process.hpp"
#include "support.hpp"

using namespace std::chrono_literals;

namespace {

constexpr auto kLong = mproc::Duration(60);

// Writes key i -> {i, i, i}, drops key i-50, appends i to the list, forever.
[[noreturn]] void churn(mproc::DictProxy<long, std::vector<long>> d, mproc::ListProxy<long> l,
                        mproc::Event started, long signal_after) {
    for (long i = 0;; ++i) {
        d.set(i, std::vector<long>(3 + static_cast<std::size_t>(i % 20), i));
        if (i >= 50) d.erase(i - 50);
        l.append(i);
        if (i == signal_after) started.set();
    }
}

// Checks every invariant churn() keeps, and that the containers still work.
void check_churned(const mproc::DictProxy<long, std::vector<long>>& d, const mproc::ListProxy<long>& l) {
    const auto items = d.items();
    REQUIRE(d.size() == items.size());
    REQUIRE(items.size() <= 51);
    std::set<long> keys;
    for (const auto& [k, v] : items) {
        REQUIRE(keys.insert(k).second);
        REQUIRE(v.size() == 3 + static_cast<std::size_t>(k % 20));
        REQUIRE(std::all_of(v.begin(), v.end(), [k = k](long x) { return x == k; }));
        REQUIRE(d.get(k) == v);
    }
    const std::vector<long> seen = l.snapshot();
    for (std::size_t i = 0; i < seen.size(); ++i) REQUIRE(seen[i] == static_cast<long>(i));
    // Usable: new keys go in and come out, the list grows.
    d.set(-1, {7});
    REQUIRE(d.at(-1) == std::vector<long>{7});
    REQUIRE(d.erase(-1));
    l.append(static_cast<long>(seen.size()));
    REQUIRE(l.size() == seen.size() + 1);
}

}  // namespace

TEST_CASE("Manager: kill -9 in the middle of dict and list updates leaves them whole and unlocked",
          "[manager][crash][process]") {
    mproc::Manager mgr;
    auto d = mgr.dict<long, std::vector<long>>();
    auto l = mgr.list<long>();
    for (long round = 0; round < 12; ++round) {
        mproc::Event started;
        // Fork children (their own pid as a fresh lock owner each round).
        mproc::Process p(churn, d, l, started, 200 + round * 137);
        p.start_method(mproc::StartMethod::fork).start();
        REQUIRE(started.wait(kLong));
        ::kill(static_cast<pid_t>(*p.pid()), SIGKILL);
        REQUIRE(p.join(kLong));
        REQUIRE(p.exitcode() == -SIGKILL);
        check_churned(d, l);
        d.clear();
        l.clear();
    }
}

TEST_CASE("Manager: a process killed while holding a dict's lock does not lock it forever",
          "[manager][crash][process]") {
    mproc::Manager mgr;
    auto d = mgr.dict<std::string, int>();
    d.set("k", 1);
    mproc::Event inside;
    mproc::Process p(
        [](mproc::DictProxy<std::string, int> d, mproc::Event inside) {
            d.modify("k", [&](int& v) {
                v = 99;
                inside.set();
                for (;;) ::pause();  // killed here, holding the lock mid-operation
            });
        },
        d, inside);
    p.start_method(mproc::StartMethod::fork).start();
    REQUIRE(inside.wait(kLong));
    ::kill(static_cast<pid_t>(*p.pid()), SIGKILL);
    REQUIRE(p.join(kLong));
    REQUIRE(d.at("k") == 1);  // the half-done modify never happened
    d["k"] += 1;
    REQUIRE(d.at("k") == 2);
    REQUIRE(d.size() == 1);
}

TEST_CASE("Manager: a full heap is a clear Error and loses nothing", "[manager][memory]") {
    mproc::Manager mgr(mproc::ManagerOptions{.max_bytes = 16u << 20});
    REQUIRE(mgr.max_bytes() == 16u << 20);
    auto d = mgr.dict<int, std::string>();
    const std::string big(256 * 1024, 'x');
    int stored = 0;
    try {
        for (;; ++stored) d.set(stored, big);
    } catch (const mproc::Error& e) {
        REQUIRE(std::string(e.what()).find("out of memory") != std::string::npos);
    }
    REQUIRE(stored > 10);
    REQUIRE(d.size() == static_cast<std::size_t>(stored));
    REQUIRE(d.at(0) == big);
    REQUIRE(d.at(stored - 1) == big);
    // Freeing makes room again.
    REQUIRE(d.erase(0));
    d.set(stored, big);
    REQUIRE(d.at(stored) == big);
}

TEST_CASE("Manager: shutdown ends every proxy, a forked copy going away does not",
          "[manager][shutdown][process]") {
    auto mgr = std::make_unique<mproc::Manager>();
    auto d = mgr->dict<int, int>();
    d.set(1, 1);
    // A forked child that destroys its copy of the Manager leaves it running.
    mproc::Process p([](mproc::DictProxy<int, int> d) { d.set(2, 2); }, d);
    p.start_method(mproc::StartMethod::fork).start();
    REQUIRE(p.join(kLong));
    REQUIRE(p.exitcode() == 0);
    REQUIRE(d.at(2) == 2);
    mgr->shutdown();
    REQUIRE_FALSE(mgr->running());
    REQUIRE_THROWS_AS(d.get(1), mproc::ValueError);
    REQUIRE_THROWS_AS(d.set(3, 3), mproc::ValueError);
    REQUIRE_THROWS_AS((mgr->dict<int, int>()), mproc::ValueError);
    mgr->shutdown();  // idempotent
    mgr.reset();
}

TEST_CASE("Manager shutdown wakes a process blocked on a manager Queue", "[manager][queue][shutdown][process]") {
    auto mgr = std::make_unique<mproc::Manager>();
    auto q = mgr->Queue<int>();
    mproc::Event waiting;
    auto outcome = mproc::Value<int>(0);
    mproc::Process p(
        [](mproc::QueueProxy<int> q, mproc::Event waiting, mproc::Value<int> outcome) {
            waiting.set();
            try {
                (void)q.get();
                outcome.store(1);
            } catch (const mproc::ValueError&) {
                outcome.store(2);
            }
        },
        q, waiting, outcome);
    p.start_method(mproc::StartMethod::fork).start();
    REQUIRE(waiting.wait(kLong));
    mgr->shutdown();
    REQUIRE(p.join(kLong));
    REQUIRE(outcome.load() == 2);
}

TEST_CASE("Manager under an address-space limit reserves less and still works", "[manager][memory][process]") {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    SUCCEED("sanitizers need far more address space than the limit leaves");
#else
    const pid_t pid = mproc_test::fork_child([] {
        rlimit lim{std::size_t{4} << 30, std::size_t{4} << 30};
        if (::setrlimit(RLIMIT_AS, &lim) != 0) throw std::runtime_error("setrlimit");
        mproc::Manager mgr;  // 32 GiB by default: cannot be mapped here
        if (mgr.max_bytes() >= (std::size_t{4} << 30)) throw std::runtime_error("reserved too much");
        auto d = mgr.dict<int, int>();
        for (int i = 0; i < 1000; ++i) d.set(i, i);
        if (d.size() != 1000 || d.at(999) != 999) throw std::runtime_error("dict broken");
    });
    REQUIRE(mproc_test::wait_child(pid) == 0);
#endif
}
