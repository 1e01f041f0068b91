// The shared-memory name tracker process. See shm_tracker.hpp.
//
// Everything in the child, from the clone on, is an async-signal-safe
// system call on stack or mmap'd memory: no malloc, no
// locks, no stdio, no C++ exceptions (the parent may have had threads, and
// any lock another thread held at the fork stays held in the child).
#include "os/shm_tracker.hpp"

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "os/process.hpp"
#include "os/socket.hpp"

namespace mproc::os::shm_tracker {

namespace {

constexpr char kShmDir[] = "/dev/shm/";

struct Record {
    std::uint64_t dev;
    std::uint64_t ino;
    char name[NAME_MAX + 1];
};

// The record: an array in mmap'd pages, grown by mremap.
struct Table {
    Record* rows = nullptr;
    std::size_t count = 0;
    std::size_t capacity = 0;
};

bool valid_name(const Request& r) {
    if (r.length == 0 || r.length > NAME_MAX || r.name[r.length] != '\0') return false;
    for (std::uint32_t i = 0; i < r.length; ++i)
        if (r.name[i] == '/' || r.name[i] == '\0') return false;
    return !(r.length == 1 && r.name[0] == '.') && !(r.length == 2 && r.name[0] == '.' && r.name[1] == '.');
}

// "/dev/shm/<name>" into `path` (NAME_MAX + sizeof kShmDir bytes).
void path_of(const char* name, std::size_t length, char* path) {
    std::memcpy(path, kShmDir, sizeof kShmDir - 1);
    std::memcpy(path + sizeof kShmDir - 1, name, length);
    path[sizeof kShmDir - 1 + length] = '\0';
}

Record* find(Table& t, const char* name) {
    for (std::size_t i = 0; i < t.count; ++i)
        if (std::strcmp(t.rows[i].name, name) == 0) return &t.rows[i];
    return nullptr;
}

// Records (or re-records) a name; false if out of memory.
bool put(Table& t, const Request& r, std::uint64_t dev, std::uint64_t ino) {
    Record* row = find(t, r.name);
    if (!row) {
        if (t.count == t.capacity) {
            std::size_t grown = t.capacity ? t.capacity * 2 : 64;
            void* p = t.rows ? ::mremap(t.rows, t.capacity * sizeof(Record), grown * sizeof(Record), MREMAP_MAYMOVE)
                             : ::mmap(nullptr, grown * sizeof(Record), PROT_READ | PROT_WRITE,
                                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED) return false;
            t.rows = static_cast<Record*>(p);
            t.capacity = grown;
        }
        row = &t.rows[t.count++];
        std::memcpy(row->name, r.name, r.length + 1);
    }
    row->dev = dev;
    row->ino = ino;
    return true;
}

void drop(Table& t, const char* name) {
    if (Record* row = find(t, name)) *row = t.rows[--t.count];
}

void reply(int sock, const Reply& r) {
    while (::send(sock, &r, sizeof r, MSG_NOSIGNAL) < 0 && errno == EINTR) {
    }
}

void reserve(int sock, Table& t, const Request& r) {
    char path[sizeof kShmDir + NAME_MAX];
    path_of(r.name, r.length, path);
    Reply answer;
    answer.seq = r.seq;
    int fd;
    do fd = ::open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        answer.err = errno;
    } else {
        struct stat st {};
        if (::fstat(fd, &st) != 0 || !put(t, r, st.st_dev, st.st_ino)) {
            answer.err = errno ? errno : ENOMEM;
            ::unlink(path);  // not recorded, so not made
        } else {
            answer.dev = st.st_dev;
            answer.ino = st.st_ino;
        }
        ::close(fd);
    }
    reply(sock, answer);
}

// The creator is gone: unlink what is still ours.
void unlink_all(const Table& t) {
    for (std::size_t i = 0; i < t.count; ++i) {
        char path[sizeof kShmDir + NAME_MAX];
        path_of(t.rows[i].name, std::strlen(t.rows[i].name), path);
        struct stat st {};
        if (::lstat(path, &st) == 0 && static_cast<std::uint64_t>(st.st_dev) == t.rows[i].dev &&
            static_cast<std::uint64_t>(st.st_ino) == t.rows[i].ino)
            ::unlink(path);
    }
}

[[noreturn]] void serve(int sock) {
    Table table;
    Reply hello;
    hello.pid = static_cast<std::int32_t>(::syscall(SYS_getpid));
    reply(sock, hello);
    for (;;) {
        Request r;
        ssize_t n = ::recv(sock, &r, sizeof r, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;  // end of stream (or a reset): the creator is gone
        if (static_cast<std::size_t>(n) != sizeof r || !valid_name(r)) continue;  // not ours to judge: skip
        switch (r.op) {
            case Op::reserve: reserve(sock, table, r); break;
            case Op::adopt: put(table, r, r.dev, r.ino); break;
            case Op::forget: drop(table, r.name); break;
        }
    }
    unlink_all(table);
    ::_exit(0);
}

// The state a tracker starts from: only its socket, no signals that a
// terminal or a process group kill would send, no directory held.
void detach(int keep) {
    ::setsid();
    if (keep > 0) close_range(0, static_cast<unsigned>(keep) - 1);
    close_range(static_cast<unsigned>(keep) + 1, ~0U);
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        bool ignored = sig == SIGINT || sig == SIGTERM || sig == SIGHUP || sig == SIGQUIT ||
                       sig == SIGPIPE || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
        ::sigaction(sig, ignored ? &ignore : &dfl, nullptr);
    }
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (::chdir("/") != 0) {
        // Holding the old directory costs nothing but an unmount; go on.
    }
}

}  // namespace

Started start(const Deadline& deadline) {
    auto [mine, theirs] = socket_pair(SocketKind::seqpacket);
    // fork(), less its exit signal and its atfork handlers: clone(flags 0).
    // The child never returns from here.
    const auto pid = static_cast<pid_t>(::syscall(SYS_clone, 0UL, nullptr, nullptr, nullptr, 0UL));
    if (pid < 0) throw_errno("clone", "shared-memory tracker");
    if (pid == 0) {
        detach(theirs.get());
        serve(theirs.get());
    }
    theirs.reset();
    std::optional<Reply> hello;
    try {
        hello = receive(mine.get(), deadline);
    } catch (...) {
        ::kill(pid, SIGKILL);
        reap(pid, true);
        throw;
    }
    if (!hello || hello->pid != pid) {
        reap(pid, true);
        throw OSError("mproc's shared-memory tracker process died as it started; tracked "
                      "SharedMemory::create needs one: create with {.track = false} and unlink() "
                      "yourself",
                      EIO);
    }
    return Started{std::move(mine), pid};
}

bool send(int sock, const Request& r) noexcept {
    for (;;) {
        if (::send(sock, &r, sizeof r, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof r)) return true;
        if (errno != EINTR) return false;
    }
}

std::optional<Reply> receive(int sock, const Deadline& deadline) {
    for (;;) {
        Reply r;
        ssize_t n = ::recv(sock, &r, sizeof r, MSG_DONTWAIT);
        if (n == static_cast<ssize_t>(sizeof r)) return r;
        if (n == 0 || (n < 0 && errno == ECONNRESET)) return std::nullopt;
        if (n > 0) throw Error("mproc internal: a short reply from the shared-memory tracker");
        if (errno == EINTR) continue;
        if (errno != EAGAIN) throw_errno("recv", "shared-memory tracker socket");
        if (!wait_readable(sock, deadline))
            throw TimeoutError("mproc's shared-memory tracker did not answer in time (is it stopped?)");
    }
}

bool finish(int sock, const Deadline& deadline) noexcept {
    ::shutdown(sock, SHUT_WR);
    try {
        while (receive(sock, deadline)) {
        }
        return true;
    } catch (...) {
        return false;  // timed out: it still unlinks at our exit, only later
    }
}

void reap(pid_t pid, bool block) noexcept {
    if (pid <= 0) return;
    // ECHILD is fine: a __WALL waiter of the program's may have reaped it.
    while (::waitpid(pid, nullptr, __WCLONE | (block ? 0 : WNOHANG)) < 0 && errno == EINTR) {
    }
}

}  // namespace mproc::os::shm_tracker
