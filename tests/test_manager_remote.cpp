// Managers served over TCP: a connected manager shares containers by name,
// runs the full operation set, refuses a wrong authkey, and concurrent
// clients modify one dict exactly.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "mproc/manager.hpp"
#include "mproc/process.hpp"

using namespace std::chrono_literals;

namespace {

constexpr auto kLong = mproc::Duration(60);

}  // namespace

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

TEST_CASE("Manager served on a unix socket (a path or an abstract name), as Python's Manager() is",
          "[manager][remote][process]") {
    const std::string path = "/tmp/mproc-test-manager-" + std::to_string(mproc::current_process().pid()) + ".sock";
    const std::string abstract = "@mproc-test-manager-" + std::to_string(mproc::current_process().pid());
    for (const std::string& where : {path, abstract}) {
        INFO(where);
        mproc::Manager mgr;
        auto counts = mgr.dict<std::string, int>();
        mgr.publish("counts", counts);
        REQUIRE(mgr.serve(where, "s3cret") == where);
        mproc::Process p(
            [](std::string address) {
                auto remote = mproc::Manager::connect(address, "s3cret");
                auto d = remote.lookup<mproc::DictProxy<std::string, int>>("counts");
                for (int k = 0; k < 100; ++k) d["n"] += 1;
            },
            where);
        p.start_method(mproc::StartMethod::spawn).start();
        REQUIRE(p.join(kLong));
        REQUIRE(p.exitcode() == 0);
        REQUIRE(counts.at("n") == 100);
        REQUIRE_THROWS_AS(mproc::Manager::connect(where, "wrong"), mproc::AuthenticationError);
        mgr.shutdown();
    }
    // The path's socket file goes with the server.
    REQUIRE_FALSE(std::filesystem::exists(path));
}
