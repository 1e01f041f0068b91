// A Process going out of scope does not join it (API.md): the shapes of real
// Python programs that create Processes in a loop and drop them (the docs'
// Lock and worker-queue examples, the usual Barrier example), reaping of
// dropped children, and what a program's normal exit does with the children
// still running (process_exit_helper: non-daemons are waited for and their
// output appears; daemons are terminated). Each with fork, spawn and
// forkserver.
#include <catch2/catch.hpp>

#include <mproc/process.hpp>
#include <mproc/queue.hpp>
#include <mproc/shared_memory.hpp>
#include <mproc/sync.hpp>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "process_support.hpp"
#include "support.hpp"

extern char** environ;

using namespace std::chrono_literals;
using mproc::Duration;
using mproc::StartMethod;
using mproc_test::gone;
using mproc_test::method_name;

namespace {

constexpr Duration kLong = 60s;  // "surely happens": never reached in a passing run

// Joins every child still running (the test's own cleanup).
void join_all() {
    for (auto& p : mproc::active_children()) REQUIRE(p.join(kLong));
}

// ---- targets ----------------------------------------------------------------------

// Python's docs, "Synchronization between processes": print under a lock.
void locked_print(mproc::Lock lock, mproc::Array<int> log, mproc::Value<int> n, int i) {
    std::lock_guard<mproc::Lock> g(lock);
    log[static_cast<std::size_t>(n.load())] = i;
    n.store(n.load() + 1);
}

// The usual Barrier example: every party waits, then reports.
void barrier_party(mproc::Barrier barrier, mproc::Lock lock, mproc::Array<int> log, mproc::Value<int> n, int i) {
    barrier.wait(kLong);  // BrokenBarrierError (exit 1) unless all parties run at once
    std::lock_guard<mproc::Lock> g(lock);
    log[static_cast<std::size_t>(n.load())] = i;
    n.store(n.load() + 1);
}

// The docs' worker-queue example's worker.
using Task = std::optional<std::tuple<int, int>>;
void multiplier(mproc::Queue<Task> in, mproc::Queue<std::tuple<int, int>> out) {
    for (Task t = in.get(); t; t = in.get()) out.put({std::get<0>(*t), std::get<0>(*t) * std::get<1>(*t)});
}

void exit_at_once() {}

// ---- a helper program with pipes on stdin and stdout --------------------------------

struct Helper {
    pid_t pid = -1;
    int pidfd = -1;
    int in = -1;   // its stdin
    int out = -1;  // its stdout
    std::string text;

    Helper(const std::string& mode, StartMethod m) {
        int to[2], from[2];
        REQUIRE(::pipe2(to, O_CLOEXEC) == 0);
        REQUIRE(::pipe2(from, O_CLOEXEC) == 0);
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, to[0], 0);
        posix_spawn_file_actions_adddup2(&fa, from[1], 1);
        std::string method = method_name(m);
        char* argv[] = {const_cast<char*>(MPROC_EXIT_HELPER), const_cast<char*>(mode.c_str()), method.data(),
                        nullptr};
        REQUIRE(::posix_spawn(&pid, MPROC_EXIT_HELPER, &fa, nullptr, argv, environ) == 0);
        posix_spawn_file_actions_destroy(&fa);
        ::close(to[0]);
        ::close(from[1]);
        in = to[1];
        out = from[0];
        pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
        REQUIRE(pidfd >= 0);
    }
    ~Helper() {
        if (in >= 0) ::close(in);
        ::close(out);
        ::close(pidfd);
        if (pid > 0) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, nullptr, 0);
        }
    }
    // Reads stdout until `line` has arrived (or end of file).
    bool read_until(const std::string& line) {
        char buf[4096];
        while (text.find(line) == std::string::npos) {
            ssize_t n = ::read(out, buf, sizeof buf);
            if (n <= 0) return false;
            text.append(buf, static_cast<std::size_t>(n));
        }
        return true;
    }
    bool exited_within(int ms) {
        pollfd p{pidfd, POLLIN, 0};
        return ::poll(&p, 1, ms) == 1;
    }
    int wait() {
        auto code = mproc_test::wait_child(pid);
        pid = -1;
        read_until("\x01");  // the rest, to end of file
        return code.value_or(-999);
    }
};

}  // namespace

// ---- the shapes of real programs ---------------------------------------------------

PER_METHOD("the docs' Lock example: children started in a loop and dropped run at once",
           "[lifetime][lock]", lock_example) {
    constexpr int kChildren = 6;
    mproc::Lock lock;
    mproc::Array<int> log(kChildren);
    mproc::Value<int> n(0);
    lock.acquire();  // no child can finish before all are started
    for (int i = 0; i < kChildren; ++i)
        mproc::Process(locked_print, lock, log, n, i).start_method(method).start();
    // A joining destructor would have blocked on the first child forever.
    REQUIRE(mproc::active_children().size() == kChildren);
    lock.release();
    for (auto& p : mproc::active_children()) {
        REQUIRE(p.join(kLong));
        REQUIRE(p.exitcode() == 0);
    }
    REQUIRE(n.load() == kChildren);
    std::set<int> seen(log.span().begin(), log.span().end());
    REQUIRE(seen.size() == kChildren);
}

PER_METHOD("the Barrier example: parties started in a loop and dropped all pass the barrier",
           "[lifetime][barrier]", barrier_example) {
    constexpr int kParties = 4;
    mproc::Barrier barrier(kParties);
    mproc::Lock lock;
    mproc::Array<int> log(kParties);
    mproc::Value<int> n(0);
    std::vector<int> pids;
    for (int i = 0; i < kParties; ++i) {
        mproc::Process p(barrier_party, barrier, lock, log, n, i);
        p.start_method(method).start();
        pids.push_back(*p.pid());
    }
    auto kids = mproc::active_children();
    for (auto& p : kids) {
        REQUIRE(p.join(kLong));
        REQUIRE(p.exitcode() == 0);  // 1 if the barrier broke: the parties ran one by one
    }
    REQUIRE(kids.size() <= kParties);
    REQUIRE(n.load() == kParties);
    for (int pid : pids) REQUIRE(gone(pid));
}

PER_METHOD("the docs' worker-queue example: workers started in a loop and dropped", "[lifetime][queue]",
           worker_queue_example) {
    constexpr int kWorkers = 4, kTasks = 40;
    mproc::Queue<Task> tasks;
    mproc::Queue<std::tuple<int, int>> done;
    for (int i = 0; i < kTasks / 2; ++i) tasks.put(Task{{i, 7}});
    for (int i = 0; i < kWorkers; ++i) mproc::Process(multiplier, tasks, done).start_method(method).start();
    std::set<int> got;
    for (int i = 0; i < kTasks / 2; ++i) {
        auto [k, v] = done.get(kLong);
        REQUIRE(v == k * 7);
        got.insert(k);
    }
    for (int i = kTasks / 2; i < kTasks; ++i) tasks.put(Task{{i, 7}});  // more work after the loop
    for (int i = kTasks / 2; i < kTasks; ++i) got.insert(std::get<0>(done.get(kLong)));
    REQUIRE(got.size() == kTasks);
    for (int i = 0; i < kWorkers; ++i) tasks.put(std::nullopt);
    join_all();
    REQUIRE(mproc::active_children().empty());
}

PER_METHOD("children that were dropped and finished are reaped by the next start()", "[lifetime][reap]",
           reap_dropped) {
    // Warm up the fork server, whose connection stays.
    mproc::Process(exit_at_once).start_method(method).start();
    join_all();
    mproc::Event go;
    struct Release {
        mproc::Event ev;
        ~Release() { ev.set(); }  // a failed REQUIRE must not leave `last` waiting
    } release{go};
    const std::size_t fds_before = std::distance(std::filesystem::directory_iterator("/proc/self/fd"),
                                                 std::filesystem::directory_iterator{});
    std::vector<int> pids;
    std::vector<mproc::Process> held;  // only to wait on their sentinels; dropped below
    for (int i = 0; i < 30; ++i) {
        mproc::Process p(exit_at_once);
        p.start_method(method).start();
        pids.push_back(*p.pid());
        held.push_back(p);
    }
    for (auto& p : held) {
        // Readable once it has exited (a forkserver child: once the server
        // has sent its status); nothing reads or reaps it here.
        pollfd pf{p.sentinel(), POLLIN, 0};
        REQUIRE(::poll(&pf, 1, 60000) == 1);
    }
    held.clear();
    // One more start reaps every one of them (no zombies pile up) and
    // closes what they held.
    mproc::Process last([](mproc::Event g) { g.wait(); }, go);
    last.start_method(method).start();
    if (method != StartMethod::forkserver)
        for (int pid : pids) REQUIRE(gone(pid));
    const std::size_t fds_after = std::distance(std::filesystem::directory_iterator("/proc/self/fd"),
                                                std::filesystem::directory_iterator{});
    REQUIRE(fds_after <= fds_before + 3);  // the live child's pidfd, exception memfd, status socket
    REQUIRE(mproc::active_children().size() == 1);
    go.set();
    join_all();
}

// ---- the program's exit -------------------------------------------------------------

PER_METHOD("main returns while a child runs: the exit waits for it and its output appears",
           "[lifetime][exit]", exit_waits_for_child) {
    Helper h("running-child", method);
    REQUIRE(h.read_until("main returns\n"));
    // The parent is past main, in the exit handler, waiting for its child
    // (which waits for a line on stdin): it must not exit now.
    REQUIRE_FALSE(h.exited_within(300));
    const char line[] = "hello from the test\n";
    REQUIRE(::write(h.in, line, sizeof line - 1) == static_cast<ssize_t>(sizeof line - 1));
    ::close(h.in);
    h.in = -1;
    REQUIRE(h.wait() == 0);
    INFO(h.text);
    REQUIRE(h.text.find("child got: hello from the test\n") != std::string::npos);
}

PER_METHOD("main returns with a daemon child running: the exit terminates it", "[lifetime][exit][daemon]",
           exit_terminates_daemon) {
    Helper h("daemon", method);
    REQUIRE(h.wait() == 0);
    INFO(h.text);
    REQUIRE(h.text.find("daemon: SIGTERM\n") != std::string::npos);  // terminated by the exit handler
    REQUIRE(h.text.find("non-daemon done\n") != std::string::npos);  // joined
    auto at = ("\n" + h.text).find("\ndaemon ");
    REQUIRE(at != std::string::npos);
    REQUIRE(gone(std::stoi(h.text.substr(at + 7))));
}

PER_METHOD("the docs' worker-queue example as a program whose main returns", "[lifetime][exit][queue]",
           worker_queue_program) {
    Helper h("worker-queue", method);
    REQUIRE(h.wait() == 0);
    INFO(h.text);
    REQUIRE(h.text.rfind("Unordered results:\n", 0) == 0);
    std::set<std::string> results;
    std::size_t pos = 0;
    while ((pos = h.text.find("\t", pos)) != std::string::npos) {
        auto end = h.text.find('\n', pos);
        std::string line = h.text.substr(pos + 1, end - pos - 1);
        REQUIRE(line.rfind("Process-", 0) == 0);
        results.insert(line.substr(line.find(" says that ")));
        pos = end;
    }
    REQUIRE(results.size() == 30);
    REQUIRE(results.count(" says that mul(19, 7) = 133") == 1);
    REQUIRE(results.count(" says that plus(9, 8) = 17") == 1);
}
