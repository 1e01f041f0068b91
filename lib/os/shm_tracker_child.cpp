// The shared-memory tracker's own process: the clone and everything the
// child runs after it. See shm_tracker.hpp for what the tracker is.
//
// The child is a copy of a process that may have had other threads, each
// possibly inside a lock at the instant of the clone. Those locks stay held
// in the child forever. So the child must touch nothing that could wait on
// one: no malloc, no stdio, no exceptions, and no libc function that a
// sanitizer or a preloaded library might intercept. A ThreadSanitizer build
// showed why the last rule matters: its _exit() (and its recv, close, open,
// memcpy, ...) take the runtime's own locks, and a clone made while the
// creator's main thread was inside fork() (which holds them all) hung in
// _exit forever, keeping the creator's names alive.
//
// Hence this file: every system call is made through syscall(2), which no
// runtime intercepts; bytes are copied and compared by hand; and the file
// is built with -fno-sanitize=all (CMakeLists.txt), so no instrumentation
// runs in the child either.
#include "os/shm_tracker_child.hpp"

#include <cerrno>
#include <cstddef>

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "os/shm_tracker.hpp"

namespace mproc::os::shm_tracker {

namespace {

// A system call's result, or -errno.
template <class... Args>
long sys(long number, Args... args) noexcept {
    long r = ::syscall(number, args...);
    return r < 0 ? -errno : r;
}

// Byte loops through a volatile pointer: a compiler may not turn them into
// calls of memcpy or strcmp, which an interceptor may own.
void copy(void* to, const void* from, std::size_t n) noexcept {
    auto* d = static_cast<volatile char*>(to);
    const auto* s = static_cast<const char*>(from);
    for (std::size_t i = 0; i < n; ++i) d[i] = s[i];
}

bool same(const char* a, const char* b) noexcept {
    for (const volatile char* p = a;; ++p, ++b) {
        if (*p != *b) return false;
        if (*p == '\0') return true;
    }
}

std::size_t length_of(const char* s) noexcept {
    std::size_t n = 0;
    for (const volatile char* p = s; *p != '\0'; ++p) ++n;
    return n;
}

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

bool valid_name(const Request& r) noexcept {
    if (r.length == 0 || r.length > NAME_MAX || r.name[r.length] != '\0') return false;
    for (std::uint32_t i = 0; i < r.length; ++i)
        if (r.name[i] == '/' || r.name[i] == '\0') return false;
    return !(r.length == 1 && r.name[0] == '.') && !(r.length == 2 && r.name[0] == '.' && r.name[1] == '.');
}

// "/dev/shm/<name>" into `path` (NAME_MAX + sizeof kShmDir bytes).
void path_of(const char* name, std::size_t length, char* path) noexcept {
    copy(path, kShmDir, sizeof kShmDir - 1);
    copy(path + sizeof kShmDir - 1, name, length);
    path[sizeof kShmDir - 1 + length] = '\0';
}

Record* find(Table& t, const char* name) noexcept {
    for (std::size_t i = 0; i < t.count; ++i)
        if (same(t.rows[i].name, name)) return &t.rows[i];
    return nullptr;
}

// Records (or re-records) a name; false if out of memory.
bool put(Table& t, const Request& r, std::uint64_t dev, std::uint64_t ino) noexcept {
    Record* row = find(t, r.name);
    if (!row) {
        if (t.count == t.capacity) {
            std::size_t grown = t.capacity ? t.capacity * 2 : 64;
            long p = t.rows ? sys(SYS_mremap, t.rows, t.capacity * sizeof(Record), grown * sizeof(Record),
                                  MREMAP_MAYMOVE)
                            : sys(SYS_mmap, nullptr, grown * sizeof(Record), PROT_READ | PROT_WRITE,
                                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0L);
            if (p < 0) return false;
            t.rows = reinterpret_cast<Record*>(p);
            t.capacity = grown;
        }
        row = &t.rows[t.count++];
        copy(row->name, r.name, r.length + 1);
    }
    row->dev = dev;
    row->ino = ino;
    return true;
}

void drop(Table& t, const char* name) noexcept {
    if (Record* row = find(t, name)) {
        --t.count;
        if (row != &t.rows[t.count]) copy(row, &t.rows[t.count], sizeof(Record));
    }
}

void reply(int sock, const Reply& r) noexcept {
    while (sys(SYS_sendto, sock, &r, sizeof r, MSG_NOSIGNAL, nullptr, 0) == -EINTR) {
    }
}

// lstat(2) by a call every architecture has.
long stat_of(const char* path, struct stat* st) noexcept {
    return sys(SYS_newfstatat, AT_FDCWD, path, st, AT_SYMLINK_NOFOLLOW);
}

void reserve(int sock, Table& t, const Request& r) noexcept {
    char path[sizeof kShmDir + NAME_MAX];
    path_of(r.name, r.length, path);
    Reply answer;
    answer.seq = r.seq;
    long fd;
    do fd = sys(SYS_openat, AT_FDCWD, path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    while (fd == -EINTR);
    if (fd < 0) {
        answer.err = static_cast<std::int32_t>(-fd);
    } else {
        struct stat st;  // not zeroed: the kernel fills it, and zeroing may be a memset call
        long e = sys(SYS_fstat, fd, &st);
        if (e < 0 || !put(t, r, st.st_dev, st.st_ino)) {
            answer.err = static_cast<std::int32_t>(e < 0 ? -e : ENOMEM);
            sys(SYS_unlinkat, AT_FDCWD, path, 0);  // not recorded, so not made
        } else {
            answer.dev = st.st_dev;
            answer.ino = st.st_ino;
        }
        sys(SYS_close, fd);
    }
    reply(sock, answer);
}

// The creator is gone: unlink what is still ours.
void unlink_all(const Table& t) noexcept {
    for (std::size_t i = 0; i < t.count; ++i) {
        char path[sizeof kShmDir + NAME_MAX];
        path_of(t.rows[i].name, length_of(t.rows[i].name), path);
        struct stat st;
        if (stat_of(path, &st) == 0 && static_cast<std::uint64_t>(st.st_dev) == t.rows[i].dev &&
            static_cast<std::uint64_t>(st.st_ino) == t.rows[i].ino)
            sys(SYS_unlinkat, AT_FDCWD, path, 0);
    }
}

[[noreturn]] void serve(int sock) noexcept {
    Table table;
    Reply hello;
    hello.pid = static_cast<std::int32_t>(sys(SYS_getpid));
    reply(sock, hello);
    // Received into raw bytes: a Request's own initialisers would be a
    // memset call.
    alignas(Request) unsigned char bytes[sizeof(Request)];
    const auto& r = *reinterpret_cast<const Request*>(bytes);
    for (;;) {
        long n = sys(SYS_recvfrom, sock, bytes, sizeof bytes, 0, nullptr, nullptr);
        if (n == -EINTR) continue;
        if (n <= 0) break;  // end of stream (or a reset): the creator is gone
        if (static_cast<std::size_t>(n) != sizeof bytes || !valid_name(r)) continue;  // not ours to judge: skip
        switch (r.op) {
            case Op::reserve: reserve(sock, table, r); break;
            case Op::adopt: put(table, r, r.dev, r.ino); break;
            case Op::forget: drop(table, r.name); break;
        }
    }
    unlink_all(table);
    for (;;) sys(SYS_exit_group, 0);
}

// The kernel's struct sigaction, as rt_sigaction(2) takes it: only SIG_IGN
// and SIG_DFL are set here, so no restorer is needed.
struct KernelSigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)();
    std::uint64_t mask;
};

// The state a tracker starts from: only its socket, no signals that a
// terminal or a process group kill would send, no directory held.
void detach(int keep) noexcept {
    sys(SYS_setsid);
    if (keep > 0) sys(SYS_close_range, 0U, static_cast<unsigned>(keep) - 1, 0U);
    sys(SYS_close_range, static_cast<unsigned>(keep) + 1, ~0U, 0U);
    for (int sig = 1; sig < NSIG; ++sig) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        bool ignored = sig == SIGINT || sig == SIGTERM || sig == SIGHUP || sig == SIGQUIT ||
                       sig == SIGPIPE || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
        KernelSigaction action;  // set field by field: an aggregate's zeroing may be a memset call
        action.handler = ignored ? SIG_IGN : SIG_DFL;
        action.flags = 0;
        action.restorer = nullptr;
        action.mask = 0;
        sys(SYS_rt_sigaction, sig, &action, nullptr, sizeof action.mask);
    }
    std::uint64_t none = 0;
    sys(SYS_rt_sigprocmask, SIG_SETMASK, &none, nullptr, sizeof none);
    // Holding the old directory costs nothing but an unmount; a failure is
    // no reason to stop.
    sys(SYS_chdir, "/");
}

}  // namespace

pid_t clone_tracker(int sock) noexcept {
    // fork(), less its exit signal and its atfork handlers: clone(flags 0).
    long pid = sys(SYS_clone, 0UL, nullptr, nullptr, nullptr, 0UL);
    if (pid == 0) {
        detach(sock);
        serve(sock);
    }
    return pid < 0 ? -1 : static_cast<pid_t>(pid);  // errno is syscall(2)'s
}

}  // namespace mproc::os::shm_tracker
