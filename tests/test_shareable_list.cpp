// ShareableList<T> across real processes: read and written from fork and
// spawn children, attached by name, strings at and over their capacity,
// count/index, and attach with the wrong T or over bytes that are not a list.
#include <catch2/catch.hpp>

#include <mproc/process.hpp>
#include <mproc/shared_memory.hpp>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <ranges>
#include <string>
#include <vector>

#include <unistd.h>

#include "support.hpp"

using mproc_test::fork_child;
using mproc_test::wait_child;
using namespace std::chrono_literals;

namespace {

std::string unique_name(const std::string& what) { return mproc_test::unique_shm_name("sl-" + what); }

struct Point {
    int x, y;
    bool operator==(const Point&) const = default;
};

void check(bool ok, const char* what) {
    if (!ok) throw std::runtime_error(what);
}

// Spawn targets: functions, with the list as a handle argument.
void double_all(mproc::ShareableList<long> sl) {
    for (std::size_t i = 0; i < sl.size(); ++i) sl[i] *= 2;
}
void shout(mproc::ShareableList<std::string> sl, std::string name) {
    check(sl.name() == name, "the handle lost its name");
    check(sl[0] == "howdy", "wrong first element");
    sl[0] = "HOWDY";
    sl[1] = std::string(sl.capacity(1), 'x');  // exactly at capacity
    bool refused = false;
    try {
        sl[2] = std::string(sl.capacity(2) + 1, 'y');
    } catch (const mproc::ValueError&) {
        refused = true;
    }
    check(refused, "a string over capacity was accepted");
}
void attach_by_name(std::string name) {
    auto sl = mproc::ShareableList<double>::attach(name);
    sl[sl.size() - 1] = -999.5;
}

}  // namespace

TEST_CASE("ShareableList<long>: made, read and written by fork and spawn children", "[shareable_list]") {
    const auto name = unique_name("long");
    auto sl = mproc::ShareableList<long>::create(name, std::views::iota(0L, 2000L));
    REQUIRE(sl.size() == 2000);
    REQUIRE(sl.name() == name);
    REQUIRE(std::filesystem::exists("/dev/shm/" + name));
    REQUIRE(sl[1999] == 1999);

    pid_t pid = fork_child([&] {
        auto other = mproc::ShareableList<long>::attach(name);
        check(other.size() == 2000, "attached size");
        for (std::size_t i = 0; i < other.size(); ++i) other[i] += 1;
    });
    REQUIRE(wait_child(pid) == 0);
    REQUIRE(sl[0] == 1);
    REQUIRE(sl[1999] == 2000);

    mproc::Process p(double_all, sl);
    p.start_method(mproc::StartMethod::spawn);
    p.start();
    REQUIRE(p.join(60s));
    REQUIRE(p.exitcode() == 0);
    long sum = 0;
    for (long x : sl) sum += x;
    REQUIRE(sum == 2 * (2000L * 2001 / 2));
    REQUIRE(sl.count(2) == 1);
    REQUIRE(sl.index(4000) == 1999);
    REQUIRE_THROWS_AS(sl.index(3), mproc::ValueError);
    REQUIRE_THROWS_AS(sl[2000], std::out_of_range);
    sl.shm().unlink();
    REQUIRE_FALSE(std::filesystem::exists("/dev/shm/" + name));
}

TEST_CASE("ShareableList<std::string>: Python's slot sizes, at capacity and over it", "[shareable_list][string]") {
    mproc::ShareableList<std::string> sl{"", "seven77", "eight888", "howdy"};
    REQUIRE(sl.size() == 4);
    REQUIRE(sl.capacity(0) == 8);
    REQUIRE(sl.capacity(1) == 8);
    REQUIRE(sl.capacity(2) == 16);
    REQUIRE(sl.capacity(3) == 8);
    REQUIRE(sl[1] == "seven77");
    REQUIRE(std::string(sl[2]) == "eight888");

    sl[3] = "12345678";  // exactly the capacity
    REQUIRE(sl[3] == "12345678");
    REQUIRE_THROWS_AS(sl[3] = "123456789", mproc::ValueError);
    REQUIRE(sl[3] == "12345678");  // a refused write changes nothing
    sl[0] = "";
    REQUIRE(sl[0] == "");

    std::vector<std::string> seen;
    for (std::string s : sl) seen.push_back(s);
    REQUIRE(seen == std::vector<std::string>{"", "seven77", "eight888", "12345678"});
    REQUIRE(sl.count("seven77") == 1);
    REQUIRE(sl.count("nope") == 0);
    REQUIRE(sl.index("eight888") == 2);
    REQUIRE_THROWS_AS(sl.index("nope"), mproc::ValueError);

    // A fixed capacity for every slot, and an initial value over it.
    mproc::ShareableList<std::string> wide({"a", "b"}, {.capacity = 100});
    REQUIRE(wide.capacity(0) == 100);
    wide[1] = std::string(100, 'z');
    REQUIRE(std::string(wide[1]) == std::string(100, 'z'));
    REQUIRE_THROWS_AS(mproc::ShareableList<std::string>({"too long"}, {.capacity = 4}), mproc::ValueError);
}

TEST_CASE("ShareableList<std::string>: a fork child writes, a spawned child gets it as a handle",
          "[shareable_list][string]") {
    const auto name = unique_name("str");
    std::vector<std::string> init{"howdy", "HoWdY", "dry ice"};
    auto sl = mproc::ShareableList<std::string>::create(name, init);
    pid_t pid = fork_child([&] {
        auto other = mproc::ShareableList<std::string>::attach(name);
        check(other[2] == "dry ice", "fork child reads");
        other[2] = "wet ice";
    });
    REQUIRE(wait_child(pid) == 0);
    REQUIRE(sl[2] == "wet ice");

    mproc::Process p(shout, sl, name);
    p.start_method(mproc::StartMethod::spawn);
    p.start();
    REQUIRE(p.join(60s));
    REQUIRE(p.exitcode() == 0);
    REQUIRE(sl[0] == "HOWDY");
    REQUIRE(std::string(sl[1]) == std::string(sl.capacity(1), 'x'));
    REQUIRE(sl[2] == "wet ice");
    sl.shm().unlink();
}

TEST_CASE("ShareableList attached by name from a spawned process (Python's ShareableList(name=...))",
          "[shareable_list][spawn]") {
    const auto name = unique_name("attach");
    auto b = mproc::ShareableList<double>::create(name, std::vector<double>{0, 1, 2, 3, 4});
    mproc::Process p(attach_by_name, name);
    p.start_method(mproc::StartMethod::spawn);
    p.start();
    REQUIRE(p.join(60s));
    REQUIRE(p.exitcode() == 0);
    REQUIRE(b[4] == -999.5);
    b.shm().unlink();
}

TEST_CASE("ShareableList of a trivially copyable struct, anonymous, shared with a fork child",
          "[shareable_list]") {
    mproc::ShareableList<Point> pts{{1, 2}, {3, 4}};
    REQUIRE(pts.name().empty());
    pid_t pid = fork_child([&] { pts[1] = Point{30, 40}; });
    REQUIRE(wait_child(pid) == 0);
    REQUIRE(pts[1] == Point{30, 40});
    REQUIRE(pts.index(Point{1, 2}) == 0);
    // An input-only range (read once) works too.
    auto once = std::views::iota(0, 5) | std::views::transform([](int i) { return i * 10; });
    mproc::ShareableList<int> from_view(once);
    REQUIRE(std::vector<int>(from_view.begin(), from_view.end()) == std::vector<int>{0, 10, 20, 30, 40});
}

TEST_CASE("attach with the wrong T, or to bytes that are no list, is a SerializationError", "[shareable_list][bad]") {
    const auto name = unique_name("wrong");
    auto longs = mproc::ShareableList<long>::create(name, {1L, 2L, 3L});
    REQUIRE_THROWS_AS(mproc::ShareableList<double>::attach(name), mproc::SerializationError);
    REQUIRE_THROWS_AS(mproc::ShareableList<int>::attach(name), mproc::SerializationError);
    REQUIRE_THROWS_AS(mproc::ShareableList<std::string>::attach(name), mproc::SerializationError);
    REQUIRE_THROWS_AS(mproc::ShareableList<Point>::attach(name), mproc::SerializationError);
    try {
        mproc::ShareableList<double>::attach(name);
    } catch (const mproc::SerializationError& e) {
        // The message names what it holds.
        REQUIRE(std::string(e.what()).find("ShareableList<long") != std::string::npos);
    }
    // Same size and signedness is the same type in every program: long long.
    REQUIRE(mproc::ShareableList<long long>::attach(name)[2] == 3);
    longs.shm().unlink();

    auto strings = mproc::ShareableList<std::string>::create(name, {std::string("x")});
    REQUIRE_THROWS_AS(mproc::ShareableList<long>::attach(name), mproc::SerializationError);
    strings.shm().unlink();

    mproc::SharedMemory raw(4096);  // zeros: no header
    REQUIRE_THROWS_AS(mproc::ShareableList<long>::attach(raw), mproc::SerializationError);
    mproc::SharedMemory tiny(16);
    REQUIRE_THROWS_AS(mproc::ShareableList<long>::attach(tiny), mproc::SerializationError);
    REQUIRE_THROWS_AS(mproc::ShareableList<long>::attach(unique_name("missing")), mproc::OSError);
}

TEST_CASE("a hostile writer cannot make a string slot read outside the segment", "[shareable_list][bad]") {
    mproc::ShareableList<std::string> sl{"abc", "def"};
    std::byte* base = sl.shm().data();
    // The slot table starts after the 64-byte header; slot 0's length is
    // the first u32 of its slot.
    std::uint64_t off;
    std::memcpy(&off, base + 64, 8);
    const std::uint32_t huge = 1u << 30;
    pid_t pid = fork_child([&] { std::memcpy(base + off, &huge, 4); });
    REQUIRE(wait_child(pid) == 0);
    REQUIRE_THROWS_AS(std::string(sl[0]), mproc::SerializationError);
    REQUIRE(sl[1] == "def");
    std::memcpy(base + 64 + 8, &huge, 4);  // slot 1's offset points far away
    REQUIRE_THROWS_AS(std::string(sl[1]), mproc::SerializationError);
    REQUIRE_THROWS_AS(mproc::ShareableList<std::string>::attach(sl.shm()), mproc::SerializationError);
}
