// Manager: containers in shared memory, used across fork and spawn
// children and pool workers, surviving kill -9 in the middle of operations.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mproc/manager.hpp"
#include "mproc/pool.hpp"
#include "mproc/process.hpp"
#include "support.hpp"

using namespace std::chrono_literals;

namespace {

constexpr auto kLong = mproc::Duration(60);

const std::vector<std::string>& corpus() {
    static const std::vector<std::string> words = [] {
        std::vector<std::string> w;
        const char* text =
            "it was the best of times it was the worst of times it was the age of wisdom it was the "
            "age of foolishness it was the epoch of belief it was the epoch of incredulity it was the "
            "season of light it was the season of darkness";
        std::istringstream in(text);
        for (std::string s; in >> s;) w.push_back(s);
        return w;
    }();
    return words;
}

// Counts every word of the corpus `rounds` times, half with modify() and
// half with `d[w] += 1`: both must be atomic for the totals to be exact.
void count_words(mproc::DictProxy<std::string, int> counts, int rounds) {
    for (int r = 0; r < rounds; ++r)
        for (const std::string& w : corpus()) {
            if (r % 2 == 0) counts.modify(w, [](int& n) { n += 1; });
            else counts[w] += 1;
        }
}

void append_ids(mproc::ListProxy<long> list, long first, long count) {
    for (long i = first; i < first + count; ++i) list.append(i);
}

void set_attributes(mproc::NamespaceProxy ns, mproc::Event done) {
    ns.set("x", 42);
    ns.set("name", std::string("spawned"));
    ns.set("xs", std::vector<double>{1.5, 2.5});
    done.set();
}

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

struct Order {
    int id = 0;
    int bike = -1;
    template <class A>
    void serialize(A& a, unsigned) { a & id & bike; }
};

void order_picker(mproc::QueueProxy<int> orders, mproc::QueueProxy<int> empty_bikes,
                  mproc::QueueProxy<Order> loaded_bikes) {
    for (;;) {
        int order = orders.get(kLong);
        if (order < 0) return;
        int bike = empty_bikes.get(kLong);
        loaded_bikes.put(Order{order, bike}, kLong);
    }
}

void messenger(mproc::QueueProxy<Order> loaded_bikes, mproc::QueueProxy<int> empty_bikes, mproc::QueueProxy<int> orders,
               mproc::ListProxy<int> delivered, mproc::DictProxy<int, int> per_bike) {
    for (;;) {
        Order o = loaded_bikes.get(kLong);
        if (o.id < 0) return;
        delivered.append(o.id);
        per_bike[o.bike] += 1;
        empty_bikes.put(o.bike, kLong);
        orders.task_done();
    }
}

long add_to(mproc::DictProxy<std::string, long> d, long x) {
    d.modify("sum", [x](long& s) { s += x; });
    return x;
}

}  // namespace

TEST_CASE("Manager dict: the operations a Python user expects", "[manager][dict]") {
    mproc::Manager mgr;
    auto d = mgr.dict<std::string, int>();
    REQUIRE(d.empty());
    d.set("a", 1);
    d["b"] = 2;
    REQUIRE(d.size() == 2);
    REQUIRE(d.get("a") == 1);
    REQUIRE_FALSE(d.get("zz").has_value());
    REQUIRE(d.get("zz", 9) == 9);
    REQUIRE(int(d["b"]) == 2);
    REQUIRE_THROWS_AS(int(d["zz"]), mproc::KeyError);
    REQUIRE_THROWS_AS(d.at("zz"), mproc::KeyError);
    REQUIRE(d.contains("a"));
    REQUIRE_FALSE(d.contains("c"));
    d["c"] += 5;  // absent: starts from 0, as std::map
    d["c"] -= 1;
    REQUIRE(d.at("c") == 4);
    REQUIRE(d.setdefault("c", 100) == 4);
    REQUIRE(d.setdefault("d", 100) == 100);
    REQUIRE(d.modify("d", [](int& v) { v *= 2; }) == 200);
    REQUIRE(d.pop("d") == 200);
    REQUIRE_FALSE(d.pop("d").has_value());
    REQUIRE(d.erase("c"));
    REQUIRE_FALSE(d.erase("c"));
    d.update({{"x", 10}, {"y", 20}});
    d.update(std::map<std::string, int>{{"y", 21}, {"z", 30}});
    auto keys = d.keys();
    std::sort(keys.begin(), keys.end());
    REQUIRE(keys == std::vector<std::string>{"a", "b", "x", "y", "z"});
    auto items = d.items();
    std::sort(items.begin(), items.end());
    REQUIRE(items == std::vector<std::pair<std::string, int>>{{"a", 1}, {"b", 2}, {"x", 10}, {"y", 21}, {"z", 30}});
    auto values = d.values();
    std::sort(values.begin(), values.end());
    REQUIRE(values == std::vector<int>{1, 2, 10, 21, 30});
    // A modify() whose function throws leaves the dict as it was.
    REQUIRE_THROWS_AS(d.modify("a", [](int&) { throw std::runtime_error("no"); }), std::runtime_error);
    REQUIRE(d.at("a") == 1);
    // Re-entering the same dict from modify() is an error, not a deadlock.
    REQUIRE_THROWS_AS(d.modify("a", [&](int&) { d.set("b", 3); }), mproc::Error);
    REQUIRE(d.at("b") == 2);
    d.clear();
    REQUIRE(d.size() == 0);
    REQUIRE(d.items().empty());
    d.set("again", 1);
    REQUIRE(d.at("again") == 1);
}

TEST_CASE("Manager dict: structured keys and values, growth and deletion churn", "[manager][dict]") {
    mproc::Manager mgr;
    auto d = mgr.dict<std::pair<int, std::string>, std::vector<std::string>>();
    for (int i = 0; i < 5000; ++i) d.set({i, std::to_string(i)}, std::vector<std::string>(i % 5, std::to_string(i)));
    for (int i = 0; i < 5000; i += 2) REQUIRE(d.erase({i, std::to_string(i)}));
    REQUIRE(d.size() == 2500);
    for (int i = 0; i < 5000; ++i) {
        auto v = d.get({i, std::to_string(i)});
        REQUIRE(v.has_value() == (i % 2 == 1));
        if (v) REQUIRE(*v == std::vector<std::string>(i % 5, std::to_string(i)));
    }
    // Deleted slots are reused: churning the same keys does not grow the heap.
    std::size_t used_after_first = 0;
    for (int round = 0; round < 20; ++round) {
        for (int i = 0; i < 5000; i += 2) d.set({i, "tmp"}, {"x"});
        for (int i = 0; i < 5000; i += 2) REQUIRE(d.erase({i, "tmp"}));
        if (round == 0) used_after_first = mgr.used_bytes();
    }
    REQUIRE(d.size() == 2500);
    REQUIRE(mgr.used_bytes() == used_after_first);
}

TEST_CASE("Manager dict: 4 processes counting words give exact totals", "[manager][dict][process]") {
    mproc::Manager mgr;
    auto counts = mgr.dict<std::string, int>();
    const int rounds = 300;
    std::vector<mproc::Process> ps;
    for (int i = 0; i < 4; ++i) {
        ps.emplace_back(count_words, counts, rounds);
        ps.back().start_method(i % 2 ? mproc::StartMethod::spawn : mproc::StartMethod::fork).start();
    }
    for (auto& p : ps) {
        REQUIRE(p.join(kLong));
        REQUIRE(p.exitcode() == 0);
    }
    std::map<std::string, int> expected;
    for (const auto& w : corpus()) expected[w] += 4 * rounds;
    auto items = counts.items();
    REQUIRE(std::map<std::string, int>(items.begin(), items.end()) == expected);
    REQUIRE(counts.size() == expected.size());
}

TEST_CASE("Manager list: appended by 4 spawn children, every item arrives", "[manager][list][process]") {
    mproc::Manager mgr;
    auto list = mgr.list<long>();
    std::vector<mproc::Process> ps;
    for (long i = 0; i < 4; ++i) {
        ps.emplace_back(append_ids, list, i * 1000, 1000L);
        ps.back().start_method(mproc::StartMethod::spawn).start();
    }
    for (auto& p : ps) {
        REQUIRE(p.join(kLong));
        REQUIRE(p.exitcode() == 0);
    }
    std::vector<long> got = list.snapshot();
    REQUIRE(got.size() == 4000);
    std::sort(got.begin(), got.end());
    for (long i = 0; i < 4000; ++i) REQUIRE(got[static_cast<std::size_t>(i)] == i);
}

TEST_CASE("Manager list: Python list operations", "[manager][list]") {
    mproc::Manager mgr;
    auto l = mgr.list<std::string>(std::vector<std::string>{"a", "b"});
    l.append("c");
    l.extend({"d", "e"});
    REQUIRE(l.size() == 5);
    REQUIRE(l.at(0) == "a");
    REQUIRE(l[-1] == "e");
    REQUIRE_THROWS_AS(l.at(5), mproc::IndexError);
    REQUIRE_THROWS_AS(l.at(-6), mproc::IndexError);
    l.set(1, "B");
    l.insert(0, "start");
    l.insert(-1, "before-e");
    l.insert(100, "end");
    REQUIRE(l.snapshot() == std::vector<std::string>{"start", "a", "B", "c", "d", "before-e", "e", "end"});
    REQUIRE(l.pop() == "end");
    REQUIRE(l.pop(0) == "start");
    REQUIRE(l.pop(2) == "c");
    REQUIRE(l.modify(0, [](std::string& s) { s += "!"; }) == "a!");
    REQUIRE(l.snapshot() == std::vector<std::string>{"a!", "B", "d", "before-e", "e"});
    l.clear();
    REQUIRE(l.empty());
    REQUIRE_THROWS_AS(l.pop(), mproc::IndexError);
    for (int i = 0; i < 1000; ++i) l.append(std::to_string(i));
    REQUIRE(l.at(999) == "999");
}

TEST_CASE("Manager Namespace and Value: seen across fork and spawn children", "[manager][namespace][process]") {
    mproc::Manager mgr;
    for (auto method : {mproc::StartMethod::fork, mproc::StartMethod::spawn}) {
        auto ns = mgr.Namespace();
        REQUIRE_FALSE(ns.has("x"));
        mproc::Event done;
        mproc::Process p(set_attributes, ns, done);
        p.start_method(method).start();
        REQUIRE(done.wait(kLong));
        REQUIRE(p.join(kLong));
        REQUIRE(p.exitcode() == 0);
        REQUIRE(ns.has("x"));
        REQUIRE(ns.get<int>("x") == 42);
        REQUIRE(ns.get<std::string>("name") == "spawned");
        REQUIRE(ns.get<std::vector<double>>("xs") == std::vector<double>{1.5, 2.5});
        REQUIRE_THROWS_AS(ns.get<std::string>("x"), mproc::SerializationError);
        REQUIRE_THROWS_AS(ns.get<int>("nope"), mproc::KeyError);
        REQUIRE(ns.get<int>("nope", 5) == 5);
        auto names = ns.names();
        std::sort(names.begin(), names.end());
        REQUIRE(names == std::vector<std::string>{"name", "x", "xs"});
        REQUIRE(ns.erase("x"));
        REQUIRE_FALSE(ns.has("x"));
    }
    auto v = mgr.Value<std::string>("start");
    mproc::Process p([](mproc::ValueProxy<std::string> v) { v.modify([](std::string& s) { s += "+child"; }); }, v);
    p.start_method(mproc::StartMethod::spawn).start();
    REQUIRE(p.join(kLong));
    REQUIRE(p.exitcode() == 0);
    REQUIRE(v.get() == "start+child");
    v.set("reset");
    REQUIRE(v.get() == "reset");
}

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

TEST_CASE("Manager dict: 1,000,000 small entries fit", "[manager][dict][big]") {
    mproc::Manager mgr;
    auto d = mgr.dict<int, int>();
    std::vector<std::pair<int, int>> batch;
    for (int i = 0; i < 1'000'000; i += 10'000) {
        batch.clear();
        for (int j = i; j < i + 10'000; ++j) batch.emplace_back(j, j * 3);
        d.update(batch);
    }
    REQUIRE(d.size() == 1'000'000);
    for (int i = 0; i < 1'000'000; i += 7919) REQUIRE(d.at(i) == i * 3);
    REQUIRE_FALSE(d.contains(1'000'000));
    // Small entries stay small: well under 100 bytes each, table included.
    REQUIRE(mgr.used_bytes() < 100u * 1'000'000);
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

TEST_CASE("Manager proxies refuse to be imported as another type", "[manager][handles]") {
    mproc::Manager mgr;
    auto d = mgr.dict<std::string, int>();
    mproc::detail::HandleWriter w;
    d.mproc_export(w);
    mproc::detail::HandleReader ok(w.refs, w.values);
    REQUIRE_NOTHROW(mproc::DictProxy<std::string, int>::mproc_import(ok));
    mproc::detail::HandleReader wrong(w.refs, w.values);
    REQUIRE_THROWS_AS((mproc::DictProxy<int, int>::mproc_import(wrong)), mproc::SerializationError);
    mproc::detail::HandleReader as_list(w.refs, w.values);
    REQUIRE_THROWS_AS(mproc::ListProxy<int>::mproc_import(as_list), mproc::SerializationError);
}

TEST_CASE("Manager: proxies as task arguments of pools started before the manager", "[manager][pool]") {
    for (auto method : {mproc::StartMethod::fork, mproc::StartMethod::spawn}) {
        // The workers exist before the manager's memory does: the proxies
        // reach them only inside task arguments.
        mproc::PoolOptions opts;
        opts.processes = 2;
        opts.start_method = method;
        mproc::Pool pool(opts);
        mproc::Manager mgr;
        auto d = mgr.dict<std::string, long>();
        std::vector<std::tuple<mproc::DictProxy<std::string, long>, long>> args;
        for (long i = 1; i <= 100; ++i) args.emplace_back(d, i);
        auto r = pool.starmap(add_to, args);
        REQUIRE(r.size() == 100);
        REQUIRE(d.at("sum") == 5050);
    }
}

TEST_CASE("Manager: a proxy sent through a Queue to a running process", "[manager][queue][process]") {
    mproc::Queue<mproc::ListProxy<int>> inbox;
    mproc::Queue<int> done;
    mproc::Process p(
        [](mproc::Queue<mproc::ListProxy<int>> inbox, mproc::Queue<int> done) {
            auto l = inbox.get(kLong);
            for (int i = 0; i < 10; ++i) l.append(i);
            done.put(1);
        },
        inbox, done);
    p.start_method(mproc::StartMethod::spawn).start();
    mproc::Manager mgr;  // created after the child started
    auto l = mgr.list<int>();
    inbox.put(l);
    REQUIRE(done.get(kLong) == 1);
    REQUIRE(p.join(kLong));
    REQUIRE(l.snapshot() == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
}

TEST_CASE("Manager: the bike-business pattern with manager queues", "[manager][queue][process]") {
    mproc::Manager mgr;
    const int n_orders = 60, n_bikes = 5, n_pickers = 2, n_messengers = 3;
    auto orders = mgr.JoinableQueue<int>();
    auto empty_bikes = mgr.Queue<int>(n_bikes);
    auto loaded_bikes = mgr.Queue<Order>(n_bikes);
    auto delivered = mgr.list<int>();
    auto per_bike = mgr.dict<int, int>();
    for (int b = 0; b < n_bikes; ++b) empty_bikes.put(b);
    for (int o = 0; o < n_orders; ++o) orders.put(o);
    std::vector<mproc::Process> staff;
    for (int i = 0; i < n_pickers; ++i) {
        staff.emplace_back(order_picker, orders, empty_bikes, loaded_bikes);
        staff.back().start_method(i ? mproc::StartMethod::spawn : mproc::StartMethod::fork).start();
    }
    for (int i = 0; i < n_messengers; ++i) {
        staff.emplace_back(messenger, loaded_bikes, empty_bikes, orders, delivered, per_bike);
        staff.back().start_method(i ? mproc::StartMethod::spawn : mproc::StartMethod::fork).start();
    }
    REQUIRE(orders.join(kLong));
    std::vector<int> got = delivered.snapshot();
    std::sort(got.begin(), got.end());
    std::vector<int> want(n_orders);
    for (int i = 0; i < n_orders; ++i) want[static_cast<std::size_t>(i)] = i;
    REQUIRE(got == want);
    int rides = 0;
    for (const auto& [bike, n] : per_bike.items()) {
        REQUIRE(bike >= 0);
        REQUIRE(bike < n_bikes);
        rides += n;
    }
    REQUIRE(rides == n_orders);
    for (int i = 0; i < n_pickers; ++i) orders.put(-1);
    for (int i = 0; i < n_messengers; ++i) loaded_bikes.put(Order{-1, -1});
    for (auto& p : staff) {
        REQUIRE(p.join(kLong));
        REQUIRE(p.exitcode() == 0);
    }
}

TEST_CASE("Manager sync factories: a Lock and an Event shared with a child", "[manager][sync][process]") {
    mproc::Manager mgr;
    auto lock = mgr.Lock();
    auto ev = mgr.Event();
    auto sem = mgr.Semaphore(0);
    auto total = mgr.Value<long>(0);
    mproc::Process p(
        [](mproc::Lock lock, mproc::Event ev, mproc::Semaphore sem, mproc::ValueProxy<long> total) {
            sem.release();
            if (!ev.wait(kLong)) throw std::runtime_error("event never set");
            std::lock_guard<mproc::Lock> g(lock);
            total.set(total.get() + 1);
        },
        lock, ev, sem, total);
    p.start_method(mproc::StartMethod::spawn).start();
    REQUIRE(sem.acquire(kLong));
    {
        std::lock_guard<mproc::Lock> g(lock);
        ev.set();
        total.set(total.get() + 10);
    }
    REQUIRE(p.join(kLong));
    REQUIRE(p.exitcode() == 0);
    REQUIRE(total.get() == 11);
}

TEST_CASE("Manager served over TCP: a connected manager shares containers by name", "[manager][remote]") {
    mproc::Manager mgr;
    auto counts = mgr.dict<std::string, int>();
    counts.set("local", 1);
    mgr.publish("counts", counts);
    const std::string address = mgr.serve("127.0.0.1:0", "s3cret");
    REQUIRE(address.rfind("127.0.0.1:", 0) == 0);
    REQUIRE(mgr.address() == address);

    // A separate spawned process connects by address and authkey only.
    mproc::Process p(
        [](std::string address) {
            auto remote = mproc::Manager::connect(address, "s3cret");
            auto d = remote.lookup<mproc::DictProxy<std::string, int>>("counts");
            if (d.at("local") != 1) throw std::runtime_error("wrong value");
            for (int i = 0; i < 100; ++i) d.modify("remote", [](int& n) { n += 1; });
            d["local"] += 10;
            auto l = remote.list<std::string>();
            l.extend({"a", "b", "c"});
            remote.publish("letters", l);
            auto ns = remote.Namespace();
            ns.set("pi", 3.25);
            remote.publish("ns", ns);
        },
        address);
    p.start_method(mproc::StartMethod::spawn).start();
    REQUIRE(p.join(kLong));
    REQUIRE(p.exitcode() == 0);
    REQUIRE(counts.at("remote") == 100);
    REQUIRE(counts.at("local") == 11);
    REQUIRE(mgr.lookup<mproc::ListProxy<std::string>>("letters").snapshot() ==
            std::vector<std::string>{"a", "b", "c"});
    REQUIRE(mgr.lookup<mproc::NamespaceProxy>("ns").get<double>("pi") == 3.25);
    REQUIRE_THROWS_AS(mgr.lookup<mproc::ListProxy<int>>("letters"), mproc::SerializationError);
    REQUIRE_THROWS_AS(mgr.lookup<mproc::ListProxy<int>>("nothing"), mproc::KeyError);

    // This process can be a client too: the full operation set over TCP.
    auto remote = mproc::Manager::connect(address, "s3cret");
    REQUIRE(remote.is_connected());
    auto d = remote.lookup<mproc::DictProxy<std::string, int>>("counts");
    REQUIRE(d.size() == 2);
    REQUIRE(d.contains("remote"));
    REQUIRE_FALSE(d.get("absent").has_value());
    REQUIRE_THROWS_AS(d.at("absent"), mproc::KeyError);
    d.update({{"x", 1}, {"y", 2}});
    REQUIRE(d.pop("x") == 1);
    REQUIRE_FALSE(d.erase("x"));
    REQUIRE(d.setdefault("z", 7) == 7);
    auto items = d.items();
    std::sort(items.begin(), items.end());
    REQUIRE(items == std::vector<std::pair<std::string, int>>{{"local", 11}, {"remote", 100}, {"y", 2}, {"z", 7}});
    auto l = remote.list<long>(std::vector<long>{1, 2, 3});
    l.insert(0, 0);
    l.set(3, 30);
    REQUIRE(l.pop() == 30);
    REQUIRE(l.modify(-1, [](long& x) { x *= 10; }) == 20);
    REQUIRE(l.snapshot() == std::vector<long>{0, 1, 20});
    REQUIRE_THROWS_AS(l.at(10), mproc::IndexError);
    auto v = remote.Value<std::string>("v");
    REQUIRE(v.modify([](std::string& s) { s += "!"; }) == "v!");
    REQUIRE(v.get() == "v!");
    REQUIRE_THROWS_AS(remote.Lock(), mproc::ValueError);
    // A queue on the server: put here, get there.
    auto q = remote.Queue<std::string>(2);
    q.put("one");
    q.put("two");
    REQUIRE(q.full());
    REQUIRE_THROWS_AS(q.put("three", mproc::Duration(0.05)), mproc::Full);
    REQUIRE(q.get() == "one");
    REQUIRE(q.qsize() == 1);
    REQUIRE(q.get_nowait() == "two");
    REQUIRE_THROWS_AS(q.get(mproc::Duration(0.05)), mproc::Empty);
    REQUIRE_FALSE(q.join(mproc::Duration(0)));
    q.task_done();
    q.task_done();
    REQUIRE(q.join(mproc::Duration(0)));
    // Remote proxies do not travel as handles.
    REQUIRE_THROWS_AS(mproc::dumps(d), mproc::ValueError);

    // The wrong authkey is refused, by both sides.
    REQUIRE_THROWS_AS(mproc::Manager::connect(address, "wrong"), mproc::AuthenticationError);

    // After shutdown, a connected proxy gets EOFError, not a hang.
    mgr.shutdown();
    REQUIRE_THROWS_AS(d.get("remote"), mproc::EOFError);
}

TEST_CASE("Manager served over TCP: concurrent clients modify one dict exactly", "[manager][remote][process]") {
    mproc::Manager mgr;
    auto counts = mgr.dict<std::string, int>();
    mgr.publish("counts", counts);
    const std::string address = mgr.serve();
    std::vector<mproc::Process> ps;
    for (int i = 0; i < 3; ++i) {
        ps.emplace_back(
            [](std::string address) {
                auto remote = mproc::Manager::connect(address);  // the inherited authkey
                auto d = remote.lookup<mproc::DictProxy<std::string, int>>("counts");
                for (int k = 0; k < 200; ++k) d["n"] += 1;
            },
            address);
        ps.back().start_method(mproc::StartMethod::fork).start();
    }
    for (int k = 0; k < 200; ++k) counts["n"] += 1;  // local, mixed with the remote ones
    for (auto& p : ps) {
        REQUIRE(p.join(kLong));
        REQUIRE(p.exitcode() == 0);
    }
    REQUIRE(counts.at("n") == 800);
}

TEST_CASE("Manager served over TCP: garbage from a client costs only that connection", "[manager][remote]") {
    mproc::Manager mgr;
    auto d = mgr.dict<int, int>();
    d.set(1, 1);
    mgr.publish("d", d);
    const std::string address = mgr.serve();
    const auto colon = address.rfind(':');
    const int port = std::stoi(address.substr(colon + 1));
    for (int attempt = 0; attempt < 3; ++attempt) {
        const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        REQUIRE(fd >= 0);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(static_cast<std::uint16_t>(port));
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
        // Answer the challenge with junk: a frame claiming 4 GiB, a short
        // digest, or nothing at all before hanging up.
        const unsigned char junk[][8] = {{0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4}, {4, 0, 0, 0, 1, 2, 3, 4}, {}};
        if (attempt < 2) REQUIRE(::send(fd, junk[attempt], 8, MSG_NOSIGNAL) == 8);
        // The server answers with a refusal or just closes; it never hangs
        // this client (the read ends) and never dies.
        char buf[256];
        while (::recv(fd, buf, sizeof buf, 0) > 0) {
            if (attempt == 2) break;
        }
        ::close(fd);
    }
    auto remote = mproc::Manager::connect(address);
    REQUIRE(remote.lookup<mproc::DictProxy<int, int>>("d").at(1) == 1);
}

TEST_CASE("Manager Queue: FIFO, bounds, timeouts, task_done and join", "[manager][queue]") {
    mproc::Manager mgr;
    auto q = mgr.Queue<std::string>(3);
    REQUIRE(q.empty());
    q.put("a");
    q.put("b");
    q.put_nowait("c");
    REQUIRE(q.full());
    REQUIRE_THROWS_AS(q.put_nowait("d"), mproc::Full);
    REQUIRE_THROWS_AS(q.put("d", mproc::Duration(0.02)), mproc::Full);
    REQUIRE(q.get() == "a");
    q.put("d");  // wraps around the ring
    REQUIRE(q.get() == "b");
    REQUIRE(q.get() == "c");
    REQUIRE(q.get() == "d");
    REQUIRE_FALSE(q.try_get().has_value());
    REQUIRE_THROWS_AS(q.get_nowait(), mproc::Empty);
    REQUIRE_THROWS_AS(q.get(mproc::Duration(0.02)), mproc::Empty);
    REQUIRE_FALSE(q.join(mproc::Duration(0)));  // four put, none done
    for (int i = 0; i < 4; ++i) q.task_done();
    REQUIRE(q.join(mproc::Duration(0)));
    REQUIRE_THROWS_AS(q.task_done(), mproc::ValueError);
    // Unbounded: grows past any ring size, keeps order.
    auto big = mgr.Queue<int>();
    for (int i = 0; i < 10000; ++i) big.put(i);
    REQUIRE(big.qsize() == 10000);
    for (int i = 0; i < 10000; ++i) REQUIRE(big.get() == i);
}

TEST_CASE("Manager Queue: producers and consumers across fork and spawn, and pool tasks",
          "[manager][queue][process]") {
    mproc::Pool pool(2);  // started before the manager exists
    mproc::Manager mgr;
    auto q = mgr.Queue<long>(16);
    auto results = mgr.Queue<long>();
    std::vector<mproc::Process> consumers;
    for (int i = 0; i < 2; ++i) {
        consumers.emplace_back(
            [](mproc::QueueProxy<long> q, mproc::QueueProxy<long> results) {
                long sum = 0;
                for (long x; (x = q.get(kLong)) >= 0;) sum += x;
                results.put(sum);
            },
            q, results);
        // The Pool's threads make fork unsafe here: forkserver and spawn.
        consumers.back().start_method(i ? mproc::StartMethod::spawn : mproc::StartMethod::forkserver).start();
    }
    // Pool tasks put into the manager queue too (a bounded one: they block
    // until the consumers make room).
    std::vector<std::tuple<mproc::QueueProxy<long>, long>> args;
    for (long i = 1; i <= 100; ++i) args.emplace_back(q, i);
    pool.starmap([](mproc::QueueProxy<long> q, long i) { q.put(i, kLong); return 0; }, args);
    for (long i = 101; i <= 200; ++i) q.put(i);
    q.put(-1);
    q.put(-1);
    long total = results.get(kLong) + results.get(kLong);
    REQUIRE(total == 200 * 201 / 2);
    for (auto& c : consumers) {
        REQUIRE(c.join(kLong));
        REQUIRE(c.exitcode() == 0);
    }
}

TEST_CASE("Manager Queue: a consumer killed while waiting does not lose items or block others",
          "[manager][queue][crash][process]") {
    mproc::Manager mgr;
    auto q = mgr.Queue<int>();
    mproc::Event waiting;
    mproc::Process p(
        [](mproc::QueueProxy<int> q, mproc::Event waiting) {
            waiting.set();
            (void)q.get();  // blocks: nothing is put until it is dead
        },
        q, waiting);
    p.start_method(mproc::StartMethod::fork).start();
    REQUIRE(waiting.wait(kLong));
    ::kill(static_cast<pid_t>(*p.pid()), SIGKILL);
    REQUIRE(p.join(kLong));
    q.put(7);
    REQUIRE(q.get(kLong) == 7);
    REQUIRE(q.empty());
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
