// Process, the handle: its settings, start() (which hands the child to one
// start method: fork_start.cpp, spawn.cpp, forkserver.cpp), and the calls
// on a started child. The registry of children, waiting and the exit
// handler are in children.cpp; who this process is, and the child's side,
// in self.cpp. See include/mproc/process.hpp.
#include "mproc/process.hpp"

#include <atomic>

#include <signal.h>

#include "mproc/detail/exception_codec.hpp"
#include "os/process.hpp"
#include "process/internal.hpp"

namespace mproc {
namespace detail {

namespace {

std::atomic<StartMethod> g_method{StartMethod::fork};

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
    check_open(st);
    if (st.phase != ProcessState::Phase::started)
        throw Error("mproc::Process \"" + st.name + "\" has not been started");
    if (st.exitcode) return;
    os::send_signal(st.pidfd.get(), sig);
}

}  // namespace

ProcessState::ProcessState(std::unique_ptr<TargetBase> t) : target(std::move(t)) { name_new_process(*this); }

}  // namespace detail

// ---- start methods and the like ---------------------------------------------

void set_start_method(StartMethod method) { detail::g_method.store(method); }
StartMethod get_start_method() { return detail::g_method.load(); }
int cpu_count() { return os::affinity_cpu_count(); }

// ---- Process ------------------------------------------------------------------

Process::Process() : state_(std::make_shared<detail::ProcessState>(nullptr)) {}

Process::Process(std::unique_ptr<detail::TargetBase> target)
    : state_(std::make_shared<detail::ProcessState>(std::move(target))) {}

Process::~Process() = default;

detail::ProcessState& Process::state() const {
    if (!state_) throw ValueError("mproc::Process: this Process is empty (moved from)");
    return *state_;
}

void Process::run() {
    auto& st = state();
    if (st.target) st.target->run();
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
    if (detail::self_is_daemon())
        throw Error("mproc::Process: daemonic processes are not allowed to have children");
    // Python's _cleanup: reap the children that have finished meanwhile.
    detail::reap_finished_children();
    StartMethod method;
    {
        std::lock_guard<std::mutex> g(st.mu);
        detail::check_open(st);
        if (st.phase != Phase::created) throw Error("mproc::Process: cannot start a process twice");
        method = st.method.value_or(get_start_method());
        st.method = method;
        st.phase = Phase::starting;  // no other thread starts it meanwhile
    }
    detail::ensure_exit_handler();
    pid_t pid = 0;
    os::Fd pidfd;
    detail::ChildInfo info;
    try {
        os::Fd exception_fd = os::memfd("mproc-exception", 0);
        {
            std::lock_guard<std::mutex> g(st.mu);
            st.exception_fd = std::move(exception_fd);
            info = detail::child_info_for(st);
        }
        if (method == StartMethod::fork) {
            std::tie(pid, pidfd) = detail::start_fork(*this, info);
        } else {
            if (detail::saved_argv().empty()) detail::throw_not_initialized(method);
            // Serializing the arguments notes every fd their handles use;
            // the scope keeps those segments alive until the child has them.
            detail::HandleExportScope exported;
            info.setup = detail::save_child_setup();
            detail::SpawnTarget target = detail::spawn_target_of(*this, st);
            std::vector<int> fds = exported.fds();
            fds.push_back(info.exception_fd);
            if (method == StartMethod::spawn) detail::start_spawn(st, info, target, fds);
            else detail::start_forkserver(st, info, target, fds);
        }
    } catch (...) {
        std::lock_guard<std::mutex> g(st.mu);
        st.exception_fd.reset();
        st.phase = Phase::created;
        throw;
    }
    std::unique_ptr<detail::TargetBase> drop;  // Python drops target and args after start
    {
        std::lock_guard<std::mutex> g(st.mu);
        if (method == StartMethod::fork) {
            st.pid = pid;
            st.pidfd = std::move(pidfd);
        } else {
            // A forked child shares our pages until it exits: freeing there
            // would copy them, so a fork target goes when the child is reaped.
            drop = std::move(st.target);
        }
        st.parent = info.parent;
        st.phase = Phase::started;
    }
    detail::register_child(state_);
}

bool Process::join(Timeout timeout) { return detail::join_state(state(), timeout); }

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

std::exception_ptr Process::exception() const {
    auto& st = state();
    std::lock_guard<std::mutex> g(st.mu);
    detail::check_open(st);
    if (st.parent == os::pid()) detail::poll_locked(st);
    if (!st.exception && !st.exception_record.empty()) {
        try {
            st.exception = detail::exception_from_bytes(st.exception_record);
        } catch (...) {
            st.exception = std::current_exception();  // a corrupt record: SerializationError
        }
    }
    return st.exception;
}

void Process::terminate() { detail::signal_child(state(), SIGTERM); }
void Process::kill() { detail::signal_child(state(), SIGKILL); }
void Process::interrupt() { detail::signal_child(state(), SIGINT); }

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
        st.exception_fd.reset();
        st.target.reset();
    }
    detail::unregister_child(&st);
}

}  // namespace mproc
