// SharedMemory, Value, Array, MappedFile and SharedMemoryManager across real
// (forked and spawned) processes.
#include <catch2/catch.hpp>

#include <mproc/detail/shm_tracker.hpp>
#include <mproc/process.hpp>
#include <mproc/shared_memory.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <new>
#include <ranges>
#include <set>
#include <string>
#include <thread>

#include <unistd.h>

#include "support.hpp"

using mproc_test::fork_child;
using mproc_test::wait_child;

using mproc_test::shm_entries;

namespace {
std::string unique_name(const char* what) { return mproc_test::unique_shm_name(what); }
}  // namespace

TEST_CASE("anonymous SharedMemory is shared with a forked child and never named", "[shm]") {
    mproc::SharedMemory shm(1 << 20);
    REQUIRE(shm.size() == (1u << 20));
    REQUIRE(shm.name().empty());
    for (std::byte b : shm.bytes()) REQUIRE(b == std::byte{0});

    pid_t pid = fork_child([&] { std::memcpy(shm.data() + 4096, "from child", 11); });
    REQUIRE(wait_child(pid) == 0);
    REQUIRE(std::string(reinterpret_cast<const char*>(shm.data() + 4096)) == "from child");
    REQUIRE(mproc_test::shm_files_held().empty());
    // And exactly: the segment is a memfd, a file with no name anywhere.
    mproc::detail::HandleWriter w;
    shm.mproc_export(w);
    auto target = std::filesystem::read_symlink("/proc/self/fd/" + std::to_string(w.refs.at(0).fd));
    REQUIRE(target.string().rfind("/memfd:", 0) == 0);
    REQUIRE_THROWS_AS(shm.unlink(), mproc::ValueError);
}

TEST_CASE("named SharedMemory: create, attach from another process, unlink", "[shm]") {
    const std::string name = unique_name("named");
    auto seg = mproc::SharedMemory::create(name, 4096);
    REQUIRE(seg.name() == name);
    REQUIRE(std::filesystem::exists("/dev/shm/" + name));
    auto mode = std::filesystem::status("/dev/shm/" + name).permissions();
    REQUIRE(mode == (std::filesystem::perms::owner_read | std::filesystem::perms::owner_write));

    // O_EXCL: a second create of the same name fails instead of sharing.
    REQUIRE_THROWS_AS(mproc::SharedMemory::create(name, 4096), mproc::OSError);

    pid_t pid = fork_child([&] {
        auto other = mproc::SharedMemory::attach(name);
        if (other.size() != 4096) throw std::runtime_error("wrong size");
        std::memcpy(other.data(), "hello", 6);
    });
    REQUIRE(wait_child(pid) == 0);
    REQUIRE(std::string(reinterpret_cast<const char*>(seg.data())) == "hello");

    // Asking for more than the segment has is an error, not a short mapping.
    REQUIRE_THROWS_AS(mproc::SharedMemory::attach(name, 8192), mproc::Error);
    seg.unlink();
    REQUIRE_FALSE(std::filesystem::exists("/dev/shm/" + name));
    // The mapping outlives the name.
    REQUIRE(std::string(reinterpret_cast<const char*>(seg.data())) == "hello");
}

TEST_CASE("attaching a missing name is an OSError that names it", "[shm]") {
    const std::string name = unique_name("missing");
    try {
        mproc::SharedMemory::attach(name);
        FAIL("attach of a missing segment succeeded");
    } catch (const mproc::OSError& e) {
        REQUIRE(e.code() == ENOENT);
        REQUIRE(std::string(e.what()).find(name) != std::string::npos);
    }
    REQUIRE_THROWS_AS(mproc::SharedMemory::create("bad/name", 16), mproc::ValueError);
    REQUIRE_THROWS_AS(mproc::SharedMemory::create(name, 0), mproc::ValueError);
}

TEST_CASE("4 processes x 100000 increments of a Value<long> under its lock", "[shm][value]") {
    mproc::Value<long> counter(0);
    constexpr int kProcs = 4, kIncrements = 100000;
    std::vector<pid_t> pids;
    for (int p = 0; p < kProcs; ++p) {
        pids.push_back(fork_child([&] {
            for (int i = 0; i < kIncrements; ++i) {
                auto guard = counter.get_lock();
                counter.value() += 1;
            }
        }));
    }
    for (pid_t pid : pids) REQUIRE(wait_child(pid) == 0);
    REQUIRE(counter.load() == long{kProcs} * kIncrements);
}

TEST_CASE("Value copies are handles to the same value", "[shm][value]") {
    mproc::Value<double> v(1.5);
    mproc::Value<double> w = v;
    w.store(2.5);
    REQUIRE(v.load() == 2.5);
    REQUIRE(v.lock().acquire(mproc::Duration(0)));
    REQUIRE(w.lock().is_owned());  // same lock, re-entrant from this thread
    v.lock().release();
}

TEST_CASE("Array: shared elements, bounds-checked at(), its own lock", "[shm][array]") {
    mproc::Array<int> a(10);
    REQUIRE(a.size() == 10);
    for (int x : a) REQUIRE(x == 0);
    pid_t pid = fork_child([&] {
        for (std::size_t i = 0; i < a.size(); ++i) {
            auto g = a.get_lock();
            a[i] = static_cast<int>(i * i);
        }
    });
    REQUIRE(wait_child(pid) == 0);
    for (std::size_t i = 0; i < a.size(); ++i) REQUIRE(a[i] == static_cast<int>(i * i));
    REQUIRE_THROWS_AS(a.at(10), std::out_of_range);

    mproc::Array<double> b{1.0, 2.0, 3.0};
    REQUIRE(b.span().size() == 3);
    REQUIRE(b[2] == 3.0);
    std::vector<long> src{5, 6, 7, 8};
    mproc::Array<long> c(src);
    REQUIRE(std::vector<long>(c.begin(), c.end()) == src);
}

TEST_CASE("MappedFile: shared between processes and on disk after flush", "[shm][file]") {
    auto path = std::filesystem::temp_directory_path() / unique_name("mapped");
    {
        mproc::MappedFile f(path.string(), 8192);
        REQUIRE(f.size() == 8192);
        pid_t pid = fork_child([&] {
            mproc::MappedFile g(path.string(), 8192);
            std::memcpy(g.data() + 100, "on disk", 8);
            g.flush();
        });
        REQUIRE(wait_child(pid) == 0);
        REQUIRE(std::string(reinterpret_cast<const char*>(f.data() + 100)) == "on disk");
        std::memcpy(f.data(), "head", 4);
        f.flush();
    }
    std::ifstream in(path, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    REQUIRE(bytes.size() == 8192);
    REQUIRE(bytes.substr(0, 4) == "head");
    REQUIRE(bytes.substr(100, 7) == "on disk");
    std::filesystem::remove(path);
}

TEST_CASE("a handle exported and imported in one process refers to the same memory", "[shm][handle]") {
    mproc::SharedMemory shm(64);
    mproc::detail::HandleWriter w;
    shm.mproc_export(w);
    mproc::detail::HandleReader r(w.refs, w.values);
    auto again = mproc::SharedMemory::mproc_import(r);
    again.data()[0] = std::byte{42};
    REQUIRE(shm.data()[0] == std::byte{42});
    REQUIRE(again.data() == shm.data());  // one mapping, not two
}

TEST_CASE("a handle whose fd this process does not hold is a SerializationError", "[shm][handle]") {
    mproc::SharedMemory shm(64);
    mproc::detail::HandleWriter w;
    shm.mproc_export(w);
    auto refs = w.refs;
    refs[0].ino ^= 1;  // same fd number, but not the same file
    mproc::detail::HandleReader r(refs, w.values);
    REQUIRE_THROWS_AS(mproc::SharedMemory::mproc_import(r), mproc::SerializationError);

    refs = w.refs;
    refs[0].fd = 100000;  // not open here
    mproc::detail::HandleReader r2(refs, w.values);
    REQUIRE_THROWS_AS(mproc::SharedMemory::mproc_import(r2), mproc::SerializationError);

    refs = w.refs;
    refs[0].offset = 1 << 20;  // outside the segment
    mproc::detail::HandleReader r3(refs, w.values);
    REQUIRE_THROWS_AS(mproc::Lock::mproc_import(r3), mproc::SerializationError);
}

TEST_CASE("a Lock handle refuses to import as an RLock or an Event", "[shm][handle]") {
    mproc::Lock lock;
    mproc::detail::HandleWriter w;
    lock.mproc_export(w);
    mproc::detail::HandleReader r(w.refs, w.values);
    REQUIRE_THROWS_AS(mproc::RLock::mproc_import(r), mproc::SerializationError);
    mproc::detail::HandleReader r2(w.refs, w.values);
    REQUIRE_THROWS_AS(mproc::Event::mproc_import(r2), mproc::SerializationError);
    mproc::detail::HandleReader r3(w.refs, w.values);
    auto same = mproc::Lock::mproc_import(r3);
    REQUIRE(same.acquire(mproc::Duration(0)));
    bool other_got_it = true;
    std::thread([&] { other_got_it = lock.try_lock(); }).join();
    REQUIRE_FALSE(other_got_it);  // held through `same`, so it is one lock
    same.release();
    REQUIRE(lock.try_lock());
    lock.release();
}

// ---- named segments as handles, SharedMemoryManager ------------------------

namespace {

void check(bool ok, const char* what) {
    if (!ok) throw std::runtime_error(what);
}

void named_in_child(mproc::SharedMemory shm, std::string name, mproc::MappedFile file, std::string path) {
    check(shm.name() == name, "the named segment's handle lost its name");
    check(file.path() == path, "the mapped file's handle lost its path");
    std::memcpy(shm.data(), "spawned", 8);
    std::memcpy(file.data(), "spawned", 8);
}

void sum_into(mproc::ShareableList<long> sl, std::size_t start, std::size_t end) {
    for (std::size_t i = start; i < end; ++i) sl[i] = sl[i] * sl[i];
}

struct NameReport {
    std::atomic<int> tracker{0};
    char names[2][64] = {};
};

}  // namespace

TEST_CASE("named SharedMemory and MappedFile handles reach a spawned child with their name and path", "[shm][spawn]") {
    const std::string name = unique_name("handle");
    auto path = std::filesystem::temp_directory_path() / unique_name("handle-file");
    auto shm = mproc::SharedMemory::create(name, 4096);
    mproc::MappedFile file(path.string(), 4096);
    mproc::Process p(named_in_child, shm, name, file, path.string());
    p.start_method(mproc::StartMethod::spawn);
    p.start();
    REQUIRE(p.join(std::chrono::seconds(60)));
    REQUIRE(p.exitcode() == 0);
    REQUIRE(std::string(reinterpret_cast<const char*>(shm.data())) == "spawned");
    REQUIRE(std::string(reinterpret_cast<const char*>(file.data())) == "spawned");
    shm.unlink();
    std::filesystem::remove(path);
}

TEST_CASE("SharedMemoryManager: segments and lists made, shared, and gone after shutdown", "[shm][smm]") {
    auto before = shm_entries();
    mproc::SharedMemoryManager smm;
    smm.start();
    auto raw = smm.SharedMemory(128);
    auto sl = smm.ShareableList<long>(std::views::iota(0L, 2000L));
    REQUIRE(smm.names().size() == 2);
    REQUIRE(std::filesystem::exists("/dev/shm/" + raw.name()));
    REQUIRE(std::filesystem::exists("/dev/shm/" + sl.name()));

    // Python's example: two processes each square half of the list.
    mproc::Process p1(sum_into, sl, std::size_t{0}, std::size_t{1000});
    mproc::Process p2(sum_into, sl, std::size_t{1000}, std::size_t{2000});
    p1.start_method(mproc::StartMethod::spawn);
    p1.start();
    p2.start();  // fork
    REQUIRE(p1.join(std::chrono::seconds(60)));
    REQUIRE(p2.join(std::chrono::seconds(60)));
    long total = 0;
    for (long x : sl) total += x;
    REQUIRE(total == 1999L * 2000 * 3999 / 6);

    // A forked child's copy of the manager never unlinks the parent's.
    pid_t pid = fork_child([&] { smm.shutdown(); });
    REQUIRE(wait_child(pid) == 0);
    REQUIRE(std::filesystem::exists("/dev/shm/" + sl.name()));

    smm.shutdown();
    REQUIRE_FALSE(std::filesystem::exists("/dev/shm/" + raw.name()));
    REQUIRE_FALSE(std::filesystem::exists("/dev/shm/" + sl.name()));
    REQUIRE(sl[1999] == 1999L * 1999);  // mappings outlive the names
    REQUIRE_THROWS_AS(smm.SharedMemory(16), mproc::ValueError);
    REQUIRE_THROWS_AS(smm.start(), mproc::ValueError);
    smm.shutdown();  // again: nothing
    // Nothing of this manager's is left. (Only its own names are compared:
    // ctest runs another test beside this one, which may hold segments of a
    // SharedMemoryManager of its own.)
    const std::string ours = raw.name().substr(0, raw.name().rfind('-') + 1);  // "mproc-smm-<pid>-"
    for (const auto& e : shm_entries())
        if (!before.count(e)) REQUIRE(e.rfind(ours, 0) != 0);
}

TEST_CASE("SharedMemoryManager: destruction unlinks, and so does its process's kill -9", "[shm][smm]") {
    std::string made;
    {
        mproc::SharedMemoryManager smm;
        made = smm.SharedMemory(64).name();
        REQUIRE(std::filesystem::exists("/dev/shm/" + made));
    }
    REQUIRE_FALSE(std::filesystem::exists("/dev/shm/" + made));

    mproc::SharedMemory mem(sizeof(NameReport));
    auto* report = new (mem.data()) NameReport();
    mproc::Event ready, never;
    pid_t pid = fork_child([&] {
        mproc::SharedMemoryManager smm;
        auto a = smm.SharedMemory(64);
        auto b = smm.ShareableList<std::string>({"x", "y"});
        std::strncpy(report->names[0], a.name().c_str(), 63);
        std::strncpy(report->names[1], b.name().c_str(), 63);
        report->tracker = mproc::detail::shm_tracker_pid();
        ready.set();
        never.wait(std::chrono::seconds(60));
    });
    REQUIRE(ready.wait(std::chrono::seconds(30)));
    const std::string a = report->names[0], b = report->names[1];
    REQUIRE(std::filesystem::exists("/dev/shm/" + a));
    REQUIRE(std::filesystem::exists("/dev/shm/" + b));
    mproc_test::ExitWatch tracker(report->tracker.load());
    ::kill(pid, SIGKILL);
    REQUIRE(wait_child(pid) == -SIGKILL);
    REQUIRE(tracker.wait(std::chrono::seconds(30)));  // the tracker unlinked, then exited
    REQUIRE_FALSE(std::filesystem::exists("/dev/shm/" + a));
    REQUIRE_FALSE(std::filesystem::exists("/dev/shm/" + b));
}
