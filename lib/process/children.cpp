// The children a process started: the registry that keeps them while they
// run (whether or not their Process objects still exist), waiting for and
// reaping them, active_children(), and the exit handler that, like Python's
// util._exit_function, terminates daemon children and joins the rest.
//
// Waiting: a fork or spawn child is waited for through a pidfd (poll(2)
// until it is readable, then waitid(P_PIDFD) reaps it), so join(timeout)
// sleeps in the kernel and several threads may join one child. A forkserver
// child is not our child: the server reaps it and writes its exit status on
// a socket that join() polls instead (forkserver.cpp).
//
// Reaping: the registry holds a strong reference to every started child
// until it is seen finished — by join, is_alive/exitcode, close, the next
// start() (Python's _cleanup), active_children() or the exit handler — so a
// dropped Process's child keeps running and is still joined at exit, and a
// program that starts and drops thousands of children holds only the live
// ones (their pidfds and records), never a pile of zombies.
#include <atomic>
#include <cstdlib>

#include <signal.h>

#include "os/process.hpp"
#include "os/socket.hpp"
#include "process/internal.hpp"

namespace mproc {
namespace detail {

namespace {

struct Children {
    std::mutex mu;
    std::vector<std::shared_ptr<ProcessState>> entries;
};
// Replaced in a forked child (ForkSlots); never destroyed, as the exit
// handler uses it.
ForkSlots<Children>& children_slots() {
    static auto* s = new ForkSlots<Children>;
    return *s;
}
Children* children_slot() { return &children_slots().get(); }

std::atomic<pid_t> g_atexit_registered_in{0};

void atexit_handler() { exit_function(); }

// After the child behind st exited: its record, and nothing it no longer needs.
void collect_exit(ProcessState& st) noexcept {
    if (*st.exitcode == 1 && st.exception_fd) {
        try {
            os::rewind(st.exception_fd.get(), "a child's exception record");
            st.exception_record = os::read_all(st.exception_fd.get(), "a child's exception record");
        } catch (...) {
            st.exception_record.clear();  // exception() then says nothing
        }
    }
    st.exception_fd.reset();
    st.target.reset();
}

}  // namespace

void register_child(const std::shared_ptr<ProcessState>& st) {
    Children& c = *children_slot();
    std::lock_guard<std::mutex> g(c.mu);
    c.entries.push_back(st);
}

void unregister_child(const ProcessState* st) {
    Children& c = *children_slot();
    std::shared_ptr<ProcessState> keep;  // destroyed after the lock is released
    std::lock_guard<std::mutex> g(c.mu);
    for (auto it = c.entries.begin(); it != c.entries.end(); ++it) {
        if (it->get() == st) {
            keep = std::move(*it);
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
        if (e->parent == me) out.push_back(e);  // not a plain fork()'s parent's
    return out;
}

void forget_parent_children() { children_slots().renew(); }

std::vector<std::shared_ptr<ProcessState>> reap_finished_children() {
    std::vector<std::shared_ptr<ProcessState>> live;
    for (auto& st : registered_children()) {
        bool alive;
        {
            std::lock_guard<std::mutex> g(st->mu);
            poll_locked(*st);
            alive = st->phase == ProcessState::Phase::started && !st->exitcode;
        }
        if (alive) live.push_back(std::move(st));
        else unregister_child(st.get());
    }
    return live;
}

void ensure_exit_handler() {
    pid_t me = os::pid();
    // Read first: a write would cost a page fault per start after a fork.
    if (g_atexit_registered_in.load(std::memory_order_relaxed) == me) return;
    if (g_atexit_registered_in.exchange(me) != me) std::atexit(atexit_handler);
}

void poll_locked(ProcessState& st) {
    if (st.exitcode || st.phase != ProcessState::Phase::started) return;
    if (st.method == StartMethod::forkserver) {
        std::int32_t code = 0;
        auto r = os::recv_some(st.status.get(), {reinterpret_cast<std::byte*>(&code), sizeof code});
        if (!r) return;  // no status yet
        // End of stream without a status: the fork server died (Python says 255).
        st.exitcode = (*r == sizeof code) ? code : 255;
    } else {
        st.exitcode = os::reap(st.pidfd.get(), false);
    }
    if (st.exitcode) collect_exit(st);
}

bool join_state(ProcessState& st, Timeout timeout) {
    using Phase = ProcessState::Phase;
    int wait_fd;
    {
        std::lock_guard<std::mutex> g(st.mu);
        if (st.phase == Phase::closed) throw ValueError("mproc::Process \"" + st.name + "\" is closed");
        if (st.phase != Phase::started) throw Error("mproc::Process: can only join a started process");
        if (st.parent != os::pid())
            throw Error("mproc::Process: can only join a child process (\"" + st.name +
                        "\" was started by process " + std::to_string(st.parent) + ")");
        if (!st.exitcode) wait_fd = st.method == StartMethod::forkserver ? st.status.get() : st.pidfd.get();
        else wait_fd = -1;
    }
    if (wait_fd >= 0) {
        // The fd stays open until the state dies, so another thread reaping
        // meanwhile cannot make this poll watch a reused number.
        if (!os::wait_readable(wait_fd, os::Deadline::after(timeout))) return false;
        std::lock_guard<std::mutex> g(st.mu);
        poll_locked(st);
        if (!st.exitcode) return false;  // woken, yet not reapable: treat as a timeout
    }
    unregister_child(&st);
    return true;
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
    run_child_setup_exits();
}

}  // namespace detail

std::vector<Process> active_children() {
    std::vector<Process> out;
    for (auto& st : detail::reap_finished_children()) out.push_back(Process(std::move(st)));
    return out;
}

}  // namespace mproc
