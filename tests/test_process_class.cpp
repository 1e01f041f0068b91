// Python's class style and the rest of issue 10 §4's Process items:
// subclasses overriding run() (fork; spawn and forkserver when registered
// with MPROC_REGISTER_PROCESS), Process::interrupt(), and get_context(),
// whose Process, Queue, Pool, executor and Manager are bound to one start
// method.
#include <catch2/catch.hpp>

#include <mproc/context.hpp>
#include <mproc/process.hpp>
#include <mproc/shared_memory.hpp>
#include <mproc/sync.hpp>

#include <csignal>
#include <string>

#include "process_support.hpp"

using namespace std::chrono_literals;
using mproc::Duration;
using mproc::StartMethod;

namespace {
constexpr Duration kLong = 60s;

long fib(long n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }
}  // namespace

// A subclass in Python's style: its state travels to a spawned child
// through serialize() (a handle among it), run() is what the child does.
struct FibWorker : mproc::Process {
    mproc::Value<long> out{0};
    mproc::Value<int> named_ok{0};
    long n = 0;

    FibWorker() = default;
    FibWorker(mproc::Value<long> o, mproc::Value<int> ok, long k) : out(o), named_ok(ok), n(k) {}

    void run() override {
        out.store(fib(n));
        // In the child the object stands for the child: its name is the child's.
        named_ok.store(name() == mproc::current_process().name() && name() == "fib-worker" ? 1 : 0);
    }
    template <class Archive>
    void serialize(Archive& ar, unsigned) {
        ar & out;
        ar & named_ok;
        ar & n;
    }
};
MPROC_REGISTER_PROCESS(FibWorker);

// Not registered: fork only.
struct LocalWorker : mproc::Process {
    mproc::Value<int> out{0};
    int captured = 0;
    void run() override { out.store(captured + 1); }
};

// A subclass that keeps the base's target and default run().
struct Targeted : mproc::Process {
    explicit Targeted(mproc::Value<int> v) : mproc::Process([](mproc::Value<int> x) { x.store(5); }, v) {}
};

namespace {
void wait_for_interrupt(mproc::Event started, mproc::Event never) {
    std::signal(SIGINT, SIG_DFL);  // a forked child has the test runner's handlers
    started.set();
    never.wait();
}

int g_marker = 0;  // set at run time: a forked worker sees it, a spawned one does not
int marker(int) { return g_marker; }
}  // namespace

PER_METHOD("a Process subclass overriding run(), its state sent by serialize()", "[process][class]",
           subclass_run) {
    mproc::Value<long> out(0);
    mproc::Value<int> ok(0);
    FibWorker w(out, ok, 20);
    w.name("fib-worker").start_method(method);
    w.start();
    REQUIRE(w.join(kLong));
    REQUIRE(w.exitcode() == 0);
    REQUIRE(out.load() == 6765);
    REQUIRE(ok.load() == 1);
}

TEST_CASE("fork: any Process subclass works, registered or not", "[process][class][fork]") {
    LocalWorker w;
    w.captured = 41;
    w.start();  // fork is the default
    REQUIRE(w.join(kLong));
    REQUIRE(w.exitcode() == 0);
    REQUIRE(w.out.load() == 42);

    mproc::Value<int> v(0);
    Targeted t(v);
    t.start();
    REQUIRE(t.join(kLong));
    REQUIRE(v.load() == 5);
}

TEST_CASE("spawn and forkserver refuse an unregistered subclass, saying what to add", "[process][class]") {
    for (StartMethod m : {StartMethod::spawn, StartMethod::forkserver}) {
        LocalWorker w;
        w.start_method(m);
        try {
            w.start();
            FAIL("started an unregistered subclass");
        } catch (const mproc::Error& e) {
            const std::string what = e.what();
            INFO(what);
            REQUIRE(what.find("MPROC_REGISTER_PROCESS(LocalWorker)") != std::string::npos);
            REQUIRE(what.find("serialize()") != std::string::npos);
        }
        REQUIRE_FALSE(w.pid());
    }
}

PER_METHOD("interrupt() sends SIGINT", "[process][signal]", interrupt) {
    mproc::Event started, never;
    mproc::Process p(wait_for_interrupt, started, never);
    p.start_method(method).start();
    REQUIRE(started.wait(kLong));
    p.interrupt();
    REQUIRE(p.join(kLong));
    REQUIRE(p.exitcode() == -SIGINT);
    p.interrupt();  // already exited: nothing happens
}

TEST_CASE("get_context: Process, Pool, executor, Queue and Manager bound to a start method", "[process][context]") {
    g_marker = 42;
    for (StartMethod m : {StartMethod::fork, StartMethod::spawn, StartMethod::forkserver}) {
        const int expected = m == StartMethod::fork ? 42 : 0;
        auto ctx = mproc::get_context(m);
        REQUIRE(ctx.get_start_method() == m);

        auto q = ctx.Queue<int>();
        auto p = ctx.Process([](mproc::Queue<int> out) { out.put(g_marker + 1); }, q);
        REQUIRE(p.start_method() == m);
        p.start();
        REQUIRE(q.get(kLong) == expected + 1);
        REQUIRE(p.join(kLong));

        auto pool = ctx.Pool(2);
        REQUIRE(pool.apply(marker, 0) == expected);
        auto ex = ctx.ProcessPoolExecutor(1);
        REQUIRE(ex.submit(marker, 0).result(kLong) == expected);

        auto mgr = ctx.Manager();
        auto d = mgr.dict<std::string, int>();
        auto writer = ctx.Process([](mproc::DictProxy<std::string, int> dd) { dd.set("k", 7); }, d);
        writer.start();
        REQUIRE(writer.join(kLong));
        REQUIRE(d.at("k") == 7);
    }
    REQUIRE(mproc::get_context().get_start_method() == mproc::get_start_method());
}
