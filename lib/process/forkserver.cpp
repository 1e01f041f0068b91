// The forkserver start method: a helper process that forks children on
// request from a clean, single-threaded state.
//
// Starting: the first forkserver start() spawns /proc/self/exe with
// MPROC_FORKSERVER=<fd> (spawn.cpp); that process's mproc::init() becomes
// the server, holding one end of a stream socket whose other end stays in
// the parent (close-on-exec, and closed in children the parent forks).
//
// A request is one message on that socket:
//     RequestHeader, int32 target fd numbers[handle_fds], payload bytes
// carrying, attached to its first byte (SCM_RIGHTS): a status socket, the
// parent's stdin/stdout/stderr (those that are open, per stdio_mask), its
// current directory, and the fds the arguments' handles use. So a child
// writes where the parent writes now and resolves relative paths as the
// parent does now, not as they were when the server started. The payload is the spawn payload
// (payload.cpp); the server does not read it.
//
// The server forks; the child closes the server's fds, moves the received
// fds onto the parent's numbers (first all above the highest target, then
// dup2 onto each target, so no fd overwrites one still needed), and runs the
// payload like a spawned child. The server answers on the status socket (a
// SOCK_SEQPACKET pair made per child): first {pid} with a pidfd for the
// child attached (so the parent can signal it without pid-reuse races, though
// it is not its child), later {exit code} once the server has reaped it
// (SIGCHLD through a signalfd), and then closes it. join() polls that socket;
// its end of stream without a status means the server died (exit code 255,
// as in Python).
//
// Lifetime: the server exits at end of stream on the request socket, i.e.
// when the parent process is gone, however it went (kill -9 included), or
// when the parent's exit handler closes it. (A child of the parent made by
// a plain fork() holds a copy of that socket; so a server started from the
// parent's main thread also takes PR_SET_PDEATHSIG(SIGKILL).) Daemon children have
// PR_SET_PDEATHSIG(SIGKILL) towards the single-threaded server, so they
// die with it. The server ignores SIGINT (Ctrl-C is the parent's to handle);
// its children get the default back.
#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdio>
#include <cstring>
#include <map>

#include <signal.h>

#include "os/process.hpp"
#include "os/socket.hpp"
#include "process/internal.hpp"

namespace mproc::detail {

pid_t spawn_forkserver_process(int control_fd);

namespace {

constexpr std::uint32_t kRequestMagic = 0x4d504653;  // "MPFS"

struct RequestHeader {
    std::uint32_t magic = kRequestMagic;
    std::uint32_t handle_fds = 0;
    std::uint32_t stdio_mask = 0;  // bit i: fd i travels
    std::uint32_t has_cwd = 0;     // an O_PATH fd of the current directory travels
    std::uint64_t payload_size = 0;
};

// The parent's connection to its server.
struct Server {
    std::mutex mu;
    std::atomic<pid_t> owner{0};  // the process that started the server
    pid_t pid = 0;
    os::Fd pidfd;
    os::Fd control;
};
// Replaced, not destroyed, in a forked child (ForkSlots). Function-local,
// so that static initializers may start children.
std::atomic<bool> g_server_slots_made{false};
ForkSlots<Server>& server_slots() {
    static auto* s = [] {
        g_server_slots_made = true;
        return new ForkSlots<Server>;
    }();
    return *s;
}

// This process's connection. A child made by a plain fork() (not through
// mproc) holds a copy of its parent's: it must not talk to that server
// (its children would not be its children, nor die with it), so it starts
// its own.
Server& server() {
    Server* s = &server_slots().get();
    pid_t owner = s->owner.load();
    if (owner != 0 && owner != os::pid()) {
        forkserver_forget();
        s = &server_slots().get();
    }
    return *s;
}

void stop_locked(Server& s) noexcept {
    s.control.reset();
    if (s.pidfd) {
        try {
            os::reap(s.pidfd.get(), true);
        } catch (...) {
        }
        s.pidfd.reset();
    }
    s.pid = 0;
}

void ensure_running_locked(Server& s) {
    if (s.control) {
        if (!os::wait_readable(s.pidfd.get(), os::Deadline::after(Duration(0)))) return;
        stop_locked(s);  // it died: reap it and start another
    }
    auto [mine, theirs] = os::socket_pair(os::SocketKind::stream);
    pid_t pid = spawn_forkserver_process(theirs.get());
    s.pidfd = os::pidfd_open(pid);
    s.pid = pid;
    s.control = std::move(mine);
    s.owner = os::pid();
}

}  // namespace

void start_forkserver(ProcessState& st, const ChildInfo& info, const SpawnTarget& target,
                      const std::vector<int>& fds) {
    std::vector<std::byte> payload = encode_payload(info, target);
    RequestHeader h;
    std::vector<int> send_fds;
    auto [mine, theirs] = os::socket_pair(os::SocketKind::seqpacket);
    send_fds.push_back(theirs.get());
    for (int i = 0; i < 3; ++i) {
        if (os::fd_is_open(i)) {
            h.stdio_mask |= 1u << i;
            send_fds.push_back(i);
        }
    }
    os::Fd cwd = os::open_cwd();
    if (cwd) {
        h.has_cwd = 1;
        send_fds.push_back(cwd.get());
    }
    for (int fd : fds) send_fds.push_back(fd);
    h.handle_fds = static_cast<std::uint32_t>(fds.size());
    h.payload_size = payload.size();
    std::vector<std::byte> msg(sizeof h + fds.size() * sizeof(std::int32_t) + payload.size());
    std::memcpy(msg.data(), &h, sizeof h);
    for (std::size_t i = 0; i < fds.size(); ++i) {
        std::int32_t t = fds[i];
        std::memcpy(msg.data() + sizeof h + i * sizeof t, &t, sizeof t);
    }
    std::memcpy(msg.data() + sizeof h + fds.size() * sizeof(std::int32_t), payload.data(), payload.size());
    {
        Server& s = server();
        std::lock_guard<std::mutex> g(s.mu);
        for (int attempt = 0;; ++attempt) {
            ensure_running_locked(s);
            try {
                os::send_with_fds(s.control.get(), msg, send_fds);
                break;
            } catch (const EOFError&) {
                stop_locked(s);  // died since the check: one more try with a new server
                if (attempt == 1) throw Error("mproc: the fork server exited while starting a child");
            }
        }
    }
    theirs.reset();
    std::int32_t pid = 0;
    std::vector<os::Fd> got;
    std::size_t n = os::recv_with_fds(mine.get(), {reinterpret_cast<std::byte*>(&pid), sizeof pid}, got);
    if (n != sizeof pid) throw Error("mproc: the fork server exited before starting the child");
    if (pid < 0) os::throw_errno("fork", "in the fork server", -pid);
    if (got.size() != 1) throw Error("mproc internal: the fork server sent no pidfd");
    std::lock_guard<std::mutex> g(st.mu);
    st.pid = pid;
    st.pidfd = std::move(got[0]);
    st.status = std::move(mine);
}

void forkserver_shutdown() noexcept {
    if (!g_server_slots_made.load()) return;  // none was ever started here
    Server& s = server();
    std::lock_guard<std::mutex> g(s.mu);
    stop_locked(s);
}

void forkserver_forget() noexcept {
    // The parent's connection is not ours; another thread of the parent may
    // have held its mutex at fork. Close our copies (so the server still
    // sees the parent's exit) and start afresh.
    if (!g_server_slots_made.load()) return;  // no fork server was ever used here
    Server& old = server_slots().get();
    if (old.owner.load() == 0 && !old.control && !old.pidfd) return;  // never started one
    os::Fd(old.control.release());
    os::Fd(old.pidfd.release());
    server_slots().renew();
}

// ---- the server -----------------------------------------------------------

namespace {

struct Request {
    os::Fd status;
    std::vector<os::Fd> fds;   // stdio then handles
    std::vector<int> targets;  // where each of fds goes in the child
    os::Fd cwd;
    std::vector<std::byte> payload;
};

// False at end of stream: the parent is gone.
bool read_request(int control, Request& req) {
    RequestHeader h;
    std::vector<os::Fd> fds;
    std::size_t n = os::recv_with_fds(control, {reinterpret_cast<std::byte*>(&h), sizeof h}, fds);
    if (n == 0) return false;
    if (n < sizeof h &&
        !os::recv_exact(control, {reinterpret_cast<std::byte*>(&h) + n, sizeof h - n}))
        return false;
    if (h.magic != kRequestMagic) throw Error("bad request header");
    std::size_t nstdio = static_cast<std::size_t>(std::popcount(h.stdio_mask & 7u));
    if (h.has_cwd > 1 || fds.size() != 1 + nstdio + h.has_cwd + h.handle_fds)
        throw Error("request carries the wrong number of fds");
    std::vector<std::int32_t> targets(h.handle_fds);
    if (!targets.empty() &&
        !os::recv_exact(control, {reinterpret_cast<std::byte*>(targets.data()), targets.size() * sizeof(std::int32_t)}))
        return false;
    req.payload.resize(h.payload_size);
    if (!req.payload.empty() && !os::recv_exact(control, req.payload)) return false;
    req.status = std::move(fds[0]);
    std::size_t next = 1;
    for (int i = 0; i < 3; ++i) {
        if (h.stdio_mask & (1u << i)) {
            req.fds.push_back(std::move(fds[next++]));
            req.targets.push_back(i);
        }
    }
    if (h.has_cwd) req.cwd = std::move(fds[next++]);
    for (; next < fds.size(); ++next) req.fds.push_back(std::move(fds[next]));
    for (auto t : targets) {
        if (t < 0) throw Error("bad fd number in request");
        req.targets.push_back(t);
    }
    return true;
}

// In the forked child: every received fd onto its number in the parent.
void place_fds(Request& req) {
    int top = 3;
    for (int t : req.targets) top = std::max(top, t + 1);
    std::vector<os::Fd> moved;
    for (auto& f : req.fds) moved.push_back(os::dup_at_least(f.get(), top));
    req.fds.clear();
    for (std::size_t i = 0; i < moved.size(); ++i) os::dup_to(moved[i].get(), req.targets[i]);
}

void send_int(int sock, std::int32_t v, int fd = -1) noexcept {
    try {
        int fds[1] = {fd};
        os::send_with_fds(sock, {reinterpret_cast<const std::byte*>(&v), sizeof v},
                          std::span<const int>(fds, fd >= 0 ? 1 : 0));
    } catch (...) {
        // The parent no longer listens (it died, or closed the Process).
    }
}

}  // namespace

void forkserver_main(int control_fd, pid_t parent) noexcept {
    try {
        os::Fd control(control_fd);
        os::set_inheritable(control_fd, false);
        if (parent != 0) {
            os::set_parent_death_signal(SIGKILL);
            if (os::parent_pid() != parent) os::exit_now(0);  // it died before this line
        }
        os::ignore_signal(SIGINT, true);
        os::block_signal(SIGCHLD, true);
        os::Fd sigchld = os::signal_fd(SIGCHLD);
        std::map<pid_t, os::Fd> status_of;
        const pid_t me = os::pid();
        for (;;) {
            int fds[2] = {control.get(), sigchld.get()};
            bool control_ready = false, sigchld_ready = false;
            for (std::size_t i : os::poll_readable(fds, os::Deadline::never()))
                (i == 0 ? control_ready : sigchld_ready) = true;
            if (sigchld_ready) {
                os::drain_signal_fd(sigchld.get());
                while (auto r = os::reap_any()) {
                    auto it = status_of.find(r->first);
                    if (it == status_of.end()) continue;
                    send_int(it->second.get(), r->second);
                    status_of.erase(it);
                }
            }
            if (!control_ready) continue;
            Request req;
            if (!read_request(control.get(), req)) break;
            const sigset_t mask = os::block_all_signals();  // no handler inside libc's fork
            pid_t pid = -1;
            int fork_errno = 0;
            try {
                pid = os::fork_process();
            } catch (const OSError& e) {
                fork_errno = e.code();
            }
            if (pid == 0) {
                // The child: shed the server's fds, restore signals, take
                // the parent's fds and directory, and run.
                try {
                    os::Fd(control.release());
                    os::Fd(sigchld.release());
                    for (auto& [p, fd] : status_of) os::Fd(fd.release());
                    req.status.reset();
                    os::ignore_signal(SIGINT, false);
                    if (req.cwd) {
                        os::change_dir(req.cwd.get());
                        req.cwd.reset();
                    }
                    place_fds(req);
                    os::restore_signals(mask);
                    os::block_signal(SIGCHLD, false);
                } catch (const std::exception& e) {
                    std::fprintf(stderr, "mproc: a forkserver child could not start: %s\n", e.what());
                    os::flush_stdio();
                    os::exit_now(1);
                }
                run_payload(req.payload, /*forked=*/true, me);
            }
            os::restore_signals(mask);
            if (pid < 0) {
                send_int(req.status.get(), -fork_errno);
                continue;
            }
            try {
                os::Fd pidfd = os::pidfd_open(pid);
                send_int(req.status.get(), pid, pidfd.get());
            } catch (...) {
                send_int(req.status.get(), pid);
            }
            status_of.emplace(pid, std::move(req.status));
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "mproc fork server %d: %s\n", static_cast<int>(os::pid()), e.what());
        os::flush_stdio();
        os::exit_now(1);
    }
    os::exit_now(0);
}

}  // namespace mproc::detail
