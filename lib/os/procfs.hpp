// The os layer's view of other processes through /proc, for mproc-top:
// which processes the caller may see, which files they hold open and map
// shared, and a read-only look at one of those files. Nothing here writes
// to another process or its memory.
//
// Every answer is a snapshot: a process may exit, or close or open files,
// while it is being read; such a process is skipped or read in part, never
// an error. A process the caller may not inspect (another user's, without
// privilege) shows up in list_processes() but holds nothing.
//
// Internal header: never included by a public header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

#include "os/os.hpp"

namespace mproc::os {

/// Every process id in /proc, ascending.
std::vector<pid_t> list_processes();

/// A file a process holds: through an fd, or a MAP_SHARED mapping.
struct HeldFile {
    FileId id;          // dev and inode (size: 0 from a mapping)
    std::string path;   // the link text: "/memfd:mproc-queue (deleted)", "/dev/shm/name"
    int fd = -1;        // the fd number, or -1 for a mapping
};
/// What `pid` holds: its fds (/proc/pid/fd) and shared mappings
/// (/proc/pid/maps, one entry per file). Empty if it is gone or hidden.
std::vector<HeldFile> held_files(pid_t pid);

/// The name of a memfd from its link text ("/memfd:NAME (deleted)"), or
/// nullopt for any other file.
std::optional<std::string> memfd_name(const std::string& path);

/// /proc/pid/comm, or "" if gone.
std::string process_name(pid_t pid);
/// The process (thread group) a thread id belongs to; 0 if no such thread.
pid_t process_of_thread(pid_t tid);
/// The parent of `pid`; 0 if gone.
pid_t parent_of(pid_t pid);

/// What /proc/<tid>/stat says of a thread id, for a lock whose word names
/// its owner (sync/owner_lock.hpp). gone: no such thread, or a zombie (it
/// holds nothing any more); alive: a thread with this id runs, started
/// `start_ticks` clock ticks after boot (a thread id the kernel hands out
/// again comes with a later start); unknown: /proc hides it (hidepid, no
/// /proc), but kill(2) says the id is in use.
struct ThreadLook {
    enum class Is { gone, alive, unknown } is = Is::gone;
    std::uint64_t start_ticks = 0;
};
ThreadLook look_at_thread(pid_t tid) noexcept;

/// A read-only shared mapping of the first `size` bytes of another
/// process's fd (/proc/pid/fd/N), or of nothing if it cannot be opened
/// (gone, not allowed) or is smaller than `size`. Unmapped on destruction.
class ReadOnlyView {
public:
    static ReadOnlyView open(pid_t pid, int fd, std::size_t size) noexcept;
    ReadOnlyView() = default;
    ReadOnlyView(ReadOnlyView&& o) noexcept;
    ReadOnlyView& operator=(ReadOnlyView&& o) noexcept;
    ReadOnlyView(const ReadOnlyView&) = delete;
    ReadOnlyView& operator=(const ReadOnlyView&) = delete;
    ~ReadOnlyView();

    explicit operator bool() const noexcept { return data_ != nullptr; }
    const std::byte* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }
    /// The whole file's size when it was opened.
    std::uint64_t file_size() const noexcept { return file_size_; }

private:
    const std::byte* data_ = nullptr;
    std::size_t size_ = 0;
    std::uint64_t file_size_ = 0;
};

/// Reads a small text file whole ("" if it cannot be read).
std::string read_text_file(const std::string& path);

/// Sleeps (for mproc-top --watch); returns early only for a signal.
void sleep_for(Duration d) noexcept;

}  // namespace mproc::os
