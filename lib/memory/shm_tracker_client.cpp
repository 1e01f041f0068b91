// The creator's side of the shared-memory tracker. See shm_tracker_client.hpp.
#include "memory/shm_tracker_client.hpp"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "mproc/detail/shm_tracker.hpp"
#include "mproc/errors.hpp"
#include "os/process.hpp"
#include "os/shm_tracker.hpp"
#include "os/socket.hpp"

namespace mproc::detail {

namespace shm_tracker {
namespace {

namespace wire = os::shm_tracker;

// How long a request may wait for the tracker. It answers after one open()
// and fstat(); this bound only matters for a tracker someone has stopped
// (SIGSTOP), where an error beats hanging the creator.
constexpr Duration kAnswerWithin{10.0};
// How long a normal exit waits for the tracker to unlink this process's
// names; past it the tracker still unlinks them, only after the exit.
constexpr Duration kExitWait{5.0};

struct Client {
    std::mutex mu;
    os::Fd sock;
    pid_t pid = 0;
    std::uint64_t seq = 0;  // of the last reserve
    std::map<std::string, Inode> names;
};

// Never destroyed: the exit handler and atfork handlers use it.
Client& client() {
    static Client* c = new Client;
    return *c;
}

std::atomic<ShmFaultHook> g_fault_hook{nullptr};
std::atomic<bool> g_started{false};  // a tracker was started in this program

void at_exit() {
    if (!g_started.load()) return;
    Client& c = client();
    std::lock_guard<std::mutex> g(c.mu);
    if (c.sock) {
        const bool done = wire::finish(c.sock.get(), os::Deadline::after(kExitWait));
        wire::reap(c.pid, done);
    }
    c.sock.reset();
    c.pid = 0;
    c.names.clear();
}

// The exit handler is registered before main, so it runs after every exit
// handler registered later: mproc's own, which joins the children that may
// still attach the names, included (Python, too, unlinks only once the
// process is gone). It does nothing unless a tracker was started.
struct ExitRegistration {
    ExitRegistration() { std::atexit(at_exit); }
} g_exit_registration;

// Registered before main too. prepare holds the mutex across fork, so the
// child's copy of the state is consistent; the child then drops it. Were it
// registered when the first tracker starts (under the mutex), a fork in
// another thread at that moment would give its child a copy of the mutex
// held by a thread the child does not have. It costs every fork one
// uncontended lock.
struct ForkRegistration {
    ForkRegistration() {
        os::hold_across_fork(client().mu, os::kForkRankLeaf, [] {
            Client& c = client();
            c.sock.reset();  // the parent's tracker is the parent's
            c.pid = 0;
            c.names.clear();
        });
    }
} g_fork_registration;

wire::Request request(wire::Op op, const std::string& name, Inode inode = {}) {
    wire::Request r;
    r.op = op;
    r.length = static_cast<std::uint32_t>(name.size());
    r.dev = inode.dev;
    r.ino = inode.ino;
    std::memcpy(r.name, name.data(), name.size());
    return r;
}

// Under c.mu: the tracker is gone (its socket closed): reap it, forget it.
void lost(Client& c) noexcept {
    wire::reap(c.pid, true);
    c.sock.reset();
    c.pid = 0;
}

// Under c.mu: a live tracker, started (or restarted, and told what this
// process tracks) if need be.
int connected(Client& c) {
    if (c.sock && !os::peer_closed(c.sock.get())) return c.sock.get();
    if (c.sock) lost(c);  // it died: reap it, then start another
    g_started.store(true);
    wire::Started s = wire::start(os::Deadline::after(kAnswerWithin));
    for (const auto& [name, inode] : c.names)
        if (!wire::send(s.sock.get(), request(wire::Op::adopt, name, inode)))
            throw OSError("mproc's shared-memory tracker died as it started", EIO);
    c.sock = std::move(s.sock);
    c.pid = s.pid;
    return c.sock.get();
}

}  // namespace

Inode reserve(const std::string& name) {
    if (name.size() > NAME_MAX) throw ValueError("shared memory name longer than NAME_MAX: " + name);
    Client& c = client();
    std::lock_guard<std::mutex> g(c.mu);
    wire::Request r = request(wire::Op::reserve, name);
    r.seq = ++c.seq;
    int sock = connected(c);
    if (!wire::send(sock, r)) {
        lost(c);  // it had just died: start another, once
        sock = connected(c);
        if (!wire::send(sock, r)) throw OSError("mproc's shared-memory tracker keeps dying", EIO);
    }
    const os::Deadline deadline = os::Deadline::after(kAnswerWithin);
    std::optional<wire::Reply> answer;
    do answer = wire::receive(sock, deadline);  // skips a late answer to an earlier, timed-out request
    while (answer && answer->seq != r.seq);
    if (!answer) {
        lost(c);
        throw OSError("SharedMemory::create(\"" + name + "\"): mproc's shared-memory tracker died "
                      "while making the name; if it exists now, unlink it",
                      EIO);
    }
    if (answer->err != 0) os::throw_errno("shm_open", "\"/" + name + "\"", answer->err);
    Inode inode{answer->dev, answer->ino};
    c.names[name] = inode;
    return inode;
}

void forget(const std::string& name) noexcept {
    Client& c = client();
    std::lock_guard<std::mutex> g(c.mu);
    if (c.names.erase(name) == 0) return;
    if (c.sock) wire::send(c.sock.get(), request(wire::Op::forget, name));
}

void fault_point(const char* point) noexcept {
    if (ShmFaultHook hook = g_fault_hook.load()) hook(point);
}

}  // namespace shm_tracker

int shm_tracker_pid() noexcept {
    shm_tracker::Client& c = shm_tracker::client();
    std::lock_guard<std::mutex> g(c.mu);
    return c.sock ? c.pid : 0;
}

void set_shm_fault_hook(ShmFaultHook hook) noexcept { shm_tracker::g_fault_hook.store(hook); }

}  // namespace mproc::detail
