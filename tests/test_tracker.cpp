// The shared-memory tracker across real processes: tracked names vanish when
// their creator dies however it dies (kill -9, an uncaught exception, a
// normal exit, killed at the chosen instruction of a create), untracked ones
// survive, only the creator tracks, and the tracker itself is detached,
// restartable and gone when its creator is.
//
// No test sleeps: each waits for the tracker process's exit through a pidfd
// (the tracker unlinks before it exits), or for an Event.
#include <catch2/catch.hpp>

#include <mproc/detail/shm_tracker.hpp>
#include <mproc/process.hpp>
#include <mproc/shared_memory.hpp>
#include <mproc/sync.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <new>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <poll.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.hpp"

using mproc_test::fork_child;
using mproc_test::wait_child;
using namespace std::chrono_literals;

using mproc_test::ExitWatch;
using mproc_test::shm_exists;

namespace {

std::string unique_name(const std::string& what) { return mproc_test::unique_shm_name("trk-" + what); }

// What a child tells its parent, in shared memory.
struct Report {
    std::atomic<int> tracker{0};
    std::atomic<int> tracker2{0};
    std::atomic<int> grandchild{0};
};

struct Shared {
    mproc::SharedMemory mem{sizeof(Report)};
    Report* report = new (mem.data()) Report();
    mproc::Event ready, go, never;
};

int parent_of(int pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(in)), {});
    std::istringstream rest(stat.substr(stat.rfind(')') + 2));
    char state;
    int ppid = 0;
    rest >> state >> ppid;
    return ppid;
}

// Runs `make` in a forked child, which then reports its tracker and waits
// to be killed; runs `meanwhile` here, kill -9s the child, and returns once
// the child's tracker has exited (it unlinks before it exits).
void kill_creator(const std::function<void()>& make, const std::function<void()>& meanwhile = [] {}) {
    Shared s;
    pid_t pid = fork_child([&] {
        make();
        s.report->tracker = mproc::detail::shm_tracker_pid();
        s.ready.set();
        s.never.wait(60s);
    });
    REQUIRE(s.ready.wait(30s));
    REQUIRE(s.report->tracker > 0);
    meanwhile();
    ExitWatch tracker(s.report->tracker);
    ::kill(pid, SIGKILL);
    REQUIRE(wait_child(pid) == -SIGKILL);
    REQUIRE(tracker.wait(30s));
}

}  // namespace

TEST_CASE("a tracked name is unlinked when its creator is killed with kill -9", "[tracker]") {
    const auto name = unique_name("kill9");
    kill_creator([&] { mproc::SharedMemory::create(name, 4096); },  // tracked by default
                 [&] { REQUIRE(shm_exists(name)); });
    REQUIRE_FALSE(shm_exists(name));
}

TEST_CASE("a creator that dies of an uncaught exception leaves no name", "[tracker]") {
    const auto name = unique_name("uncaught");
    Shared s;
    pid_t pid = fork_child([&] {
        auto shm = mproc::SharedMemory::create(name, 4096);
        s.report->tracker = mproc::detail::shm_tracker_pid();
        s.ready.set();
        s.go.wait(60s);
        std::signal(SIGABRT, SIG_DFL);  // not Catch's handler, inherited from the parent
        // An exception escaping a thread's function: std::terminate, abort().
        std::thread([] { throw std::runtime_error("uncaught on purpose"); }).join();
    });
    REQUIRE(s.ready.wait(30s));
    ExitWatch tracker(s.report->tracker);
    s.go.set();
    REQUIRE(wait_child(pid) == -SIGABRT);
    REQUIRE(tracker.wait(30s));
    REQUIRE_FALSE(shm_exists(name));
}

namespace {
void create_and_return(std::string name, mproc::Value<int> tracker) {
    auto shm = mproc::SharedMemory::create(name, 4096);
    tracker.store(mproc::detail::shm_tracker_pid());
}
void create_and_throw(std::string name, mproc::Value<int> tracker) {
    create_and_return(std::move(name), tracker);
    throw std::runtime_error("the target fails on purpose");
}
}  // namespace

TEST_CASE("a spawned creator's exit, normal or by exception, unlinks before the exit completes", "[tracker][spawn]") {
    for (bool throws : {false, true}) {
        const auto name = unique_name(throws ? "spawn-throw" : "spawn-return");
        mproc::Value<int> tracker(0);
        mproc::Process p(throws ? create_and_throw : create_and_return, name, tracker);
        p.start_method(mproc::StartMethod::spawn);
        p.start();
        REQUIRE(p.join(60s));
        REQUIRE(p.exitcode() == (throws ? 1 : 0));
        REQUIRE(tracker.load() > 0);
        // std::exit ran the tracker's exit handler, which waits until the
        // tracker has unlinked: no waiting needed here.
        REQUIRE_FALSE(shm_exists(name));
    }
}

TEST_CASE("a fork child that creates and returns leaves no name either", "[tracker][fork]") {
    const auto name = unique_name("fork-return");
    mproc::Value<int> tracker(0);
    mproc::Event made, go;
    mproc::Process p(
        [&] {
            create_and_return(name, tracker);
            made.set();
            go.wait(60s);
        });
    p.start_method(mproc::StartMethod::fork);
    p.start();
    REQUIRE(made.wait(30s));
    ExitWatch watch(tracker.load());
    go.set();
    REQUIRE(p.join(60s));
    REQUIRE(p.exitcode() == 0);
    REQUIRE(watch.wait(30s));  // a fork child _exits: the end of stream tells the tracker
    REQUIRE_FALSE(shm_exists(name));
}

TEST_CASE("track=false survives its creator's kill -9; a tracked one beside it does not", "[tracker]") {
    const auto tracked = unique_name("tracked");
    const auto kept = unique_name("untracked");
    kill_creator([&] {
        mproc::SharedMemory::create(tracked, 4096);
        mproc::SharedMemory::create(kept, 4096, {.track = false});
    });
    REQUIRE_FALSE(shm_exists(tracked));
    REQUIRE(shm_exists(kept));
    mproc::SharedMemory::attach(kept).unlink();
    REQUIRE_FALSE(shm_exists(kept));
}

namespace {
Shared* g_fault_shared = nullptr;
void stop_at_fault_point(const char* point) {
    if (std::string(point) != "reserved") return;
    g_fault_shared->report->tracker = mproc::detail::shm_tracker_pid();
    g_fault_shared->ready.set();
    g_fault_shared->never.wait(60s);  // killed here
}
}  // namespace

TEST_CASE("killed between the tracker making the name and the creator mapping it: no name", "[tracker][fault]") {
    const auto name = unique_name("fault");
    Shared s;
    g_fault_shared = &s;
    pid_t pid = fork_child([&] {
        mproc::detail::set_shm_fault_hook(stop_at_fault_point);
        mproc::SharedMemory::create(name, 4096);
    });
    REQUIRE(s.ready.wait(30s));
    REQUIRE(shm_exists(name));  // made, size 0, not yet opened by the creator
    ExitWatch tracker(s.report->tracker);
    ::kill(pid, SIGKILL);
    REQUIRE(wait_child(pid) == -SIGKILL);
    REQUIRE(tracker.wait(30s));
    REQUIRE_FALSE(shm_exists(name));
    g_fault_shared = nullptr;
}

TEST_CASE("only the creator tracks: attachers and children never unlink", "[tracker]") {
    const auto name = unique_name("creator-only");
    auto shm = mproc::SharedMemory::create(name, 4096);  // this process tracks it
    const int mine = mproc::detail::shm_tracker_pid();
    REQUIRE(mine > 0);

    // A forked child holding the handle, and one that attached by name,
    // killed: neither tracked the name, and the parent's tracker lives on.
    Shared s;
    pid_t holder = fork_child([&] {
        if (mproc::detail::shm_tracker_pid() != 0) throw std::runtime_error("the child inherited the tracker");
        shm.data()[0] = std::byte{1};
        s.ready.set();
        s.never.wait(60s);
    });
    REQUIRE(s.ready.wait(30s));
    ::kill(holder, SIGKILL);
    REQUIRE(wait_child(holder) == -SIGKILL);
    pid_t attacher = fork_child([&] {
        auto again = mproc::SharedMemory::attach(name);
        again.data()[1] = std::byte{2};
        if (mproc::detail::shm_tracker_pid() != 0) throw std::runtime_error("attach started a tracker");
    });
    REQUIRE(wait_child(attacher) == 0);
    REQUIRE(shm_exists(name));
    REQUIRE(shm.data()[1] == std::byte{2});
    REQUIRE(mproc::detail::shm_tracker_pid() == mine);
    // The parent's tracker still answers: another tracked create goes to it.
    const auto other = unique_name("creator-only-2");
    auto shm2 = mproc::SharedMemory::create(other, 64);
    REQUIRE(mproc::detail::shm_tracker_pid() == mine);
    shm.unlink();
    shm2.unlink();
    REQUIRE_FALSE(shm_exists(name));
}

TEST_CASE("unlink() stops tracking: a name made again by someone else survives the first creator", "[tracker]") {
    const auto name = unique_name("forget");
    std::optional<mproc::SharedMemory> mine;
    kill_creator([&] { mproc::SharedMemory::create(name, 4096).unlink(); },
                 [&] {
                     REQUIRE_FALSE(shm_exists(name));
                     mine = mproc::SharedMemory::create(name, 4096, {.track = false});
                 });
    REQUIRE(shm_exists(name));
    mine->unlink();
}

TEST_CASE("the tracker unlinks only the file it made, not a new one under the same name", "[tracker]") {
    const auto name = unique_name("inode");
    std::optional<mproc::SharedMemory> theirs;
    kill_creator([&] { mproc::SharedMemory::create(name, 4096); },
                 [&] {
                     // Someone else removes the name behind the creator's back and makes it anew.
                     REQUIRE(::shm_unlink(("/" + name).c_str()) == 0);
                     theirs = mproc::SharedMemory::create(name, 4096, {.track = false});
                 });
    REQUIRE(shm_exists(name));
    theirs->unlink();
}

TEST_CASE("a killed tracker is restarted and told the names it had", "[tracker]") {
    const auto first = unique_name("restart-a");
    const auto second = unique_name("restart-b");
    Shared s;
    pid_t pid = fork_child([&] {
        auto a = mproc::SharedMemory::create(first, 4096);
        s.report->tracker = mproc::detail::shm_tracker_pid();
        s.ready.set();
        if (!s.go.wait(60s)) throw std::runtime_error("no go");
        auto b = mproc::SharedMemory::create(second, 4096);
        s.report->tracker2 = mproc::detail::shm_tracker_pid();
        s.ready.set();
        s.never.wait(60s);
    });
    REQUIRE(s.ready.wait(30s));
    s.ready.clear();
    {
        ExitWatch old(s.report->tracker);
        ::kill(s.report->tracker, SIGKILL);
        REQUIRE(old.wait(30s));
    }
    REQUIRE(shm_exists(first));  // killed, it unlinked nothing
    s.go.set();
    REQUIRE(s.ready.wait(30s));
    REQUIRE(s.report->tracker2 > 0);
    REQUIRE(s.report->tracker2 != s.report->tracker);
    ExitWatch tracker(s.report->tracker2);
    ::kill(pid, SIGKILL);
    REQUIRE(wait_child(pid) == -SIGKILL);
    REQUIRE(tracker.wait(30s));
    REQUIRE_FALSE(shm_exists(first));
    REQUIRE_FALSE(shm_exists(second));
}

TEST_CASE("anonymous segments and attach start no tracker", "[tracker]") {
    const auto name = unique_name("no-tracker");
    auto named = mproc::SharedMemory::create(name, 4096, {.track = false});
    pid_t pid = fork_child([&] {
        mproc::SharedMemory shm(4096);
        mproc::Value<int> v(1);
        mproc::Array<double> a(8);
        mproc::ShareableList<long> sl{1, 2, 3};
        auto again = mproc::SharedMemory::attach(name);
        auto list_again = mproc::ShareableList<long>::attach(sl.shm());
        if (mproc::detail::shm_tracker_pid() != 0) throw std::runtime_error("a tracker was started");
    });
    REQUIRE(wait_child(pid) == 0);
    named.unlink();
}

TEST_CASE("the tracker is detached: invisible to wait(), its own session, deaf to SIGINT/SIGTERM/SIGHUP",
          "[tracker]") {
    const auto a = unique_name("detached-a");
    const auto b = unique_name("detached-b");
    pid_t pid = fork_child([&] {
        auto first = mproc::SharedMemory::create(a, 64);
        const int t = mproc::detail::shm_tracker_pid();
        if (parent_of(t) != ::getpid()) throw std::runtime_error("the tracker is not the creator's (clone) child");
        if (::getsid(t) == ::getsid(0)) throw std::runtime_error("the tracker shares the creator's session");
        // A program's own wait() never sees it (no exit signal: a clone child).
        if (::waitpid(-1, nullptr, WNOHANG) != -1 || errno != ECHILD)
            throw std::runtime_error("wait() sees the tracker");
        ::kill(t, SIGINT);
        ::kill(t, SIGTERM);
        ::kill(t, SIGHUP);
        // Had any of those killed it, this create would start another.
        auto second = mproc::SharedMemory::create(b, 64);
        if (mproc::detail::shm_tracker_pid() != t) throw std::runtime_error("the tracker died of a signal");
        first.unlink();
        second.unlink();
    });
    REQUIRE(wait_child(pid) == 0);
    REQUIRE_FALSE(shm_exists(a));
    REQUIRE_FALSE(shm_exists(b));
}

TEST_CASE("a multi-threaded creator that forks while it creates: every name tracked, no fd leaked", "[tracker]") {
    constexpr int kThreads = 4, kPerThread = 25, kForks = 20;
    const auto prefix = unique_name("mt");
    Shared s;
    pid_t pid = fork_child([&] {
        std::vector<mproc::SharedMemory> made[kThreads];
        std::vector<std::thread> threads;
        for (int t = 0; t < kThreads; ++t)
            threads.emplace_back([&, t] {
                for (int i = 0; i < kPerThread; ++i)
                    made[t].push_back(mproc::SharedMemory::create(
                        prefix + "-" + std::to_string(t) + "-" + std::to_string(i), 64));
            });
        for (int f = 0; f < kForks; ++f) {
            pid_t g = ::fork();  // plain fork, racing the creates
            if (g == 0) {
                if (f == kForks - 1) {
                    // The last one stays: if it had kept the creator's end
                    // of the tracker's socket, the tracker would outlive
                    // the creator's death below.
                    s.report->grandchild = ::getpid();
                    s.go.set();
                    s.never.wait(60s);
                }
                ::_exit(0);
            }
            if (f < kForks - 1) ::waitpid(g, nullptr, 0);
        }
        for (auto& t : threads) t.join();
        if (!s.go.wait(30s)) throw std::runtime_error("the last grandchild did not start");
        s.report->tracker = mproc::detail::shm_tracker_pid();
        s.ready.set();
        s.never.wait(60s);
    });
    REQUIRE(s.ready.wait(60s));
    for (int t = 0; t < kThreads; ++t)
        for (int i = 0; i < kPerThread; ++i) REQUIRE(shm_exists(prefix + "-" + std::to_string(t) + "-" + std::to_string(i)));
    ExitWatch tracker(s.report->tracker);
    const int grandchild = s.report->grandchild;
    REQUIRE(grandchild > 0);
    ::kill(pid, SIGKILL);
    REQUIRE(wait_child(pid) == -SIGKILL);
    const bool tracker_gone = tracker.wait(30s);
    ::kill(grandchild, SIGKILL);  // reparented: init reaps it
    REQUIRE(tracker_gone);
    for (int t = 0; t < kThreads; ++t)
        for (int i = 0; i < kPerThread; ++i)
            REQUIRE_FALSE(shm_exists(prefix + "-" + std::to_string(t) + "-" + std::to_string(i)));
}

namespace {
// Runs shm_noinit NAME MODE; its exit status and what it printed.
std::pair<int, std::string> run_noinit_text(const std::string& name, const char* mode) {
    int out[2];
    REQUIRE(::pipe(out) == 0);
    pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(out[1], 1);
        ::close(out[0]);
        ::close(out[1]);
        ::signal(SIGABRT, SIG_DFL);
        execl(MPROC_SHM_NOINIT_HELPER, MPROC_SHM_NOINIT_HELPER, name.c_str(), mode, static_cast<char*>(nullptr));
        ::_exit(127);
    }
    ::close(out[1]);
    std::string text;
    char buf[64];
    for (ssize_t n; (n = ::read(out[0], buf, sizeof buf)) > 0;) text.append(buf, static_cast<std::size_t>(n));
    ::close(out[0]);
    auto status = wait_child(pid);
    REQUIRE(status.has_value());
    return {*status, text};
}

// Its exit status and the tracker pid it printed.
std::pair<int, int> run_noinit(const std::string& name, const char* mode) {
    auto [code, text] = run_noinit_text(name, mode);
    return {code, text.empty() ? 0 : std::stoi(text)};
}
}  // namespace

TEST_CASE("a program that never calls mproc::init tracks its names too", "[tracker][noinit]") {
    const auto returned = unique_name("noinit-return");
    auto [code, tracker] = run_noinit(returned, "return");
    REQUIRE(code == 0);
    REQUIRE(tracker > 0);
    REQUIRE_FALSE(shm_exists(returned));  // its exit waited for the unlink

    const auto thrown = unique_name("noinit-throw");
    auto [code2, tracker2] = run_noinit(thrown, "throw");
    REQUIRE(code2 == -SIGABRT);
    REQUIRE(tracker2 > 0);
    // The abort left the tracker to notice on its own; it may be gone
    // already, else wait for it.
    try {
        ExitWatch watch(tracker2);
        REQUIRE(watch.wait(30s));
    } catch (const std::runtime_error&) {
        // pidfd_open failed: it has exited
    }
    REQUIRE_FALSE(shm_exists(thrown));
}

TEST_CASE("the names stay while exit joins the children that still attach them", "[tracker][noinit]") {
    const auto name = unique_name("exit-join");
    auto [code, text] = run_noinit_text(name, "join");
    REQUIRE(code == 0);
    REQUIRE(text.find("attached") != std::string::npos);
    REQUIRE_FALSE(shm_exists(name));
}
