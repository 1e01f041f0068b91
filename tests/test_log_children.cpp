// Logging from plain Processes (not pool workers): a child started by fork,
// spawn or forkserver, and its own child, log through the parent's writer,
// in order per process, under their process names; a child killed while it
// logs (at the ring's publish step, by fault injection, and by a plain
// kill -9 at any moment) costs at most its record in flight; a fork while
// another thread holds the log's mutex leaves the child a free one; and a
// program that never configured logging lets its child log to its own
// stderr. The sink here is the only destination (no log_to_stderr in this
// process), so the many records stay off the test output.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <mproc/detail/fault.hpp>
#include <mproc/log.hpp>
#include <mproc/process.hpp>

#include "support.hpp"

namespace {

using namespace std::chrono_literals;
constexpr mproc::Duration kLong{60.0};

// ---- the parent's capture sink ----------------------------------------------

std::mutex g_mu;
std::condition_variable g_cv;
std::vector<mproc::LogRecord> g_records;

void capture() {
    static bool once = [] {
        mproc::set_fork_warning(false);  // the writer thread runs here: the forks are meant
        mproc::get_logger().set_level(mproc::LogLevel::info);
        mproc::get_logger().add_sink([](const mproc::LogRecord& r) {
            std::lock_guard<std::mutex> g(g_mu);
            g_records.push_back(r);
            g_cv.notify_all();
        });
        return true;
    }();
    (void)once;
    std::lock_guard<std::mutex> g(g_mu);
    g_records.clear();
}

std::vector<mproc::LogRecord> records() {
    mproc::get_logger().flush();  // every record already in the ring is handled
    std::lock_guard<std::mutex> g(g_mu);
    return g_records;
}

// The messages from process `pid`, in the order the writer got them.
std::vector<std::string> messages_of(const std::vector<mproc::LogRecord>& rs, int pid, std::string* name = nullptr) {
    std::vector<std::string> out;
    for (auto& r : rs) {
        if (r.pid != pid) continue;
        out.push_back(r.message);
        if (name) *name = r.process;
    }
    return out;
}

std::vector<std::string> numbered(const std::string& tag, int n) {
    std::vector<std::string> out;
    for (int i = 0; i < n; ++i) out.push_back(tag + " " + std::to_string(i));
    return out;
}

// ---- targets ------------------------------------------------------------------

void log_numbered(std::string tag, int n) {
    for (int i = 0; i < n; ++i) mproc::get_logger().info(tag + " " + std::to_string(i));
    mproc::get_logger().debug("below the level: dropped in the child");
}

// Logs, starts its own child (same start method) that logs, joins it.
void log_and_start_grandchild(int method) {
    mproc::get_logger().info("child before");
    mproc::Process g(log_numbered, std::string("grandchild"), 5);
    g.start_method(static_cast<mproc::StartMethod>(method));
    g.start();
    if (!g.join(kLong) || g.exitcode() != 0) std::exit(3);
    mproc::get_logger().info("child after " + std::to_string(*g.pid()));
}

// Logs "tick i" until killed; with a fault spec, the spec's hit kills it.
void log_until_killed(std::string fault) {
    if (!fault.empty()) mproc::detail::arm_fault(fault);
    for (long i = 0;; ++i) mproc::get_logger().info("tick " + std::to_string(i));
}

mproc::StartMethod all_methods() {
    return GENERATE(mproc::StartMethod::fork, mproc::StartMethod::spawn, mproc::StartMethod::forkserver);
}

}  // namespace

TEST_CASE("a plain Process logs through the parent's writer, in order, under its name", "[log][process]") {
    capture();
    const mproc::StartMethod method = all_methods();
    mproc::Process a(log_numbered, std::string("a"), 20);
    mproc::Process b(log_numbered, std::string("b"), 20);
    b.name("named-b");
    for (auto* p : {&a, &b}) {
        p->start_method(method);
        p->start();
    }
    mproc::get_logger().info("parent between");
    for (auto* p : {&a, &b}) {
        REQUIRE(p->join(kLong));
        REQUIRE(p->exitcode() == 0);
    }
    auto rs = records();
    std::string name_a, name_b;
    CHECK(messages_of(rs, *a.pid(), &name_a) == numbered("a", 20));
    CHECK(messages_of(rs, *b.pid(), &name_b) == numbered("b", 20));
    CHECK(name_a == a.name());
    CHECK(name_b == "named-b");
    CHECK(messages_of(rs, mproc::current_process().pid()) == std::vector<std::string>{"parent between"});
    for (auto& r : rs) CHECK(r.level == mproc::LogLevel::info);
}

TEST_CASE("a child's child logs through the first parent's writer too", "[log][process]") {
    capture();
    const mproc::StartMethod method = all_methods();
    mproc::Process p(log_and_start_grandchild, static_cast<int>(method));
    p.start_method(method);
    p.start();
    REQUIRE(p.join(kLong));
    REQUIRE(p.exitcode() == 0);
    auto rs = records();
    auto child = messages_of(rs, *p.pid());
    REQUIRE(child.size() == 2);
    CHECK(child[0] == "child before");
    REQUIRE(child[1].rfind("child after ", 0) == 0);
    const int grandchild = std::stoi(child[1].substr(12));
    std::string name;
    CHECK(messages_of(rs, grandchild, &name) == numbered("grandchild", 5));
    CHECK(name == p.name() + ":1");  // Process-N:1, as Python names it
}

TEST_CASE("a child killed while it logs costs at most its record in flight", "[log][process][crash]") {
    capture();
    const mproc::StartMethod method = GENERATE(mproc::StartMethod::fork, mproc::StartMethod::spawn);
    // Killed at a chosen instruction of its 30th put (record written, not
    // yet committed; committed, waiter not yet woken; the ring's lock just
    // taken), or by a plain kill -9 at whatever it is doing.
    const std::string fault = GENERATE(as<std::string>{}, "ring.put_publish:30", "ring.put_published:30",
                                       "lock.acquired:30", "");
    CAPTURE(method, fault);
    mproc::Process p(log_until_killed, fault);
    p.start_method(method);
    p.start();
    const int pid = *p.pid();
    if (fault.empty()) {
        // Wait until it is logging, then kill it mid-stream.
        std::unique_lock<std::mutex> l(g_mu);
        const bool logging = g_cv.wait_for(l, 60s, [&] {
            std::size_t n = 0;
            for (auto& r : g_records) n += r.pid == pid;
            return n >= 200;
        });
        l.unlock();
        REQUIRE(logging);
        p.kill();
    }
    REQUIRE(p.join(kLong));
    CHECK(p.exitcode() == -9);
    // Later records, from the parent and from a new child, still arrive.
    mproc::get_logger().info("parent after the kill");
    mproc::Process next(log_numbered, std::string("next"), 10);
    next.start_method(method);
    next.start();
    REQUIRE(next.join(kLong));
    REQUIRE(next.exitcode() == 0);
    auto rs = records();
    CHECK(messages_of(rs, *next.pid()) == numbered("next", 10));
    auto parent = messages_of(rs, mproc::current_process().pid());
    CHECK(parent == std::vector<std::string>{"parent after the kill"});
    // The dead child's records: whole, in order, none missing before the last.
    auto ticks = messages_of(rs, pid);
    REQUIRE(!ticks.empty());
    CHECK(ticks == numbered("tick", static_cast<int>(ticks.size())));
    if (!fault.empty()) {
        // Puts 1..29 were committed; the 30th may have been (its bytes were
        // written whole before the kill) or not.
        CHECK(ticks.size() >= 29);
        CHECK(ticks.size() <= 30);
    }
}

// ---- a fork while another thread holds the log's mutex ---------------------------

namespace {

struct Gate {
    std::mutex m;
    std::condition_variable cv;
    bool armed = false, inside = false, release = false, starting = false;
} g_gate;

// A sink whose copy blocks once armed: the writer copies the sinks under
// the log's mutex, so while it blocks here that mutex is held.
struct BlockingCopySink {
    BlockingCopySink() = default;
    BlockingCopySink(const BlockingCopySink&) {
        std::unique_lock<std::mutex> l(g_gate.m);
        if (!g_gate.armed) return;
        g_gate.armed = false;
        g_gate.inside = true;
        g_gate.cv.notify_all();
        g_gate.cv.wait(l, [] { return g_gate.release; });
    }
    BlockingCopySink& operator=(const BlockingCopySink&) = delete;
    void operator()(const mproc::LogRecord&) const {}
};

// In a forked child: configures logging (which takes the log's mutex) and logs.
void configure_and_log() {
    mproc::log_to_stderr();
    mproc::get_logger().add_sink([](const mproc::LogRecord&) {});
    mproc::get_logger().info("forked child configured its log");
}

}  // namespace

TEST_CASE("a fork while the writer holds the log's mutex gives the child a free one", "[log][process][fork]") {
    capture();
    static bool added = [] {
        mproc::get_logger().add_sink(BlockingCopySink{});
        return true;
    }();
    (void)added;
    {
        std::lock_guard<std::mutex> g(g_gate.m);
        g_gate.inside = g_gate.release = g_gate.starting = false;
        g_gate.armed = true;
    }
    mproc::get_logger().info("makes the writer copy the sinks");
    {
        std::unique_lock<std::mutex> l(g_gate.m);
        REQUIRE(g_gate.cv.wait_for(l, 60s, [] { return g_gate.inside; }));
    }
    // The writer now holds the mutex. The fork below must either wait for
    // it (the fix: the mutex is taken around forks) or give the child a
    // copy held by a thread that does not exist there (its log_to_stderr
    // then never returns). The releaser lets the writer go once start()
    // has returned — at once where the fork did not wait — or, where the
    // fork waits for the writer, after a few seconds.
    std::thread releaser([] {
        std::unique_lock<std::mutex> l(g_gate.m);
        g_gate.cv.wait(l, [] { return g_gate.starting; });
        g_gate.cv.wait_for(l, 3s, [] { return !g_gate.starting; });
        g_gate.release = true;
        g_gate.cv.notify_all();
    });
    mproc::Process p(configure_and_log);
    p.start_method(mproc::StartMethod::fork);
    {
        std::lock_guard<std::mutex> g(g_gate.m);
        g_gate.starting = true;
        g_gate.cv.notify_all();
    }
    p.start();
    {
        std::lock_guard<std::mutex> g(g_gate.m);
        g_gate.starting = false;
        g_gate.cv.notify_all();
    }
    releaser.join();
    const bool ended = p.join(30s);
    if (!ended) p.kill(), p.join();
    REQUIRE(ended);
    CHECK(p.exitcode() == 0);
    auto rs = records();
    CHECK(messages_of(rs, *p.pid()) == std::vector<std::string>{"forked child configured its log"});
}

// ---- a program that never configured logging --------------------------------------

namespace {

void configure_own_and_log() {
    mproc::log_to_stderr(mproc::LogLevel::info);
    mproc::get_logger().info("own stderr from " + mproc::current_process().name());
}

}  // namespace

// Run in a fresh process by the next test (this process's log may already
// be configured): its children, started while nothing is configured,
// configure their own log and write to their own stderr.
TEST_CASE("log children of an unconfigured program (run by the next test)", "[.log_unconfigured]") {
    mproc::get_logger().info("dropped: nothing configured in this process");
    for (auto method : {mproc::StartMethod::fork, mproc::StartMethod::spawn, mproc::StartMethod::forkserver}) {
        mproc::Process p(configure_own_and_log);
        p.start_method(method);
        p.start();
        REQUIRE(p.join(kLong));
        REQUIRE(p.exitcode() == 0);
    }
    mproc::get_logger().info("dropped too: a child's configuration stays in the child");
}

TEST_CASE("a child started while no log is configured logs to its own stderr", "[log][process]") {
    char exe[] = "/proc/self/exe";
    char filter[] = "[.log_unconfigured]";
    char* argv[] = {exe, filter, nullptr};
    auto [code, text] = mproc_test::run_capturing(argv, /*with_stderr=*/true);
    INFO(text);
    REQUIRE(code == 0);
    for (const char* name : {"Process-1", "Process-2", "Process-3"})
        CHECK(text.find(std::string("[INFO/") + name + "] own stderr from " + name + "\n") != std::string::npos);
    CHECK(text.find("dropped") == std::string::npos);
}
