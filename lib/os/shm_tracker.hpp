// The os layer's shared-memory name tracker: a helper process that makes
// /dev/shm names on behalf of one creator process and unlinks them when the
// creator is gone, however it went (kill -9 included). Internal header; the
// client that decides what to track is lib/memory/shm_tracker_client.cpp.
//
// Why a process: nothing in a process outlives its kill -9, so whatever
// unlinks a crashed creator's names must live outside it (Python's
// resource_tracker is the same idea). The tracker learns of the creator's
// death through its end of a SOCK_SEQPACKET socket pair: when the last copy
// of the creator's end closes — and the kernel closes it at the creator's
// death, or exec — recv() returns 0, and the tracker unlinks every name it
// still holds and exits.
//
// Why the tracker creates the names itself (Request::reserve): a name made
// by the creator and then reported would leak if the creator died between
// the two steps; a name reported first and then made would be unlinked by
// mistake when the make failed (someone else's segment of the same name) and
// the creator died before withdrawing it. The tracker's open(O_CREAT|O_EXCL)
// and its record are one step of one process, so there is no window: a name
// is in the record if and only if the tracker made it. It records the inode
// too, and unlinks a name at the end only if it still names that inode, so a
// name that someone unlinked and someone else made again is left alone.
//
// How it starts without mproc::init and in multi-threaded programs: start()
// clones the process like fork() but with no exit signal, and the child
// uses only system calls and no heap (the record lives in mmap'd pages), as
// POSIX requires after a fork in a multi-threaded process; no atfork handler
// runs. Its system calls go through syscall(2), never a libc wrapper that a
// sanitizer could intercept, and its code is not instrumented
// (shm_tracker_child.cpp). No exit signal makes it a "clone child": the
// creator gets no SIGCHLD for it, and the program's own wait(),
// waitpid(-1, ...) and waitid(P_ALL, ...) never see it (only __WCLONE or
// __WALL waits do), so it cannot disturb a program that reaps its children.
// The creator reaps it itself (reap()) after a normal exit's finish() and
// when it restarts a tracker that died; if the creator is killed, the
// kernel hands it to init (or the nearest subreaper) with SIGCHLD restored,
// which reaps it when it exits. It makes its own session (so Ctrl-C, a
// terminal hang-up or a kill of the creator's process group does not reach
// it), closes every fd but its socket, ignores SIGINT/SIGTERM/SIGHUP/
// SIGQUIT/SIGPIPE and the terminal stop signals, and holds no directory.
//
// Lifetime: it exits right after the creator's end closes, so it outlives the
// creator by the time a few unlink() calls take. The creator's end is
// close-on-exec, and the memory layer closes it in forked children (atfork),
// so no other process keeps the tracker alive. A creator that execs another
// program ends its tracking there (the exec closes its end): the tracker
// unlinks and exits, and stays a zombie of the new program, invisible to its
// wait(), until that program exits.
#pragma once

#include <climits>
#include <cstdint>
#include <optional>

#include <sys/types.h>

#include "os/os.hpp"

namespace mproc::os::shm_tracker {

enum class Op : std::uint32_t {
    reserve = 1,  // make /dev/shm/<name> (O_EXCL, mode 0600 less umask), record it, reply
    adopt = 2,    // record <name> as naming (dev, ino) (a restarted tracker's catch-up)
    forget = 3,   // drop <name> from the record (the creator unlinked it)
};

struct Request {
    Op op = Op::reserve;
    std::uint32_t length = 0;  // bytes of name, without the NUL
    std::uint64_t seq = 0;     // reserve: echoed in the reply
    std::uint64_t dev = 0;     // adopt only
    std::uint64_t ino = 0;
    char name[NAME_MAX + 1] = {};
};

/// The answer to reserve; also sent once, unasked, when the tracker starts
/// (err 0, pid set), so the creator knows it is up and who it is.
struct Reply {
    std::int32_t err = 0;  // 0 or the errno of the tracker's open()
    std::int32_t pid = 0;
    std::uint64_t seq = 0;  // the request's (0 for the greeting): a reply
                            // that comes after its request timed out is
                            // told apart from the next one's
    std::uint64_t dev = 0;
    std::uint64_t ino = 0;
};

struct Started {
    Fd sock;      // the creator's end (close-on-exec)
    pid_t pid = 0;
};

/// Starts a tracker. Throws OSError if it cannot (no processes, no fds), or
/// if it does not report within `deadline`.
Started start(const Deadline& deadline);

/// Sends one request. False if the tracker is gone.
bool send(int sock, const Request& r) noexcept;

/// The next reply; nullopt if the tracker is gone. TimeoutError at the
/// deadline.
std::optional<Reply> receive(int sock, const Deadline& deadline);

/// Tells the tracker this creator is done (shutdown(SHUT_WR): the same end
/// of stream its death would give) and waits until the tracker has unlinked
/// every name and closed its end (true), or the deadline passes (false).
/// The caller then closes the socket.
bool finish(int sock, const Deadline& deadline) noexcept;

/// Reaps a tracker this process started (waitpid with __WCLONE); with
/// `block`, waits for it to exit (call it only once its socket has closed).
void reap(pid_t pid, bool block) noexcept;

}  // namespace mproc::os::shm_tracker
