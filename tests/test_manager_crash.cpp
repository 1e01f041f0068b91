// Manager crash safety by fault injection: a child is killed exactly at
// each instant between two publishing stores of each mutating operation
// (lib/manager/object.hpp's crash points), and every object must then be
// whole, unlocked and usable; and kill -9 at random instants of a child
// that runs every mutating operation of dicts and lists.
#include <catch2/catch.hpp>

#include <algorithm>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include <signal.h>

#include "manager/object.hpp"
#include "mproc/detail/fault.hpp"
#include "mproc/manager.hpp"
#include "mproc/process.hpp"

namespace {

constexpr auto kLong = mproc::Duration(60);

using Dict = mproc::DictProxy<long, std::vector<long>>;
using List = mproc::ListProxy<long>;

std::vector<long> value_for(long k) { return std::vector<long>(1 + static_cast<std::size_t>((k < 0 ? -k : k) % 9), k); }

/// Every structural invariant of a dict whose values are value_for(key).
void check_dict(const Dict& d) {
    const auto items = d.items();
    REQUIRE(d.size() == items.size());
    REQUIRE(d.keys().size() == items.size());
    std::set<long> keys;
    for (const auto& [k, v] : items) {
        REQUIRE(keys.insert(k).second);  // no key twice
        REQUIRE(v == value_for(k));      // no torn or foreign value
        REQUIRE(d.get(k) == v);          // every key is found through the index
        REQUIRE(d.contains(k));
    }
    // Usable: a new key goes in last, comes out, and goes again.
    d.set(-7, value_for(7));
    REQUIRE(d.keys().back() == -7);
    REQUIRE(d.popitem().first == -7);
    REQUIRE(d.size() == items.size());
}

/// Items of a list are distinct and each is what was stored.
void check_list(const List& l) {
    const auto items = l.snapshot();
    REQUIRE(l.size() == items.size());
    REQUIRE(std::set<long>(items.begin(), items.end()).size() == items.size());
    l.append(-1);
    REQUIRE(l.pop() == -1);
}

/// Runs `op` in a forked child armed to die at `point` (the nth time);
/// requires that it did die there.
void kill_at(const char* point, const std::function<void()>& op, unsigned nth = 1) {
    mproc::Process p([&] {
        mproc::detail::arm_fault(std::string(point) + ":" + std::to_string(nth));
        op();
        std::_Exit(3);  // the point was not on the operation's path
    });
    p.start_method(mproc::StartMethod::fork).start();
    REQUIRE(p.join(kLong));
    INFO("crash point " << point);
    REQUIRE(p.exitcode() == -SIGKILL);
}

Dict ten_keys(mproc::Manager& mgr) {
    auto d = mgr.dict<long, std::vector<long>>();
    for (long k = 0; k < 10; ++k) d.set(k, value_for(k));
    return d;
}

std::vector<long> iota(long n) {
    std::vector<long> v;
    for (long i = 0; i < n; ++i) v.push_back(i);
    return v;
}

}  // namespace

TEST_CASE("Manager dict: a process killed between any two stores of any change leaves it whole",
          "[manager][crash][dict][process]") {
    mproc::Manager mgr;
    SECTION("insert, killed before it is published") {
        auto d = ten_keys(mgr);
        kill_at("dict.insert.unpublished", [&] { d.set(100, value_for(100)); });
        check_dict(d);
        REQUIRE(d.keys() == iota(10));  // as if it never happened
        d.set(100, value_for(100));
        d.set(101, value_for(101));
        REQUIRE(d.keys().back() == 101);
        check_dict(d);
    }
    SECTION("replace, killed after publishing, before freeing the old value") {
        auto d = ten_keys(mgr);
        kill_at("dict.replace.published", [&] { d.set(5, value_for(5)); });
        check_dict(d);
        REQUIRE(d.keys() == iota(10));
    }
    SECTION("erase, killed after unindexing, before it is published") {
        auto d = ten_keys(mgr);
        kill_at("dict.remove.unpublished", [&] { d.erase(3); });
        check_dict(d);
        REQUIRE(d.contains(3));  // the erase did not happen: the index is rebuilt
        REQUIRE(d.erase(3));
        check_dict(d);
    }
    SECTION("erase, killed after publishing") {
        auto d = ten_keys(mgr);
        kill_at("dict.remove.published", [&] { d.erase(3); });
        check_dict(d);
        REQUIRE_FALSE(d.contains(3));
        REQUIRE(d.size() == 9);
    }
    SECTION("popitem, killed before and after publishing") {
        auto d = ten_keys(mgr);
        kill_at("dict.remove.unpublished", [&] { d.popitem(); });
        check_dict(d);
        REQUIRE(d.keys() == iota(10));
        kill_at("dict.remove.published", [&] { d.popitem(); });
        check_dict(d);
        REQUIRE(d.keys() == iota(9));
        d.set(9, value_for(9));  // the freed place is used again
        REQUIRE(d.keys() == iota(10));
    }
    SECTION("growth, killed before and after switching tables") {
        auto d = mgr.dict<long, std::vector<long>>();
        for (unsigned nth : {1u, 3u}) {
            kill_at("dict.rebuild.unpublished", [&] {
                for (long k = 0;; ++k) d.set(1000 + k, value_for(1000 + k));
            }, nth);
            check_dict(d);
        }
        const std::size_t before = d.size();
        kill_at("dict.rebuild.published", [&] {
            for (long k = 0;; ++k) d.set(5000 + k, value_for(5000 + k));
        });
        check_dict(d);
        REQUIRE(d.size() > before);
    }
    SECTION("update and clear") {
        auto d = ten_keys(mgr);
        kill_at("dict.insert.unpublished", [&] {
            d.update(std::vector<std::pair<long, std::vector<long>>>{{20, value_for(20)}, {21, value_for(21)}});
        }, 2);
        check_dict(d);
        REQUIRE(d.keys().back() == 20);  // the first pair went in, the second did not
        kill_at("dict.clear.unlinked", [&] { d.clear(); });
        check_dict(d);
        REQUIRE(d.empty());
    }
    SECTION("the repair itself, killed halfway, is repaired by the next holder") {
        auto d = ten_keys(mgr);
        kill_at("dict.insert.unpublished", [&] { d.set(100, value_for(100)); });
        kill_at("dict.recover.midway", [&] { (void)d.size(); }, 4);
        check_dict(d);
        REQUIRE(d.keys() == iota(10));
    }
}

TEST_CASE("Manager list: a process killed between any two stores of any change leaves it whole",
          "[manager][crash][list][process]") {
    mproc::Manager mgr;
    auto l = mgr.list<long>(iota(10));
    const std::vector<long> start = l.snapshot();
    SECTION("reorderings and middle changes, killed before and after the switch") {
        const std::vector<std::function<void()>> ops = {
            [&] { l.insert(3, 100); }, [&] { l.pop(3); },   [&] { l.remove(4); },
            [&] { l.reverse(); },      [&] { l.sort(std::greater<>()); },
        };
        for (const auto& op : ops) {
            l.clear();
            l.extend(start);
            kill_at("list.replace.unpublished", op);
            check_list(l);
            REQUIRE(l.snapshot() == start);  // not applied at all
            kill_at("list.replace.published", op);
            check_list(l);
            REQUIRE(l.snapshot() != start);  // applied whole
        }
    }
    SECTION("append, extend, pop at the end, set") {
        kill_at("list.extend.unpublished", [&] { l.extend({100, 101, 102}); });
        check_list(l);
        REQUIRE(l.snapshot() == start);
        kill_at("list.drop.unpublished", [&] { l.pop(); });
        REQUIRE(l.snapshot() == start);
        kill_at("list.put.published", [&] { l.set(0, 50); });
        check_list(l);
        REQUIRE(l.at(0) == 50);
        kill_at("list.extend.unpublished", [&] {
            for (long i = 0;; ++i) l.append(200 + i);  // through a growth
        }, 20);
        check_list(l);
        REQUIRE(l.size() == 10 + 19);
    }
}

TEST_CASE("Manager Queue and Condition: killed between stores, nothing is torn, lost twice or stuck",
          "[manager][crash][queue][process]") {
    mproc::Manager mgr;
    auto q = mgr.JoinableQueue<std::string>();
    q.put("a");
    kill_at("queue.put.unpublished", [&] { q.put("b"); });
    REQUIRE(q.qsize() == 1);
    kill_at("queue.get.unpublished", [&] { (void)q.get(); });
    REQUIRE(q.qsize() == 1);  // the killed consumer's item stays for the next
    kill_at("queue.get.published", [&] { (void)q.get(); });
    REQUIRE(q.qsize() == 0);  // taken (by the one that died with it)
    REQUIRE_FALSE(q.join(mproc::Duration(0)));  // "a" was never task_done()
    q.task_done();
    REQUIRE(q.join(mproc::Duration(0)));
    kill_at("queue.grow.unpublished", [&] {
        for (int i = 0;; ++i) q.put(std::to_string(i));
    });
    const std::size_t n = q.qsize();
    REQUIRE(n >= 8);
    for (std::size_t i = 0; i < n; ++i) REQUIRE(q.get() == std::to_string(i));
    for (std::size_t i = 0; i < n; ++i) q.task_done();
    REQUIRE(q.join(mproc::Duration(0)));

    auto cond = mgr.Condition();
    kill_at("cond.tickets.unpublished", [&] {
        std::lock_guard<mproc::ConditionProxy> g(cond);
        cond.wait(kLong);
    });
    // The lock is free again and a notify finds no stale waiter.
    std::lock_guard<mproc::ConditionProxy> g(cond);
    cond.notify_all();
    REQUIRE_FALSE(cond.wait(mproc::Duration(0.01)));
}

namespace {
// Every mutating dict and list operation, forever, on keys and ids this
// child alone makes: each step leaves the invariants check_dict and
// check_list test.
[[noreturn]] void churn_everything(Dict d, List l, mproc::EventProxy started, long signal_after) {
    long next = 1'000'000;
    for (long i = 0;; ++i) {
        d.set(i, value_for(i));
        if (i % 5 == 0) d.update(std::vector<std::pair<long, std::vector<long>>>{{-i - 1, value_for(-i - 1)}});
        if (i % 3 == 0) (void)d.popitem();
        if (i >= 40) d.erase(i - 40);
        l.append(next++);
        if (l.size() > 30) {
            switch (i % 6) {
                case 0: l.insert(static_cast<std::int64_t>(i % 7), next++); break;
                case 1: (void)l.pop(static_cast<std::int64_t>(i % 5)); break;
                case 2: l.remove(l.at(2)); break;
                case 3: l.reverse(); break;
                case 4: l.sort(); break;
                case 5: l.modify(1, [&](long& x) { x = next++; }); break;
            }
            (void)l.pop(0);
        }
        if (i == signal_after) started.set();
    }
}
}  // namespace

TEST_CASE("Manager: kill -9 at random instants of every mutating dict and list operation",
          "[manager][crash][process]") {
    mproc::Manager mgr;
    auto d = mgr.dict<long, std::vector<long>>();
    auto l = mgr.list<long>();
    for (long round = 0; round < 12; ++round) {
        auto started = mgr.Event();
        mproc::Process p(churn_everything, d, l, started, 100 + round * 61);
        p.start_method(mproc::StartMethod::fork).start();
        REQUIRE(started.wait(kLong));
        ::kill(static_cast<pid_t>(*p.pid()), SIGKILL);
        REQUIRE(p.join(kLong));
        REQUIRE(p.exitcode() == -SIGKILL);
        check_dict(d);
        check_list(l);
        d.clear();
        l.clear();
    }
}
