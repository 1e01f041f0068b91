// Process, the fork start method, and the per-process bookkeeping every
// start method shares: who this process is (current_process), which
// children it started (active_children), and what happens at exit. See
// include/mproc/process.hpp.
//
// Waiting: a fork or spawn child is waited for through a pidfd (poll(2)
// until it is readable, then waitid(P_PIDFD) reaps it), so join(timeout)
// sleeps in the kernel and several threads may join one child. A forkserver
// child is not our child: the server reaps it and writes its exit status on
// a socket that join() polls instead (forkserver.cpp).
#include "mproc/process.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cxxabi.h>
#include <exception>
#include <iostream>
#if defined(__GLIBCXX__)
#include <ext/stdio_sync_filebuf.h>
#endif
#include <typeinfo>

#include <signal.h>
#include <sys/socket.h>

#include "os/process.hpp"
#include "process/internal.hpp"

namespace mproc {
namespace detail {

thread_local int t_quiet_fork = 0;
QuietForkScope::QuietForkScope() noexcept { ++t_quiet_fork; }
QuietForkScope::~QuietForkScope() { --t_quiet_fork; }

std::string type_name(const std::type_info& t) {
    int status = 0;
    char* d = abi::__cxa_demangle(t.name(), nullptr, nullptr, &status);
    std::string r = (status == 0 && d) ? d : t.name();
    std::free(d);
    return r;
}

namespace {

// ---- who this process is ----------------------------------------------------

struct Self {
    std::mutex mu;
    std::string name = "MainProcess";
    std::vector<int> identity;
    bool daemon = false;
    std::optional<pid_t> parent;
    std::string authkey;
    std::atomic<int> counter{0};
};
// Replaced in a forked child (ForkSlots); never destroyed, as exit
// handlers use them. Function-local, so that a Process made by a static
// initializer finds them.
ForkSlots<Self>& self_slots() {
    static auto* s = new ForkSlots<Self>;
    return *s;
}
Self* self_slot() { return &self_slots().get(); }

struct Children {
    std::mutex mu;
    struct Entry {
        std::weak_ptr<ProcessState> weak;
        std::shared_ptr<ProcessState> strong;  // daemons: kept until reaped, for exit
    };
    std::vector<Entry> entries;
};
ForkSlots<Children>& children_slots() {
    static auto* s = new ForkSlots<Children>;
    return *s;
}
Children* children_slot() { return &children_slots().get(); }

std::atomic<StartMethod> g_method{StartMethod::fork};
std::atomic<int> g_fork_warning{-1};  // -1: not decided yet
std::atomic<bool> g_fork_warned{false};
std::atomic<pid_t> g_atexit_registered_in{0};

std::string authkey_of_self() {
    Self& s = *self_slot();
    std::lock_guard<std::mutex> g(s.mu);
    if (s.authkey.empty()) {
        std::byte key[32];
        os::random_bytes(key);
        s.authkey.assign(reinterpret_cast<const char*>(key), sizeof key);
    }
    return s.authkey;
}

void register_child(const std::shared_ptr<ProcessState>& st, bool daemon) {
    Children& c = *children_slot();
    std::lock_guard<std::mutex> g(c.mu);
    std::erase_if(c.entries, [](const Children::Entry& e) { return e.weak.expired(); });
    c.entries.push_back({st, daemon ? st : nullptr});
}

void unregister_child(const ProcessState* st) {
    Children& c = *children_slot();
    std::shared_ptr<ProcessState> keep;  // destroyed after the lock is released
    std::lock_guard<std::mutex> g(c.mu);
    for (auto it = c.entries.begin(); it != c.entries.end(); ++it) {
        auto locked = it->weak.lock();
        if (locked.get() == st || (!locked && it->strong.get() == st)) {
            keep = std::move(it->strong);
            c.entries.erase(it);
            return;
        }
    }
}

std::vector<std::shared_ptr<ProcessState>> registered_children() {
    Children& c = *children_slot();
    std::lock_guard<std::mutex> g(c.mu);
    std::vector<std::shared_ptr<ProcessState>> out;
    const pid_t me = os::pid();
    for (auto& e : c.entries)
        if (auto s = e.weak.lock())
            if (s->parent == me) out.push_back(std::move(s));  // not a plain fork()'s parent's
    return out;
}

void atexit_handler() { exit_function(); }

void ensure_exit_handler() {
    pid_t me = os::pid();
    // Read first: a write would cost a page fault per start after a fork.
    if (g_atexit_registered_in.load(std::memory_order_relaxed) == me) return;
    if (g_atexit_registered_in.exchange(me) != me) std::atexit(atexit_handler);
}

bool fork_warning_enabled() {
    int v = g_fork_warning.load(std::memory_order_relaxed);
    if (v < 0) {
        const char* e = std::getenv("MPROC_NO_FORK_WARNING");
        v = (e && *e && std::string_view(e) != "0") ? 0 : 1;
        g_fork_warning.store(v, std::memory_order_relaxed);
    }
    return v == 1;
}

void maybe_warn_threads() {
    if (t_quiet_fork > 0) return;
    if (g_fork_warned.load(std::memory_order_relaxed) || !fork_warning_enabled()) return;
    int n = os::thread_count();
    if (n <= 1 || g_fork_warned.exchange(true)) return;
    std::fprintf(stderr,
                 "mproc: warning: process %d runs %d threads and forks a child; the child gets a "
                 "copy of every lock those threads hold and may deadlock. Use "
                 "StartMethod::forkserver (or spawn) in multi-threaded programs. "
                 "(MPROC_NO_FORK_WARNING=1 or mproc::set_fork_warning(false) silences this.)\n",
                 static_cast<int>(os::pid()), n);
}

ChildInfo child_info_for(const ProcessState& st) {
    ChildInfo info;
    info.name = st.name;
    info.identity = st.identity;
    info.daemon = st.daemon;
    info.parent = os::pid();
    info.authkey = authkey_of_self();
    return info;
}

// The exit status of an exited-or-not child, without blocking; st.mu held.
void poll_locked(ProcessState& st) {
    if (st.exitcode || st.phase != ProcessState::Phase::started) return;
    if (st.method == StartMethod::forkserver) {
        if (!os::wait_readable(st.status.get(), os::Deadline::after(Duration(0)))) return;
        std::int32_t code = 0;
        ssize_t r = ::recv(st.status.get(), &code, sizeof code, MSG_DONTWAIT);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
        // End of stream without a status: the fork server died (Python says 255).
        st.exitcode = (r == sizeof code) ? code : 255;
    } else {
        st.exitcode = os::reap(st.pidfd.get(), false);
    }
    if (st.exitcode) st.target.reset();
}

void on_forked_child_exit(int status, void*) {
    // std::exit in a forked child: the parent's atexit handlers and static
    // destructors belong to the parent's copy; skip them, as Python's
    // os._exit after the target does.
    exit_function();
    flush_std_streams();
    os::exit_now(status);
}

void check_creator(const ProcessState& st, const char* what) {
    if (st.parent != os::pid())
        throw Error(std::string("mproc::Process: can only ") + what + " a child process (\"" +
                    st.name + "\" was started by process " + std::to_string(st.parent) + ")");
}

void check_open(const ProcessState& st) {
    if (st.phase == ProcessState::Phase::closed)
        throw ValueError("mproc::Process \"" + st.name + "\" is closed");
}

void signal_child(ProcessState& st, int sig) {
    std::lock_guard<std::mutex> g(st.mu);
    detail::check_open(st);
    if (st.phase != ProcessState::Phase::started)
        throw Error("mproc::Process \"" + st.name + "\" has not been started");
    if (st.exitcode) return;
    os::send_signal(st.pidfd.get(), sig);
}

}  // namespace

// ---- ProcessState -------------------------------------------------------------

ProcessState::ProcessState(std::unique_ptr<TargetBase> t) : target(std::move(t)) {
    Self& s = *self_slot();
    int n = ++s.counter;
    {
        std::lock_guard<std::mutex> g(s.mu);
        identity = s.identity;
    }
    identity.push_back(n);
    name = "Process-";
    for (std::size_t i = 0; i < identity.size(); ++i) {
        if (i) name += ':';
        name += std::to_string(identity[i]);
    }
}

ProcessState::~ProcessState() {
    // The last handle to a started, un-joined, non-daemon child joins it
    // (API.md); in any other process this is just a copy of the memory.
    if (phase == Phase::started && !exitcode && !daemon && parent == os::pid()) {
        try {
            if (method == StartMethod::forkserver) {
                os::wait_readable(status.get(), os::Deadline::never());
                poll_locked(*this);
            } else {
                exitcode = os::reap(pidfd.get(), true);
            }
        } catch (...) {
        }
    }
}

// ---- the child side -----------------------------------------------------------

namespace {
// Streams synced with stdio (the default) have no buffer of their own:
// flushing them is an fflush, done below only where there is something
// to write.
template <class Stream>
void flush_own_buffer(Stream& s) {
#if defined(__GLIBCXX__)
    if (dynamic_cast<__gnu_cxx::stdio_sync_filebuf<typename Stream::char_type>*>(s.rdbuf())) return;
#endif
    s.flush();
}
}  // namespace

void flush_std_streams() noexcept {
    try {
        flush_own_buffer(std::cout);
        flush_own_buffer(std::clog);
        flush_own_buffer(std::cerr);
        flush_own_buffer(std::wcout);
        flush_own_buffer(std::wclog);
        flush_own_buffer(std::wcerr);
    } catch (...) {
    }
    os::flush_stdout_stderr();
}

void become_child(ChildInfo info, bool forked, pid_t parent) {
    if (info.daemon) {
        // The parent's death kills a daemon; if it died before this line,
        // the signal will never come, so go now.
        os::set_parent_death_signal(SIGKILL);
        if (os::parent_pid() != parent) ::raise(SIGKILL);
    }
    if (forked) {
        // The parent's copies may have been locked by another thread at
        // the fork: start afresh rather than touch their mutexes.
        self_slots().renew();
        children_slots().renew();
    }
    {
        Self& self = *self_slot();
        std::lock_guard<std::mutex> g(self.mu);
        self.name = std::move(info.name);  // moved, not copied: no malloc in a fresh fork
        self.identity = std::move(info.identity);
        self.daemon = info.daemon;
        self.parent = info.parent;
        self.authkey = std::move(info.authkey);
        self.counter = 0;
    }
    if (forked) {
        forkserver_forget();
        os::call_on_exit(on_forked_child_exit, nullptr);
    }
}

int run_guarded(const std::function<void()>& fn) noexcept {
    try {
        fn();
        return 0;
    } catch (const std::exception& e) {
        std::string name = current_process().name();
        std::fprintf(stderr, "Process %s: %s: %s\n", name.c_str(), type_name(typeid(e)).c_str(), e.what());
    } catch (...) {
        std::string name = current_process().name();
        const std::type_info* t = abi::__cxa_current_exception_type();
        std::fprintf(stderr, "Process %s: %s\n", name.c_str(),
                     t ? type_name(*t).c_str() : "unknown exception");
    }
    return 1;
}

void finish_child(int code, bool forked) noexcept {
    exit_function();
    flush_std_streams();
    if (forked) os::exit_now(code);
    std::exit(code);
}

void exit_function() noexcept {
    try {
        auto kids = registered_children();
        for (auto& k : kids) {
            std::lock_guard<std::mutex> g(k->mu);
            if (k->daemon && k->phase == ProcessState::Phase::started && !k->exitcode)
                os::send_signal(k->pidfd.get(), SIGTERM);
        }
        for (auto& k : kids) {
            try {
                join_state(*k, std::nullopt);
            } catch (...) {
            }
        }
    } catch (...) {
    }
    forkserver_shutdown();
}

}  // namespace detail

// ---- start methods and the like ---------------------------------------------

void set_start_method(StartMethod method) { detail::g_method.store(method); }
StartMethod get_start_method() { return detail::g_method.load(); }
int cpu_count() { return os::affinity_cpu_count(); }
void set_fork_warning(bool enabled) { detail::g_fork_warning.store(enabled ? 1 : 0); }

// ---- Process ------------------------------------------------------------------

Process::Process(std::unique_ptr<detail::TargetBase> target)
    : state_(std::make_shared<detail::ProcessState>(std::move(target))) {}

detail::ProcessState& Process::state() const {
    if (!state_) throw ValueError("mproc::Process: this Process is empty (default-constructed)");
    return *state_;
}

std::string Process::name() const {
    auto& st = state();
    std::lock_guard<std::mutex> g(st.mu);
    return st.name;
}

Process& Process::name(std::string name) {
    auto& st = state();
    std::lock_guard<std::mutex> g(st.mu);
    st.name = std::move(name);
    return *this;
}

bool Process::daemon() const {
    auto& st = state();
    std::lock_guard<std::mutex> g(st.mu);
    return st.daemon;
}

Process& Process::daemon(bool daemon) {
    auto& st = state();
    std::lock_guard<std::mutex> g(st.mu);
    if (st.phase != detail::ProcessState::Phase::created)
        throw Error("mproc::Process: daemon() cannot change after start()");
    st.daemon = daemon;
    return *this;
}

StartMethod Process::start_method() const {
    auto& st = state();
    std::lock_guard<std::mutex> g(st.mu);
    return st.method.value_or(get_start_method());
}

Process& Process::start_method(StartMethod method) {
    auto& st = state();
    std::lock_guard<std::mutex> g(st.mu);
    if (st.phase != detail::ProcessState::Phase::created)
        throw Error("mproc::Process: start_method() cannot change after start()");
    st.method = method;
    return *this;
}

void Process::start() {
    using Phase = detail::ProcessState::Phase;
    auto& st = state();
    detail::ChildInfo info;
    StartMethod method;
    {
        std::lock_guard<std::mutex> g(st.mu);
        detail::check_open(st);
        if (st.phase != Phase::created) throw Error("mproc::Process: cannot start a process twice");
        if (!st.target) throw ValueError("mproc::Process: this Process has no target");
        if (detail::self_slot()->daemon)
            throw Error("mproc::Process: daemonic processes are not allowed to have children");
        method = st.method.value_or(get_start_method());
        st.method = method;
        st.phase = Phase::starting;  // no other thread starts it meanwhile
        info = detail::child_info_for(st);
    }
    detail::ensure_exit_handler();
    const pid_t parent = info.parent;
    const bool daemon = info.daemon;
    pid_t forked_pid = 0;
    os::Fd forked_pidfd;
    try {
        if (method == StartMethod::fork) {
            detail::maybe_warn_threads();
            detail::flush_std_streams();  // or the child would print the parent's buffered output again
            // st.mu is not held here: a target that uses its own Process
            // (a copy made by fork) must find the mutex free.
            const sigset_t mask = os::block_all_signals();
            pid_t pid;
            try {
                pid = os::fork_process();
            } catch (...) {
                os::restore_signals(mask);
                throw;
            }
            if (pid == 0) {
                // Signals wait until the child is set up (a terminate() right
                // after start() still lands, just not inside libc's fork).
                int code = 1;
                try {
                    detail::become_child(std::move(info), /*forked=*/true, parent);
                    os::restore_signals(mask);
                    code = detail::run_guarded([&st] { st.target->run(); });
                } catch (const std::exception& e) {
                    std::fprintf(stderr, "mproc: a forked child could not start: %s\n", e.what());
                }
                detail::finish_child(code, /*forked=*/true);
            }
            os::restore_signals(mask);
            try {
                forked_pidfd = os::pidfd_open(pid);
            } catch (...) {
                os::kill_and_reap(pid);
                throw;
            }
            forked_pid = pid;
        } else {
            if (detail::saved_argv().empty()) detail::throw_not_initialized(method);
            // Serializing the arguments notes every fd their handles use;
            // the scope keeps those segments alive until the child has them.
            detail::HandleExportScope exported;
            detail::SpawnTarget target = st.target->spawn_target();
            if (method == StartMethod::spawn)
                detail::start_spawn(st, info, target, exported.fds());
            else
                detail::start_forkserver(st, info, target, exported.fds());
        }
    } catch (...) {
        std::lock_guard<std::mutex> g(st.mu);
        st.phase = Phase::created;
        throw;
    }
    std::unique_ptr<detail::TargetBase> drop;  // Python drops target and args after start
    {
        std::lock_guard<std::mutex> g(st.mu);
        if (method == StartMethod::fork) {
            st.pid = forked_pid;
            st.pidfd = std::move(forked_pidfd);
        } else {
            // A forked child shares our pages until it exits: freeing there
            // would copy them, so a fork target goes when the child is reaped.
            drop = std::move(st.target);
        }
        st.parent = parent;
        st.phase = Phase::started;
    }
    detail::register_child(state_, daemon);
}

bool Process::join(Timeout timeout) { return detail::join_state(state(), timeout); }

bool detail::join_state(ProcessState& st, Timeout timeout) {
    using Phase = detail::ProcessState::Phase;
    int wait_fd;
    {
        std::lock_guard<std::mutex> g(st.mu);
        detail::check_open(st);
        if (st.phase != Phase::started) throw Error("mproc::Process: can only join a started process");
        detail::check_creator(st, "join");
        if (!st.exitcode) wait_fd = st.method == StartMethod::forkserver ? st.status.get() : st.pidfd.get();
        else wait_fd = -1;
    }
    if (wait_fd >= 0) {
        // The fd stays open until the state dies, so another thread reaping
        // meanwhile cannot make this poll watch a reused number.
        if (!os::wait_readable(wait_fd, os::Deadline::after(timeout))) return false;
        std::lock_guard<std::mutex> g(st.mu);
        detail::poll_locked(st);
        if (!st.exitcode) return false;  // woken, yet not reapable: treat as a timeout
    }
    detail::unregister_child(&st);
    return true;
}

bool Process::is_alive() const {
    using Phase = detail::ProcessState::Phase;
    auto& st = state();
    std::lock_guard<std::mutex> g(st.mu);
    detail::check_open(st);
    if (st.phase != Phase::started) return false;
    detail::check_creator(st, "test");
    detail::poll_locked(st);
    return !st.exitcode;
}

std::optional<int> Process::pid() const {
    auto& st = state();
    std::lock_guard<std::mutex> g(st.mu);
    detail::check_open(st);
    if (st.phase != detail::ProcessState::Phase::started) return std::nullopt;
    return st.pid;
}

int Process::sentinel() const {
    auto& st = state();
    std::lock_guard<std::mutex> g(st.mu);
    detail::check_open(st);
    if (st.phase != detail::ProcessState::Phase::started)
        throw ValueError("mproc::Process: sentinel() before start()");
    return st.status ? st.status.get() : st.pidfd.get();
}

std::optional<int> Process::exitcode() const {
    auto& st = state();
    std::lock_guard<std::mutex> g(st.mu);
    detail::check_open(st);
    if (st.parent == os::pid()) detail::poll_locked(st);
    return st.exitcode;
}

void Process::terminate() { detail::signal_child(state(), SIGTERM); }
void Process::kill() { detail::signal_child(state(), SIGKILL); }

void Process::close() {
    using Phase = detail::ProcessState::Phase;
    auto& st = state();
    {
        std::lock_guard<std::mutex> g(st.mu);
        if (st.phase == Phase::closed) return;
        if (st.phase == Phase::starting) throw ValueError("mproc::Process: close() during start()");
        if (st.phase == Phase::started) {
            if (st.parent == os::pid()) detail::poll_locked(st);
            if (!st.exitcode)
                throw ValueError("mproc::Process: cannot close \"" + st.name +
                                 "\" while it is still running; join() or terminate() it first");
        }
        st.phase = Phase::closed;
        st.pidfd.reset();
        st.status.reset();
        st.target.reset();
    }
    detail::unregister_child(&st);
}

// ---- this process --------------------------------------------------------------

CurrentProcess current_process() { return {}; }

std::string CurrentProcess::name() const {
    auto& s = *detail::self_slot();
    std::lock_guard<std::mutex> g(s.mu);
    return s.name;
}

void CurrentProcess::name(std::string name) {
    auto& s = *detail::self_slot();
    std::lock_guard<std::mutex> g(s.mu);
    s.name = std::move(name);
}

int CurrentProcess::pid() const { return os::pid(); }

bool CurrentProcess::daemon() const {
    auto& s = *detail::self_slot();
    std::lock_guard<std::mutex> g(s.mu);
    return s.daemon;
}

std::string CurrentProcess::authkey() const { return detail::authkey_of_self(); }

std::optional<int> parent_process() {
    auto& s = *detail::self_slot();
    std::lock_guard<std::mutex> g(s.mu);
    if (!s.parent) return std::nullopt;
    return *s.parent;
}

std::vector<Process> active_children() {
    std::vector<Process> out;
    for (auto& st : detail::registered_children()) {
        bool alive;
        {
            std::lock_guard<std::mutex> g(st->mu);
            detail::poll_locked(*st);
            alive = st->phase == detail::ProcessState::Phase::started && !st->exitcode;
        }
        if (alive) out.push_back(Process(std::move(st)));
        else detail::unregister_child(st.get());
    }
    return out;
}

}  // namespace mproc
