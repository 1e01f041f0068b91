// mproc::Process with each start method (fork, spawn, forkserver): targets
// and arguments, handles shared with the child, exit codes, join with a
// timeout, daemons dying with a kill -9'd parent, and nothing left behind.
//
// Children report failure through their exit code (a check that fails
// throws, which exits 1). Parent and child synchronize on Events, never on
// sleeps. This binary's main calls mproc::init, so spawn and forkserver
// children are this same binary re-run.
#include <catch2/catch.hpp>

#include <mproc/process.hpp>
#include <mproc/shared_memory.hpp>
#include <mproc/sync.hpp>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "process_support.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using mproc::Duration;
using mproc::StartMethod;
using mproc_test::gone;
using mproc_test::method_name;

namespace {

constexpr Duration kLong = 60s;  // "surely happens": never reached in a passing run

void check(bool ok, const std::string& what) {
    if (!ok) throw std::runtime_error(what);
}

// A user type with a Boost.Serialization member.
struct Point {
    int x = 0;
    std::string label;
    template <class Archive>
    void serialize(Archive& ar, unsigned) {
        ar & x;
        ar & label;
    }
    bool operator==(const Point&) const = default;
};

// ---- targets (functions, so that spawn and forkserver can send them) ---------

void check_values(int i, double d, std::string s, std::vector<int> v, std::map<std::string, int> m,
                  Point p, mproc::Value<long> out) {
    check(i == 42, "int");
    check(d == 2.5, "double");
    check(s == "hello", "string");
    check(v == std::vector<int>{1, 2, 3}, "vector");
    check(m == std::map<std::string, int>{{"a", 1}, {"b", 2}}, "map");
    check(p == Point{7, "seven"}, "struct");
    out.store(i + static_cast<long>(d * 2) + static_cast<long>(s.size()) + v[2] + m["b"] + p.x);
}
constexpr long kExpectedSum = 42 + 5 + 5 + 3 + 2 + 7;

// Holds the lock until the parent says so; adds to the value under it.
void lock_holder(mproc::Lock lock, mproc::Value<long> v, mproc::Event locked, mproc::Event release) {
    lock.acquire();
    v.store(v.load() + 100);
    locked.set();
    check(release.wait(kLong), "never released");
    lock.release();
}

// A forked child inherits the test runner's handlers for fatal signals
// (Catch2 reports them as test failures): put the defaults back where a
// child is meant to die of a signal.
void default_signal(int sig) { ::signal(sig, SIG_DFL); }

// Says it runs, then waits for an Event that is never set.
void wait_forever(mproc::Event never, mproc::Event started) {
    default_signal(SIGTERM);
    started.set();
    never.wait();
}
void return_normally() {}
void throw_runtime_error() { throw std::runtime_error("boom"); }
void throw_int() { throw 7; }
void call_exit(int code) { std::exit(code); }
void call_abort() {
    default_signal(SIGABRT);
    std::abort();
}

void report_identity(std::string expected_name, int expected_parent, mproc::Value<int> ok) {
    check(mproc::current_process().name() == expected_name, "name " + mproc::current_process().name());
    check(mproc::parent_process() == expected_parent, "parent_process");
    check(mproc::current_process().pid() == ::getpid(), "pid");
    check(mproc::active_children().empty(), "inherited children");
    ok.store(1);
}

void sum_into(std::vector<std::int64_t> big, std::vector<mproc::Value<long>> outs) {
    std::int64_t sum = 0;
    for (auto x : big) sum += x;
    for (std::size_t i = 0; i < outs.size(); ++i) outs[i].store(static_cast<long>(sum) + static_cast<long>(i));
}

void check_cwd(std::string expected) {
    check(std::filesystem::current_path() == expected, "cwd " + std::filesystem::current_path().string());
}

void start_grandchild(int method, mproc::Value<int> ok) {
    mproc::Process p(report_identity, mproc::current_process().name() + ":1",
                     mproc::current_process().pid(), ok);
    p.start_method(static_cast<StartMethod>(method));
    check(p.name() == mproc::current_process().name() + ":1", "grandchild name " + p.name());
    p.start();
    check(p.join(kLong), "grandchild join");
    check(p.exitcode() == 0, "grandchild exit code");
}

mproc::Process make(StartMethod m, mproc::Process p) {
    p.start_method(m);
    return p;
}

// Runs start + join with stderr sent to a memfd; returns what was written.
template <class Fn>
std::string capture_stderr(Fn fn) {
    std::fflush(stderr);
    int mem = ::memfd_create("stderr", MFD_CLOEXEC);
    int saved = ::dup(2);
    ::dup2(mem, 2);
    try {
        fn();
    } catch (...) {
        ::dup2(saved, 2);
        ::close(saved);
        ::close(mem);
        throw;
    }
    std::fflush(stderr);
    ::dup2(saved, 2);
    ::close(saved);
    std::string out;
    char buf[4096];
    ssize_t n;
    ::lseek(mem, 0, SEEK_SET);
    while ((n = ::read(mem, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
    ::close(mem);
    return out;
}

std::size_t open_fds() {
    std::size_t n = 0;
    for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
    return n;
}

}  // namespace

// ---- basics that need no child ------------------------------------------------

TEST_CASE("cpu_count, start method default, names", "[process]") {
    REQUIRE(mproc::cpu_count() >= 1);
    REQUIRE(mproc::cpu_count() <= static_cast<int>(std::thread::hardware_concurrency()));
    REQUIRE(mproc::get_start_method() == StartMethod::fork);
    REQUIRE(mproc::current_process().name() == "MainProcess");
    REQUIRE_FALSE(mproc::parent_process());
    REQUIRE(mproc::current_process().authkey().size() == 32);

    mproc::Process a(return_normally), b(return_normally);
    REQUIRE(a.name().rfind("Process-", 0) == 0);
    REQUIRE(std::stoi(b.name().substr(8)) == std::stoi(a.name().substr(8)) + 1);
    a.name("worker-1");
    REQUIRE(a.name() == "worker-1");
    REQUIRE_FALSE(a.pid());
    REQUIRE_FALSE(a.exitcode());
    REQUIRE_FALSE(a.is_alive());
    REQUIRE_THROWS_AS(a.join(), mproc::Error);
    REQUIRE_THROWS_AS(a.terminate(), mproc::Error);
    REQUIRE(a.start_method() == StartMethod::fork);
    a.start_method(StartMethod::spawn);
    REQUIRE(a.start_method() == StartMethod::spawn);
    a.close();
    REQUIRE_THROWS_AS(a.start(), mproc::ValueError);
    REQUIRE_THROWS_AS(a.pid(), mproc::ValueError);
    mproc::Process moved_from;
    mproc::Process taken = std::move(moved_from);
    REQUIRE_THROWS_AS(moved_from.start(), mproc::ValueError);
}

PER_METHOD("a Process without a target runs nothing and exits 0, as Python's Process()",
           "[process][target]", no_target) {
    mproc::Process p;
    p.start_method(method);
    REQUIRE(p.name().rfind("Process-", 0) == 0);
    p.start();
    REQUIRE(p.join(kLong));
    REQUIRE(p.exitcode() == 0);
    REQUIRE_FALSE(p.exception());
}

// ---- targets and arguments ------------------------------------------------------

PER_METHOD("function target with int, double, string, vector, map, struct and Value arguments",
           "[process][args]", function_target_args) {
    mproc::Value<long> out(0);
    auto p = make(method, mproc::Process(check_values, 42, 2.5, std::string("hello"), std::vector<int>{1, 2, 3},
                                         std::map<std::string, int>{{"a", 1}, {"b", 2}}, Point{7, "seven"}, out));
    p.start();
    REQUIRE(p.pid());
    REQUIRE(*p.pid() != ::getpid());
    REQUIRE(p.join(kLong));
    REQUIRE(p.exitcode() == 0);
    REQUIRE(out.load() == kExpectedSum);
}

PER_METHOD("capture-less lambda target with arguments", "[process][args]", lambda_target_args) {
    mproc::Value<long> out(0);
    auto p = make(method, mproc::Process(
                              [](std::vector<std::string> words, Point p, mproc::Value<long> v) {
                                  long n = 0;
                                  for (auto& w : words) n += static_cast<long>(w.size());
                                  v.store(n * 1000 + p.x);
                              },
                              std::vector<std::string>{"ab", "cde"}, Point{9, "nine"}, out));
    p.start();
    REQUIRE(p.join(kLong));
    REQUIRE(p.exitcode() == 0);
    REQUIRE(out.load() == 5009);
}

PER_METHOD("a Lock and a Value the child uses, observed by the parent", "[process][handles]",
           lock_and_value) {
    mproc::Lock lock;
    mproc::Value<long> v(1);
    mproc::Event locked, release;
    auto p = make(method, mproc::Process(lock_holder, lock, v, locked, release));
    p.start();
    REQUIRE(locked.wait(kLong));
    REQUIRE_FALSE(lock.acquire(Duration(0)));  // the child holds it
    REQUIRE(v.load() == 101);
    release.set();
    REQUIRE(lock.acquire(kLong));
    lock.release();
    REQUIRE(p.join(kLong));
    REQUIRE(p.exitcode() == 0);
}

PER_METHOD("current_process, parent_process and names in the child and grandchild",
           "[process][identity]", identity) {
    mproc::Value<int> ok(0), grand_ok(0);
    auto p = make(method, mproc::Process(report_identity, std::string("child-x"), static_cast<int>(::getpid()), ok));
    p.name("child-x");
    p.start();
    REQUIRE(p.join(kLong));
    REQUIRE(p.exitcode() == 0);
    REQUIRE(ok.load() == 1);

    auto q = make(method, mproc::Process(start_grandchild, static_cast<int>(method), grand_ok));
    q.start();
    REQUIRE(q.join(kLong));
    REQUIRE(q.exitcode() == 0);
    REQUIRE(grand_ok.load() == 1);
}

PER_METHOD("the child starts in the parent's current directory", "[process][cwd]", cwd) {
    // Start the fork server (if any) first, from another directory.
    auto warm = make(method, mproc::Process(return_normally));
    warm.start();
    REQUIRE(warm.join(kLong));
    const auto before = std::filesystem::current_path();
    const auto dir = std::filesystem::temp_directory_path();
    std::filesystem::current_path(dir);
    auto p = make(method, mproc::Process(check_cwd, std::filesystem::current_path().string()));
    p.start();
    std::filesystem::current_path(before);
    REQUIRE(p.join(kLong));
    REQUIRE(p.exitcode() == 0);
}

PER_METHOD("8 MB of arguments and 40 handles in one vector", "[process][args]", large_arguments) {
    std::vector<std::int64_t> big(1 << 20);
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::int64_t>(i);
    const long sum = static_cast<long>(big.size() * (big.size() - 1) / 2);
    std::vector<mproc::Value<long>> outs;
    for (int i = 0; i < 40; ++i) outs.emplace_back(0);
    auto p = make(method, mproc::Process(sum_into, big, outs));
    p.start();
    REQUIRE(p.join(kLong));
    REQUIRE(p.exitcode() == 0);
    for (std::size_t i = 0; i < outs.size(); ++i) REQUIRE(outs[i].load() == sum + static_cast<long>(i));
}

TEST_CASE("fork: closures and non-serializable arguments work", "[process][fork]") {
    mproc::Value<int> v(0);
    auto owned = std::make_unique<int>(5);
    int captured = 37;
    mproc::Process p([&, captured](std::unique_ptr<int> u) { v.store(captured + *u); }, std::move(owned));
    p.start();
    REQUIRE(p.join(kLong));
    REQUIRE(p.exitcode() == 0);
    REQUIRE(v.load() == 42);
}

TEST_CASE("spawn and forkserver refuse closures with a clear error", "[process][spawn]") {
    int captured = 1;
    for (StartMethod m : {StartMethod::spawn, StartMethod::forkserver}) {
        mproc::Process p([captured] { (void)captured; });
        p.start_method(m);
        try {
            p.start();
            FAIL("started a closure with " << method_name(m));
        } catch (const mproc::Error& e) {
            INFO(e.what());
            REQUIRE(std::string(e.what()).find("capture-less lambda") != std::string::npos);
        }
        REQUIRE_FALSE(p.pid());  // nothing was started
    }
}

// ---- exit codes ---------------------------------------------------------------

PER_METHOD("exit codes: return 0, exception 1, std::exit(n) n, abort -SIGABRT", "[process][exitcode]",
           exit_codes) {
    auto run = [&](mproc::Process p) {
        p.start_method(method);
        p.start();
        REQUIRE(p.join(kLong));
        return p.exitcode();
    };
    REQUIRE(run(mproc::Process(return_normally)) == 0);
    REQUIRE(run(mproc::Process(call_exit, 7)) == 7);
    REQUIRE(run(mproc::Process(call_abort)) == -SIGABRT);
    std::string err = capture_stderr([&] {
        mproc::Process p(throw_runtime_error);
        p.name("boom-child");
        REQUIRE(run(p) == 1);
        REQUIRE(run(mproc::Process(throw_int).name("int-child")) == 1);
    });
    INFO(err);
    REQUIRE(err.find("Process boom-child: std::runtime_error: boom\n") != std::string::npos);
    REQUIRE(err.find("Process int-child: int") != std::string::npos);
}

PER_METHOD("join timeout, terminate and kill", "[process][join]", join_timeout) {
    mproc::Event never, started;
    auto p = make(method, mproc::Process(wait_forever, never, started));
    p.start();
    REQUIRE(started.wait(kLong));
    REQUIRE_FALSE(p.join(Duration(0)));
    REQUIRE_FALSE(p.join(50ms));
    REQUIRE(p.is_alive());
    REQUIRE_FALSE(p.exitcode());
    REQUIRE(mproc::active_children().size() == 1);
    REQUIRE(mproc::active_children()[0] == p);
    REQUIRE_THROWS_AS(p.close(), mproc::ValueError);
    p.terminate();
    REQUIRE(p.join(kLong));
    REQUIRE(p.exitcode() == -SIGTERM);
    REQUIRE_FALSE(p.is_alive());
    REQUIRE(mproc::active_children().empty());
    p.terminate();  // already exited: nothing happens

    auto q = make(method, mproc::Process(wait_forever, never, started));
    q.start();
    q.kill();
    REQUIRE(q.join(kLong));
    REQUIRE(q.exitcode() == -SIGKILL);
    int pid = *q.pid();
    q.close();
    REQUIRE(gone(pid));
    REQUIRE_THROWS_AS(q.exitcode(), mproc::ValueError);
}

PER_METHOD("join from several threads at once", "[process][join]", join_threads) {
    mproc::Event go, started;
    auto p = make(method, mproc::Process(wait_forever, go, started));
    p.start();
    std::atomic<int> joined{0};
    std::vector<std::thread> ts;
    for (int i = 0; i < 3; ++i)
        ts.emplace_back([&] {
            if (p.join(kLong) && p.exitcode() == 0) ++joined;
        });
    go.set();
    for (auto& t : ts) t.join();
    REQUIRE(joined == 3);
}

PER_METHOD("a Process going out of scope leaves its child running and in active_children()",
           "[process][lifetime]", dropped_keeps_running) {
    mproc::Event go, started;
    int pid;
    {
        auto p = make(method, mproc::Process(wait_forever, go, started));
        p.start();
        pid = *p.pid();
    }  // no join here (the child waits for `go`: a joining destructor would hang)
    REQUIRE(started.wait(kLong));
    REQUIRE_FALSE(gone(pid));
    auto kids = mproc::active_children();
    REQUIRE(kids.size() == 1);
    REQUIRE(kids[0].pid() == pid);
    go.set();
    REQUIRE(kids[0].join(kLong));
    REQUIRE(kids[0].exitcode() == 0);
    REQUIRE(gone(pid));  // exited and reaped
    REQUIRE(mproc::active_children().empty());
}

// ---- daemons ------------------------------------------------------------------

PER_METHOD("a daemon child dies when its parent is killed with SIGKILL", "[process][daemon]",
           daemon_dies_with_parent) {
    // A harness process adopts orphans (PR_SET_CHILD_SUBREAPER), so the
    // daemon is reparented to it and can be waited for and reaped there.
    pid_t harness = mproc_test::fork_child([&] {
        check(::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0, "subreaper");
        mproc::Value<int> daemon_pid(0);
        mproc::Event ready, never;
        pid_t middle = mproc_test::fork_child([&] {
            mproc::Event started;
            mproc::Process d(wait_forever, never, started);
            d.daemon(true).start_method(method);
            d.start();
            daemon_pid.store(*d.pid());
            check(started.wait(kLong), "the daemon never ran");
            ready.set();
            never.wait();
        });
        check(ready.wait(kLong), "the middle process never started its daemon");
        int dpid = daemon_pid.load();
        ::kill(middle, SIGKILL);
        check(mproc_test::wait_child(middle) == -SIGKILL, "middle process");
        // The daemon now belongs to this harness; it must go away by itself.
        int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, dpid, 0));
        check(pidfd >= 0, "pidfd_open of the daemon");
        pollfd pf{pidfd, POLLIN, 0};
        check(::poll(&pf, 1, 60000) == 1, "the daemon outlived its parent");
        ::close(pidfd);
        int status = 0;
        check(::waitpid(dpid, &status, 0) == dpid, "reap the daemon");
        check(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the daemon did not die of SIGKILL");
        while (::waitpid(-1, nullptr, 0) > 0) {  // the middle's fork server, if any
        }
    });
    REQUIRE(mproc_test::wait_child(harness) == 0);
}

PER_METHOD("daemon children are terminated when the parent exits normally", "[process][daemon]",
           daemon_terminated_at_exit) {
    mproc::Value<int> daemon_pid(0);
    mproc::Event ready, never;
    pid_t middle = mproc_test::fork_child([&] {
        mproc::Event started;
        mproc::Process d(wait_forever, never, started);
        d.daemon(true).start_method(method);
        d.start();
        daemon_pid.store(*d.pid());
        check(started.wait(kLong), "the daemon never ran");
        ready.set();
        std::exit(0);  // the exit handler terminates and joins the daemon
    });
    REQUIRE(ready.wait(kLong));
    REQUIRE(mproc_test::wait_child(middle) == 0);
    REQUIRE(gone(daemon_pid.load()));
}

// ---- start without init ---------------------------------------------------------

TEST_CASE("spawn and forkserver without mproc::init: a clear error", "[process][init]") {
    char* argv[] = {const_cast<char*>(MPROC_NOINIT_HELPER), nullptr};
    auto [code, text] = mproc_test::run_capturing(argv);
    INFO(text);
    REQUIRE(code == 0);
    REQUIRE(text.find("spawn: ") != std::string::npos);
    REQUIRE(text.find("forkserver: ") != std::string::npos);
    REQUIRE(text.find("mproc::init(argc, argv)") != std::string::npos);
}

// ---- threads ------------------------------------------------------------------

TEST_CASE("forkserver from a parent with 4 busy threads and fork warns once", "[process][forkserver]") {
    std::atomic<bool> stop{false};
    std::mutex shared;
    std::vector<std::thread> busy;
    for (int i = 0; i < 4; ++i)
        busy.emplace_back([&] {
            while (!stop.load(std::memory_order_relaxed)) {
                std::lock_guard<std::mutex> g(shared);  // held at random moments
                std::vector<int> churn(64);             // malloc too
                std::this_thread::yield();
            }
        });
    mproc::Value<long> out(0);
    std::string err = capture_stderr([&] {
        for (int i = 0; i < 3; ++i) {
            mproc::Process p(check_values, 42, 2.5, std::string("hello"), std::vector<int>{1, 2, 3},
                             std::map<std::string, int>{{"a", 1}, {"b", 2}}, Point{7, "seven"}, out);
            p.start_method(StartMethod::forkserver);
            p.start();
            REQUIRE(p.join(kLong));
            REQUIRE(p.exitcode() == 0);
        }
    });
    INFO(err);
    REQUIRE(err.find("warning") == std::string::npos);  // forkserver: nothing to warn about
    REQUIRE(out.load() == kExpectedSum);

    std::string fork_err = capture_stderr([&] {
        for (int i = 0; i < 2; ++i) {
            mproc::Process p(return_normally);
            p.start();
            REQUIRE(p.join(kLong));
        }
    });
    stop = true;
    for (auto& t : busy) t.join();
    INFO(fork_err);
    auto first = fork_err.find("threads and forks a child");
    REQUIRE(first != std::string::npos);
    REQUIRE(fork_err.find("threads and forks a child", first + 1) == std::string::npos);  // once
    REQUIRE(fork_err.find("forkserver") != std::string::npos);
}

// ---- nothing left behind ----------------------------------------------------------

TEST_CASE("no stray processes or fds after start and join with every method", "[process][leak]") {
    // Warm up: the fork server's connection is meant to stay.
    {
        mproc::Process p(return_normally);
        p.start_method(StartMethod::forkserver);
        p.start();
        p.join();
    }
    const std::size_t before = open_fds();
    std::vector<int> pids;
    for (StartMethod m : {StartMethod::fork, StartMethod::spawn, StartMethod::forkserver}) {
        for (int i = 0; i < 3; ++i) {
            mproc::Value<long> out(0);
            mproc::Lock lock;
            mproc::Event locked, release;
            release.set();
            mproc::Process p(lock_holder, lock, out, locked, release);
            p.start_method(m);
            p.start();
            REQUIRE(p.join(kLong));
            REQUIRE(p.exitcode() == 0);
            pids.push_back(*p.pid());
        }
        mproc::Process t(wait_forever, mproc::Event(), mproc::Event());
        t.start_method(m);
        t.start();
        t.kill();
        t.join();
        pids.push_back(*t.pid());
    }
    REQUIRE(open_fds() == before);
    for (int pid : pids) REQUIRE(gone(pid));
    REQUIRE(mproc::active_children().empty());
}
