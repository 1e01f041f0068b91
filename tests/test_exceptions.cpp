// Exceptions keep their type across processes (issue 10 §3), and errors
// that say what to do (§5): each kind of exception thrown in a Pool task
// (apply, map), an executor task (submit) and a child Process's target
// (Process::exception()), with fork and spawn, comes back as the same type
// with its message and its origin (process name, pid); unregistered types
// and `throw 42` as RemoteError; a huge message is cut, never a hang. And a
// Queue or Pipe handed to a pool task that cannot reach it says what to do.
#include <catch2/catch.hpp>

#include <mproc/futures.hpp>
#include <mproc/manager.hpp>
#include <mproc/pipe.hpp>
#include <mproc/pool.hpp>
#include <mproc/process.hpp>
#include <mproc/queue.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

using namespace std::chrono_literals;
using mproc::Duration;
using mproc::StartMethod;

// A user type, registered: re-thrown as itself.
struct ZeroDivisionError : std::runtime_error {
    using std::runtime_error::runtime_error;
};
MPROC_REGISTER_EXCEPTION(ZeroDivisionError);

// Registered, but its constructor refuses to run in the test's own process:
// re-creating it there fails, and the task must still fail clearly
// (RemoteError naming it), never hang or crash.
pid_t g_test_pid = 0;
struct Picky : std::runtime_error {
    explicit Picky(const std::string& m) : std::runtime_error(m) {
        if (::getpid() == g_test_pid) throw std::invalid_argument("Picky refuses to be made here");
    }
};
MPROC_REGISTER_EXCEPTION(Picky);

// A user type nobody registered: RemoteError naming it.
struct Unregistered : std::runtime_error {
    using std::runtime_error::runtime_error;
};

namespace {

constexpr Duration kLong = 60s;
const std::size_t kHuge = 3 << 20;  // past the codec's 1 MiB cut

enum Kind : int { user, empty, out_of_range, unregistered, int_value, huge, os_error, key_error, kinds };

const char* kind_name(int k) {
    static const char* names[] = {"registered user type", "mproc::Empty", "std::out_of_range",
                                  "unregistered type", "throw 42", "huge message", "mproc::OSError",
                                  "mproc::KeyError"};
    return names[k];
}

int thrower(int kind) {
    switch (kind) {
        case user: throw ZeroDivisionError("division by zero");
        case empty: throw mproc::Empty();
        case out_of_range: throw std::out_of_range("index 7 out of range");
        case unregistered: throw Unregistered("not known over there");
        case int_value: throw 42;
        case huge: throw std::runtime_error(std::string(kHuge, 'x'));
        case os_error: throw mproc::OSError("open(\"/nope\") failed: No such file or directory", ENOENT);
        case key_error: throw mproc::KeyError("'missing'");
    }
    return kind;
}

// A Process target: the same, with the child's stderr (where it reports
// the exception, 3 MiB of it for `huge`) sent to /dev/null.
void child_throws(int kind) {
    int null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    ::dup2(null, 2);
    thrower(kind);
}

// Rethrows `e` and checks it is what `kind` threw, from a process whose
// name starts with `origin` and whose pid is not ours.
void check_arrived(std::exception_ptr e, int kind, const std::string& origin) {
    INFO(kind_name(kind));
    REQUIRE(e);
    auto where = mproc::remote_origin(e);
    REQUIRE(where);
    INFO("from " << where->process_name << " pid " << where->pid << " type " << where->type_name);
    REQUIRE(where->process_name.rfind(origin, 0) == 0);
    REQUIRE(where->pid != ::getpid());
    REQUIRE(where->pid > 0);
    try {
        std::rethrow_exception(e);
    } catch (const ZeroDivisionError& x) {
        REQUIRE(kind == user);
        REQUIRE(std::string(x.what()) == "division by zero");
        REQUIRE(where->type_name == "ZeroDivisionError");
    } catch (const mproc::Empty& x) {
        REQUIRE(kind == empty);
        REQUIRE(std::string(x.what()) == "queue is empty");
    } catch (const std::out_of_range& x) {
        REQUIRE(kind == out_of_range);
        REQUIRE(std::string(x.what()) == "index 7 out of range");
    } catch (const mproc::OSError& x) {
        REQUIRE(kind == os_error);
        REQUIRE(x.code() == ENOENT);
        REQUIRE(std::string(x.what()).find("open(\"/nope\")") == 0);
    } catch (const mproc::KeyError& x) {
        REQUIRE(kind == key_error);
        REQUIRE(std::string(x.what()) == "'missing'");
    } catch (const mproc::RemoteError& x) {
        if (kind == unregistered) {
            REQUIRE(x.type_name() == "Unregistered");
            REQUIRE(std::string(x.what()) == "not known over there");
        } else {
            REQUIRE(kind == int_value);
            REQUIRE(x.type_name() == "int");
            REQUIRE(std::string(x.what()).find("not a std::exception") != std::string::npos);
        }
    } catch (const std::runtime_error& x) {
        REQUIRE(kind == huge);
        REQUIRE(typeid(x) != typeid(mproc::RemoteError));
        const std::string what = x.what();
        REQUIRE(what.size() < kHuge);
        REQUIRE(what.size() > (std::size_t{1} << 20));
        REQUIRE(what.find_first_not_of('x') == std::size_t{1} << 20);
        REQUIRE(what.find("[message cut: " + std::to_string(kHuge) + " bytes in all]") != std::string::npos);
    }
}


}  // namespace

#define FORK_AND_SPAWN(name, tags, fn)                                                \
    static void fn(StartMethod);                                                      \
    TEST_CASE(name " [fork]", tags "[fork]") { fn(StartMethod::fork); }               \
    TEST_CASE(name " [spawn]", tags "[spawn]") { fn(StartMethod::spawn); }            \
    static void fn(StartMethod method)

FORK_AND_SPAWN("Pool.apply and Pool.map re-throw a task's exception as its own type", "[exceptions][pool]",
               pool_exceptions) {
    mproc::Pool pool(mproc::PoolOptions{.processes = 2, .start_method = method});
    for (int kind = 0; kind < kinds; ++kind) {
        std::exception_ptr e;
        try {
            pool.apply(thrower, kind);
        } catch (...) {
            e = std::current_exception();
        }
        check_arrived(e, kind, "PoolWorker-");
        const auto pids = pool.worker_pids();
        REQUIRE(std::find(pids.begin(), pids.end(), mproc::remote_origin(e)->pid) != pids.end());

        e = nullptr;
        try {
            pool.map(thrower, std::vector<int>{kind, kind});
        } catch (...) {
            e = std::current_exception();
        }
        check_arrived(e, kind, "PoolWorker-");
    }
    REQUIRE(pool.apply([](int x) { return x + 1; }, 1) == 2);  // the pool is fine
}

FORK_AND_SPAWN("ProcessPoolExecutor.submit's future re-throws a task's exception as its own type",
               "[exceptions][futures]", executor_exceptions) {
    mproc::ProcessPoolExecutor ex(2, method);
    for (int kind = 0; kind < kinds; ++kind) {
        auto f = ex.submit(thrower, kind);
        check_arrived(f.exception(kLong), kind, "PoolWorker-");
        std::exception_ptr e;
        try {
            f.result(kLong);
        } catch (...) {
            e = std::current_exception();
        }
        check_arrived(e, kind, "PoolWorker-");
    }
}

FORK_AND_SPAWN("Process::exception(): a child's escaping exception, re-created after join",
               "[exceptions][process]", process_exceptions) {
    for (int kind = 0; kind < kinds; ++kind) {
        mproc::Process p(child_throws, kind);
        p.name("thrower-" + std::to_string(kind)).start_method(method);
        REQUIRE_FALSE(p.exception());  // not started
        p.start();
        REQUIRE(p.join(kLong));
        REQUIRE(p.exitcode() == 1);
        check_arrived(p.exception(), kind, "thrower-" + std::to_string(kind));
        REQUIRE(mproc::remote_origin(p.exception())->pid == *p.pid());
    }
    mproc::Process ok([] {});
    ok.start_method(method).start();
    REQUIRE(ok.join(kLong));
    REQUIRE_FALSE(ok.exception());
}

namespace {
void rethrow_grandchild(int method) {
    mproc::Process g(child_throws, static_cast<int>(user));
    g.name("grandchild").start_method(static_cast<StartMethod>(method)).start();
    g.join();
    std::rethrow_exception(g.exception());
}
}  // namespace

FORK_AND_SPAWN("an exception passed on through two processes keeps its first origin", "[exceptions][process]",
               nested_origin) {
    mproc::Process p(rethrow_grandchild, static_cast<int>(method));
    p.name("middle").start_method(method);
    int null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);  // the middle reports it too
    int saved = ::dup(2);
    std::fflush(stderr);
    ::dup2(null, 2);
    p.start();
    ::dup2(saved, 2);
    ::close(saved);
    ::close(null);
    REQUIRE(p.join(kLong));
    REQUIRE(p.exitcode() == 1);
    auto where = mproc::remote_origin(p.exception());
    REQUIRE(where);
    REQUIRE(where->process_name == "grandchild");
    REQUIRE(where->type_name == "ZeroDivisionError");
    REQUIRE_THROWS_AS(std::rethrow_exception(p.exception()), ZeroDivisionError);
}

namespace {
int throw_picky(int) { throw Picky("picky"); }
}  // namespace

FORK_AND_SPAWN("a registered type that cannot be re-created here fails the task as RemoteError",
               "[exceptions][pool]", uncreatable) {
    g_test_pid = ::getpid();  // before the Pool: forked workers see it, spawned ones have 0
    mproc::Pool pool(mproc::PoolOptions{.processes = 1, .start_method = method});
    try {
        pool.apply(throw_picky, 0);
        FAIL("no exception");
    } catch (const mproc::RemoteError& e) {
        REQUIRE(e.type_name() == "Picky");
        REQUIRE(std::string(e.what()) == "picky");
    }
    g_test_pid = 0;
}

TEST_CASE("an exception raised here has no remote origin", "[exceptions]") {
    REQUIRE_FALSE(mproc::remote_origin(std::make_exception_ptr(std::runtime_error("local"))));
    REQUIRE_FALSE(mproc::remote_origin(std::make_exception_ptr(7)));
    REQUIRE_FALSE(mproc::remote_origin(std::exception_ptr()));
}

TEST_CASE("a manager served over TCP sends its errors with their type and origin", "[exceptions][manager]") {
    mproc::Manager mgr;
    const std::string address = mgr.serve("127.0.0.1:0", "codec");
    auto remote = mproc::Manager::connect(address, "codec");
    std::exception_ptr e;
    try {
        remote.lookup<mproc::ListProxy<int>>("nothing");
    } catch (...) {
        e = std::current_exception();
    }
    REQUIRE_THROWS_AS(std::rethrow_exception(e), mproc::KeyError);
    auto where = mproc::remote_origin(e);
    REQUIRE(where);
    REQUIRE(where->process_name == "mproc-manager-server");
    REQUIRE(where->type_name == "mproc::KeyError");
}

// ---- errors that say what to do --------------------------------------------------

namespace {
int put_on(mproc::Queue<int> q) {
    q.put(1);
    return 1;
}
int send_on(mproc::Connection<int> c) {
    c.send(1);
    return 1;
}
}  // namespace

FORK_AND_SPAWN("a Queue or Pipe a pool worker cannot reach: the error says what to do", "[exceptions][handles]",
               unreachable_handle) {
    mproc::Pool pool(mproc::PoolOptions{.processes = 1, .start_method = method});
    mproc::Queue<int> q;  // made after the Pool: its workers never inherited it
    auto [a, b] = mproc::Pipe<int>();
    for (int which = 0; which < 2; ++which) {
        try {
            if (which == 0) pool.apply(put_on, q);
            else pool.apply(send_on, a);
            FAIL("a handle the worker does not hold reached it");
        } catch (const mproc::SerializationError& e) {
            const std::string what = e.what();
            INFO(what);
            REQUIRE(what.find("which is running") != std::string::npos);  // not "has exited"
            REQUIRE(what.find("has exited") == std::string::npos);
            REQUIRE(what.find("mgr.Queue") != std::string::npos);
            REQUIRE(what.find("before the Pool") != std::string::npos);
            REQUIRE(mproc::remote_origin(e));
        }
    }
}
