// ManagedSegment: Boost.Interprocess containers built in the parent, read and
// changed in fork and spawn children; named heaps attached by name; bytes
// that are no heap refused; and a holder of the heap's lock killed.
#include <catch2/catch.hpp>

#include <mproc/managed_segment.hpp>
#include <mproc/process.hpp>
#include <mproc/sync.hpp>

#include <boost/interprocess/containers/map.hpp>
#include <boost/interprocess/containers/string.hpp>
#include <boost/interprocess/containers/vector.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <functional>
#include <set>
#include <string>

#include <unistd.h>

#include "support.hpp"

using mproc_test::fork_child;
using mproc_test::wait_child;
using namespace std::chrono_literals;
namespace bip = boost::interprocess;

namespace {

using IntVec = bip::vector<int, mproc::ManagedSegment::allocator<int>>;
using ShmString = bip::basic_string<char, std::char_traits<char>, mproc::ManagedSegment::allocator<char>>;
using Entry = std::pair<const int, double>;
using IntMap = bip::map<int, double, std::less<int>, mproc::ManagedSegment::allocator<Entry>>;

std::string unique_name(const std::string& what) { return mproc_test::unique_shm_name("ms-" + what); }

void check(bool ok, const char* what) {
    if (!ok) throw std::runtime_error(what);
}


// A spawned child: finds what the parent built, checks it, changes it.
void spawned_worker(mproc::ManagedSegment seg) {
    auto [v, n] = seg.find<IntVec>("numbers");
    check(v != nullptr && n == 1, "vector not found");
    check(v->size() == 100 && (*v)[99] == 99, "vector contents");
    for (int i = 0; i < 100; ++i) v->push_back(1000 + i);  // allocates in the segment
    auto [m, mn] = seg.find<IntMap>("squares");
    check(m != nullptr && m->at(7) == 49.0, "map contents");
    m->emplace(-1, -1.0);
    auto* s = seg.construct<ShmString>("greeting")("from a spawned child", seg.get_allocator<char>());
    check(s != nullptr, "construct");
}

}  // namespace

TEST_CASE("ManagedSegment: Boost containers built in the parent, changed by fork and spawn children",
          "[managed_segment]") {
    mproc::ManagedSegment seg(1 << 20);
    REQUIRE(seg.shm().name().empty());
    auto* v = seg.construct<IntVec>("numbers")(seg.get_allocator<int>());
    for (int i = 0; i < 100; ++i) v->push_back(i);
    auto* m = seg.find_or_construct<IntMap>("squares")(std::less<int>(), seg.get_allocator<Entry>());
    for (int i = 0; i < 10; ++i) m->emplace(i, double(i * i));
    REQUIRE(seg.get_num_named_objects() == 2);

    pid_t pid = fork_child([&] {
        auto [fv, n] = seg.find<IntVec>("numbers");
        check(fv == v && n == 1, "fork child finds the vector at the same address");
        for (int& x : *fv) x *= 2;
    });
    REQUIRE(wait_child(pid) == 0);
    REQUIRE((*v)[99] == 198);
    for (int& x : *v) x /= 2;

    mproc::Process p(spawned_worker, seg);
    p.start_method(mproc::StartMethod::spawn);
    p.start();
    REQUIRE(p.join(60s));
    REQUIRE(p.exitcode() == 0);
    REQUIRE(v->size() == 200);
    REQUIRE((*v)[150] == 1050);
    REQUIRE(m->at(-1) == -1.0);
    auto [s, sn] = seg.find<ShmString>("greeting");
    REQUIRE(s != nullptr);
    REQUIRE(std::string(s->begin(), s->end()) == "from a spawned child");
    REQUIRE(seg.check_sanity());
    REQUIRE(seg.destroy<ShmString>("greeting"));
    REQUIRE(seg.find<ShmString>("greeting").first == nullptr);
    REQUIRE(mproc_test::shm_files_held().empty());  // anonymous: nothing named, nothing to unlink
}

TEST_CASE("a named ManagedSegment is attached by name in another process", "[managed_segment]") {
    const auto name = unique_name("named");
    mproc::ManagedSegment seg(mproc::SharedMemory::create(name, 64 * 1024));
    seg.construct<int>("answer")(42);
    pid_t pid = fork_child([&] {
        auto other = mproc::ManagedSegment::attach(mproc::SharedMemory::attach(name));
        auto [p, n] = other.find<int>("answer");
        check(p != nullptr && *p == 42, "answer");
        *p = 43;
        other.construct<double>("pi")(3.14);
    });
    REQUIRE(wait_child(pid) == 0);
    REQUIRE(*seg.find<int>("answer").first == 43);
    REQUIRE(*seg.find<double>("pi").first == 3.14);
    seg.shm().unlink();
}

TEST_CASE("ManagedSegment refuses bytes that hold no heap, and a segment too small", "[managed_segment][bad]") {
    mproc::SharedMemory zeros(4096);
    REQUIRE_THROWS_AS(mproc::ManagedSegment::attach(zeros), mproc::SerializationError);
    mproc::SharedMemory small(64);
    REQUIRE_THROWS_AS(mproc::ManagedSegment(small), mproc::ValueError);
    mproc::ManagedSegment seg(4096);
    REQUIRE_THROWS_AS(seg.construct<char>("big")[1 << 20](0), bip::bad_alloc);
    REQUIRE(seg.check_sanity());
}

TEST_CASE("a process killed holding the heap's lock: later heap operations say so, data stays readable",
          "[managed_segment][crash]") {
    mproc::ManagedSegment seg(64 * 1024);
    int* answer = seg.construct<int>("answer")(42);
    mproc::Event holding, never;
    pid_t pid = fork_child([&] {
        // atomic_func runs its functor under the segment manager's lock.
        std::function<void()> hold = [&] {
            holding.set();
            never.wait(60s);
        };
        seg.get_segment_manager()->atomic_func(hold);
    });
    REQUIRE(holding.wait(30s));
    ::kill(pid, SIGKILL);
    REQUIRE(wait_child(pid) == -SIGKILL);
    REQUIRE(*answer == 42);
    REQUIRE_THROWS_AS(seg.construct<int>("other")(1), mproc::Error);
    REQUIRE_THROWS_AS(seg.find<int>("answer"), mproc::Error);  // and it stays refused
}
