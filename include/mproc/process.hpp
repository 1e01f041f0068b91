// mproc processes: Python's multiprocessing.Process, its start methods and
// the program entry point mproc::init.
//
//   int main(int argc, char** argv) {
//       mproc::init(argc, argv);               // first line of main
//       mproc::Process p(worker, 42, queue);   // like Process(target=worker, args=(42, queue))
//       p.start();
//       p.join();
//   }
//
// Python's class style works too: derive from Process and override run().
//
//   struct Worker : mproc::Process {
//       int n = 0;
//       void run() override { ... }            // runs in the child
//       template <class A> void serialize(A& ar, unsigned) { ar & n; }   // spawn only
//   };
//   MPROC_REGISTER_PROCESS(Worker);            // spawn / forkserver only
//
// With fork the child runs run() on its copy of the object. A spawn or
// forkserver child is a fresh process: it default-constructs the subclass,
// loads the state its serialize() saved (the Process base is not saved: in
// the child, name() is the child's name), and calls run(). That needs
// MPROC_REGISTER_PROCESS(Worker) at namespace scope; starting an
// unregistered subclass that way is an Error naming it.
//
// Start methods (StartMethod, chosen per process or process-wide):
// - fork: the child is a copy of the parent and runs the target at once.
//   Any callable and any arguments work. Forking a process that runs other
//   threads copies whatever locks they held; mproc prints a one-time warning
//   then (MPROC_NO_FORK_WARNING=1 or set_fork_warning(false) silences it).
// - spawn: the child is a fresh run of this executable; its mproc::init()
//   receives the target and arguments and never returns into main. The
//   target must be a function or a capture-less lambda (sent by reference,
//   as pickle sends functions by name); each argument must be serializable
//   (<mproc/serialization.hpp>) or an mproc handle (Queue, Lock, Value, ...),
//   which the child re-attaches to. Since the method is chosen at run time,
//   a target that breaks these rules is reported by start() (mproc::Error
//   naming the type); static_assert(mproc::is_spawnable_v<F, Args...>)
//   checks it at compile time.
// - forkserver: a helper process, spawned on first use from a clean
//   single-threaded state, forks the children; same rules as spawn. Each
//   child gets the parent's current stdin/stdout/stderr and directory. The
//   helper exits when this process does.
// get_context(method) (<mproc/context.hpp>) makes Processes, Pools and
// Managers bound to one method.
//
// Exit codes follow Python: 0 when the target returns, 1 when an exception
// escapes it (printed as "Process <name>: <type>: <what>" on stderr, and
// available to the parent as exception(), re-created with its type as
// <mproc/errors.hpp> describes), n for std::exit(n), -N when signal N
// killed it (interrupt() is SIGINT: -2 unless the child handles it).
// Children flush stdout and stderr before exiting.
//
// Lifetime, as in Python: a Process going out of scope does not join or
// stop its child. The child keeps running and stays in active_children();
// when the program exits normally (return from main, std::exit), mproc
// terminates (SIGTERM) every daemon child and then joins every child,
// which is what Python's exit handler does; so a program whose main
// returns while non-daemon children run waits for them, and their output
// appears. Children that have finished are reaped by the next start(),
// active_children() or join, so a long program that starts and drops many
// leaves no zombies. std::quick_exit, _exit and death by a signal skip this.
//
// Daemon children are killed when their parent exits, kill -9 included
// (PR_SET_PDEATHSIG: for fork and spawn children that is the exit of the
// *thread* that started them, so start daemons from a thread that lives as
// long as the program).
//
// Thread and process safety: a Process is a handle like the others in mproc
// (copies refer to the same child); its methods may be called from any
// thread of the process that started it. join() blocks (in poll(2) on a
// pidfd, never in a sleep loop); start() with spawn or forkserver blocks
// until the child exists. Everything else returns at once.
#pragma once

#include <cstddef>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/detail/process_target.hpp"
#include "mproc/duration.hpp"
#include "mproc/errors.hpp"

namespace mproc {

/// How a child process is created.
enum class StartMethod { fork, spawn, forkserver };

/// Call as the first statement of main. Records argv for spawn. In a child
/// started with spawn it runs the child's target and exits (it never
/// returns); in the forkserver helper it serves until the parent exits.
void init(int argc, char** argv);

/// The process-wide default for Processes that don't choose; fork if never set.
void set_start_method(StartMethod method);
StartMethod get_start_method();

/// CPUs this process may run on (its affinity mask), at least 1.
int cpu_count();

/// Turns the warning about forking a multi-threaded process on or off
/// (default on unless the environment has MPROC_NO_FORK_WARNING=1).
void set_fork_warning(bool enabled);

class Process;

namespace detail {
struct ProcessState;
struct ProcessAccess;

/// While one is alive on a thread, fork starts from that thread skip the
/// multi-threaded-fork warning. For mproc's own workers (a Pool's), whose
/// extra threads are mproc's and hold no lock the worker needs.
class QuietForkScope {
public:
    QuietForkScope() noexcept;
    ~QuietForkScope();
    QuietForkScope(const QuietForkScope&) = delete;
    QuietForkScope& operator=(const QuietForkScope&) = delete;
};
}  // namespace detail

/// multiprocessing.Process: runs `target(args...)` (or an overriding
/// run()) in a child process.
class Process {
public:
    /// A Process without a target (Python's Process()): its child runs
    /// run(), which does nothing unless a subclass overrides it.
    Process();

    /// `target` is called with `args` in the child. Arguments are stored as
    /// std::thread stores them (decayed copies); the child receives them as
    /// rvalues, or as lvalues where the target takes non-const references.
    template <class F, class... Args>
        requires(!std::is_base_of_v<Process, std::remove_cvref_t<F>>)
    explicit Process(F&& target, Args&&... args)
        : Process(detail::make_target(std::forward<F>(target), std::forward<Args>(args)...)) {}

    virtual ~Process();
    Process(const Process&) = default;
    Process(Process&&) noexcept = default;
    Process& operator=(const Process&) = default;
    Process& operator=(Process&&) noexcept = default;

    /// Python's run(): what the child executes. Calls the target (nothing
    /// if there is none); subclasses override it. Called directly, it runs
    /// in this process, as in Python.
    virtual void run();

    /// The name ("Process-N" by default, "Process-1:N" for a child's children).
    std::string name() const;
    Process& name(std::string name);
    /// Daemon children are killed when their parent exits. Before start().
    bool daemon() const;
    Process& daemon(bool daemon);
    /// This child's start method (get_start_method() unless set). Before start().
    StartMethod start_method() const;
    Process& start_method(StartMethod method);

    /// Starts the child. Error if started before, or (spawn, forkserver) if
    /// main did not call mproc::init or the target or an argument cannot be
    /// sent to a fresh process.
    void start();
    /// Waits for the child to exit; false if the timeout passed first.
    bool join(Timeout timeout = std::nullopt);
    bool is_alive() const;
    /// nullopt before start().
    std::optional<int> pid() const;
    /// nullopt while running (or before start); 0 on return, 1 on an
    /// exception, the code given to std::exit, -N if killed by signal N.
    std::optional<int> exitcode() const;
    /// Python's Process.sentinel: an fd (owned by the Process) that becomes
    /// readable when the child exits, for poll(2) over several children.
    /// ValueError before start().
    int sentinel() const;
    /// SIGTERM. Nothing happens if the child has already exited.
    void terminate();
    /// SIGKILL.
    void kill();
    /// SIGINT (Python 3.14's interrupt()): the child dies of it (exit code
    /// -2) unless it handles SIGINT.
    void interrupt();
    /// Beyond Python: once the child has exited because an exception escaped
    /// its target (exit code 1), that exception, re-created here with its
    /// type and message (<mproc/errors.hpp>; remote_origin() names the
    /// child); nullptr otherwise (still running, returned, killed, exited
    /// with std::exit). Call after join() or once exitcode() is set.
    std::exception_ptr exception() const;
    /// Releases the child's resources; afterwards most methods throw
    /// ValueError. ValueError if it is still running.
    void close();

    /// True for handles to the same Process.
    friend bool operator==(const Process& a, const Process& b) noexcept { return a.state_ == b.state_; }

private:
    friend std::vector<Process> active_children();
    friend struct detail::ProcessAccess;
    explicit Process(std::unique_ptr<detail::TargetBase> target);
    explicit Process(std::shared_ptr<detail::ProcessState> state) noexcept : state_(std::move(state)) {}
    detail::ProcessState& state() const;

    std::shared_ptr<detail::ProcessState> state_;
};

/// multiprocessing.current_process(): the process this code runs in.
class CurrentProcess {
public:
    /// "MainProcess" in the main process, the Process's name in a child.
    std::string name() const;
    void name(std::string name);
    int pid() const;
    bool daemon() const;
    /// 32 random bytes made by the main process and inherited by every
    /// descendant (Python's authkey), for the Manager's authentication.
    std::string authkey() const;
};
CurrentProcess current_process();

/// multiprocessing.parent_process(): the pid of the process that started
/// this one, or nullopt in the main process.
std::optional<int> parent_process();

/// Children started by this process that are still running (joined or not,
/// their Process objects kept or dropped). Like Python's, it reaps the
/// children that have exited.
std::vector<Process> active_children();

namespace detail {
/// How a spawn or forkserver child re-creates a registered subclass.
using ProcessSaver = std::vector<std::byte> (*)(const Process& p);
using ProcessMaker = std::unique_ptr<Process> (*)(std::span<const std::byte> state);
bool register_process_class(const std::string& name, ProcessSaver save, ProcessMaker make) noexcept;

template <class P>
bool register_process_class() noexcept {
    static_assert(std::is_base_of_v<Process, P>, "MPROC_REGISTER_PROCESS(P): P must derive from mproc::Process");
    static_assert(std::is_default_constructible_v<P>,
                  "MPROC_REGISTER_PROCESS(P): P must be default-constructible (a spawned child makes "
                  "one, then loads the state that P's serialize() saved)");
    static_assert(is_serializable_v<P>,
                  "MPROC_REGISTER_PROCESS(P): P must be serializable: give it a Boost.Serialization "
                  "`template <class Archive> void serialize(Archive&, unsigned)` member saving its "
                  "own fields (not the Process base)");
    try {
        return register_process_class(
            type_name(typeid(P)), [](const Process& p) { return dumps(static_cast<const P&>(p)); },
            [](std::span<const std::byte> b) -> std::unique_ptr<Process> {
                return std::make_unique<P>(loads<P>(b));
            });
    } catch (...) {
        return false;
    }
}
}  // namespace detail

}  // namespace mproc

/// At namespace scope: a Process subclass P that spawn and forkserver
/// children can re-create (see the top of this file).
#define MPROC_REGISTER_PROCESS(P)                                                             \
    [[maybe_unused]] static const bool MPROC_DETAIL_CAT(mproc_registered_process_, __COUNTER__) = \
        ::mproc::detail::register_process_class<P>()
