// What lib/process/*.cpp share: a Process's state, the description of a
// child that every start method hands over, the children registry, and the
// child-side steps common to fork, spawn and forkserver children. Internal
// header.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "mproc/detail/process_target.hpp"
#include "mproc/detail/segment.hpp"
#include "mproc/process.hpp"
#include "os/os.hpp"

namespace mproc::detail {

struct ProcessState {
    explicit ProcessState(std::unique_ptr<TargetBase> t);

    enum class Phase { created, starting, started, closed };

    mutable std::mutex mu;
    std::unique_ptr<TargetBase> target;  // dropped once the child has it
    std::string name;
    std::vector<int> identity;  // (1, 3): the 3rd child of this process's 1st child
    bool daemon = false;
    std::optional<StartMethod> method;
    Phase phase = Phase::created;
    pid_t parent = 0;  // the process that started it: the only one that may wait for it
    pid_t pid = 0;
    os::Fd pidfd;   // signals; for fork and spawn children also waiting and reaping
    os::Fd status;  // forkserver children: the server writes the exit status here
    std::optional<int> exitcode;
    // A memfd made at start: a child whose target throws writes the
    // exception there (exception_codec.hpp). Read and closed when it is reaped.
    os::Fd exception_fd;
    std::vector<std::byte> exception_record;
    std::exception_ptr exception;  // decoded from the record on first use
};

/// Reaches a Process's state (Process befriends it).
struct ProcessAccess {
    static ProcessState& state(const Process& p) { return p.state(); }
};

/// Who a child is: the part of a spawn payload that is not its target.
struct ChildInfo {
    std::string name;
    std::vector<int> identity;
    bool daemon = false;
    std::int32_t parent = 0;
    std::string authkey;
    std::int32_t exception_fd = -1;  // where run_guarded writes an escaping exception
    // Spawn and forkserver children: the child-setup pieces' data
    // (save_child_setup); empty for a forked child.
    std::vector<std::byte> setup;
};

/// Storage for a per-process object that a forked child replaces with its
/// own: the child builds it in whichever of two static slots its parent's
/// object is not in. No malloc in the child (whose arena pages it would
/// have to copy), and the parent's object is left untouched (another
/// thread may have held its mutex at the fork). What the abandoned object
/// owned is leaked, once per fork, in the child only.
template <class T>
class ForkSlots {
public:
    ForkSlots() : current_(new (a_) T()) {}
    ForkSlots(const ForkSlots&) = delete;
    ForkSlots& operator=(const ForkSlots&) = delete;
    T& get() const noexcept { return *current_; }
    /// In a forked child: a fresh T, which get() returns from now on.
    T& renew() {
        std::byte* other = reinterpret_cast<std::byte*>(current_) == a_ ? b_ : a_;
        current_ = new (other) T();
        return *current_;
    }

private:
    T* current_;
    alignas(T) std::byte a_[sizeof(T)];
    alignas(T) std::byte b_[sizeof(T)];
};

// ---- parent side ----------------------------------------------------------

/// Process::join.
bool join_state(ProcessState& st, Timeout timeout);
/// The exit status of a started child, without blocking; st.mu held. Once
/// it has exited: its exit code set, its exception record read, its target
/// and exception memfd dropped.
void poll_locked(ProcessState& st);

// ---- the children registry (children.cpp) -----------------------------------

/// Records a started child. The registry keeps it (and its fds) until it is
/// joined, closed, or found finished: by start() (so a long program that
/// starts and drops many children reaps them), active_children() and the
/// exit handler. A dropped Process's child therefore keeps running.
void register_child(const std::shared_ptr<ProcessState>& st);
void unregister_child(const ProcessState* st);
/// The children this process started and has not yet seen finish.
std::vector<std::shared_ptr<ProcessState>> registered_children();
/// In a forked child: an empty registry (the parent's children are not ours).
void forget_parent_children();
/// Reaps the registered children that have exited; returns the live ones.
std::vector<std::shared_ptr<ProcessState>> reap_finished_children();
/// Registers exit_function with atexit, once per process.
void ensure_exit_handler();

// ---- who this process is (self.cpp) -----------------------------------------

/// The description of `st`'s child, as this process hands it over.
ChildInfo child_info_for(const ProcessState& st);
/// True in a process that is itself a daemon (which may not have children).
bool self_is_daemon();
/// Gives a new ProcessState its identity and default name ("Process-1:3"),
/// taking the next number, unless an UnnumberedScope is alive.
void name_new_process(ProcessState& st);

/// While one is alive on this thread, new ProcessStates take no number.
class UnnumberedScope {
public:
    UnnumberedScope() noexcept;
    ~UnnumberedScope();
    UnnumberedScope(const UnnumberedScope&) = delete;
    UnnumberedScope& operator=(const UnnumberedScope&) = delete;
};

// ---- how each start method starts a child ------------------------------------

/// Forks `self`'s child (fork_start.cpp): the child calls self.run().
/// Returns its pid and pidfd.
std::pair<pid_t, os::Fd> start_fork(Process& self, ChildInfo info);
/// What a spawn or forkserver child runs for `self` (subclass.cpp): its
/// target, nothing (no target), or a registered subclass's state. Error
/// naming the type if it cannot travel.
SpawnTarget spawn_target_of(const Process& self, const ProcessState& st);

/// Saved by init(): the argv a spawned child is started with; empty if init
/// was never called.
const std::vector<char*>& saved_argv();

/// Spawns `st`'s child (spawn.cpp). Sets st.pid and st.pidfd.
void start_spawn(ProcessState& st, const ChildInfo& info, const SpawnTarget& target,
                 const std::vector<int>& fds);
/// Asks the fork server for `st`'s child (forkserver.cpp). Sets st.pid,
/// st.pidfd and st.status.
void start_forkserver(ProcessState& st, const ChildInfo& info, const SpawnTarget& target,
                      const std::vector<int>& fds);
/// Closes the connection to the fork server and reaps it (at exit).
void forkserver_shutdown() noexcept;
/// In a forked child: forgets the parent's fork server without talking to it.
void forkserver_forget() noexcept;

/// Throws the Error that tells the user to call mproc::init.
[[noreturn]] void throw_not_initialized(StartMethod m);

// ---- the child-setup pieces (setup.cpp) -------------------------------------

/// Every registered piece's save(), as bytes for one child's payload. Call
/// inside the HandleExportScope whose fds the child inherits.
std::vector<std::byte> save_child_setup();
/// In a spawn or forkserver child: every piece's load(). Throws
/// SerializationError.
void load_child_setup(std::span<const std::byte> bytes);
/// Every piece's at_exit (from exit_function).
void run_child_setup_exits() noexcept;

// ---- the spawn payload ----------------------------------------------------

/// Bytes a spawn or forkserver child receives: who it is and its target.
/// The fds its handles use reach it separately, under the same numbers.
std::vector<std::byte> encode_payload(const ChildInfo& info, const SpawnTarget& target);

/// In a spawn or forkserver child: decodes the payload, becomes the child it
/// describes, runs the target and exits with its code. Never returns.
/// `parent`: the process whose death kills a daemon child (the fork server
/// for its children), 0 for the one in the payload.
[[noreturn]] void run_payload(std::span<const std::byte> bytes, bool forked, pid_t parent) noexcept;

// ---- child side -----------------------------------------------------------

/// Makes this (new) process the child `info` describes: its current_process,
/// an empty list of children, no fork server, and for a daemon a parent-death
/// signal towards `parent` (and an exit if it is already gone). `forked`: the child
/// shares the parent's memory image, so std::exit is redirected to _exit
/// (the parent's atexit handlers must not run here).
void become_child(ChildInfo info, bool forked, pid_t parent);
/// Runs fn, turning an escaping exception into exit code 1, the message
/// "Process <name>: <type>: <what>" on stderr, and its record in this
/// child's exception memfd (for Process::exception()). Returns the exit code.
int run_guarded(const std::function<void()>& fn) noexcept;
/// Joins this child's own children, flushes, and exits with `code`:
/// _exit for forked children, std::exit (atexit handlers, static
/// destructors, as a Python spawn child runs them) for spawned ones.
[[noreturn]] void finish_child(int code, bool forked) noexcept;

/// Python's util._exit_function: terminate daemon children, join the rest,
/// stop the fork server, run the child-setup pieces' at_exit. Safe to call
/// more than once.
void exit_function() noexcept;

/// Flushes stdout and stderr: iostreams' own buffers and C stdio's. (A
/// forked child flushes only these, as Python's does, so the parent need
/// not flush its other FILEs before a fork.)
void flush_std_streams() noexcept;

}  // namespace mproc::detail
