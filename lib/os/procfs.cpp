// Other processes through /proc. See procfs.hpp.
#include "os/procfs.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <set>
#include <utility>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

namespace mproc::os {

namespace {

// The numeric entries of a /proc directory.
std::vector<int> numeric_entries(const std::string& dir) {
    std::vector<int> out;
    DIR* d = ::opendir(dir.c_str());
    if (!d) return out;
    while (const dirent* e = ::readdir(d)) {
        char* end = nullptr;
        const long v = std::strtol(e->d_name, &end, 10);
        if (end != e->d_name && *end == '\0' && v >= 0) out.push_back(static_cast<int>(v));
    }
    ::closedir(d);
    std::sort(out.begin(), out.end());
    return out;
}

std::string link_text(const std::string& path) {
    char buf[4096];
    const ssize_t n = ::readlink(path.c_str(), buf, sizeof buf - 1);
    if (n <= 0) return {};
    return std::string(buf, static_cast<std::size_t>(n));
}

// "Key:\tvalue" from /proc/<pid>/status.
long status_field(pid_t pid, const char* key) {
    const std::string text = read_text_file("/proc/" + std::to_string(pid) + "/status");
    const std::string k = std::string("\n") + key + ":";
    const std::size_t at = text.find(k);
    if (at == std::string::npos) return 0;
    return std::strtol(text.c_str() + at + k.size(), nullptr, 10);
}

}  // namespace

std::vector<pid_t> list_processes() {
    std::vector<pid_t> out;
    for (int p : numeric_entries("/proc")) out.push_back(static_cast<pid_t>(p));
    return out;
}

std::vector<HeldFile> held_files(pid_t pid) {
    std::vector<HeldFile> out;
    std::set<std::pair<std::uint64_t, std::uint64_t>> seen;
    const std::string base = "/proc/" + std::to_string(pid);
    for (int fd : numeric_entries(base + "/fd")) {
        const std::string path = base + "/fd/" + std::to_string(fd);
        struct stat st {};
        if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
        HeldFile h;
        h.id = FileId{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino),
                      static_cast<std::uint64_t>(st.st_size)};
        h.path = link_text(path);
        h.fd = fd;
        seen.insert({h.id.dev, h.id.ino});
        out.push_back(std::move(h));
    }
    // "start-end perms offset major:minor inode   path", shared ones ("s").
    const std::string maps = read_text_file(base + "/maps");
    std::size_t at = 0;
    while (at < maps.size()) {
        std::size_t end = maps.find('\n', at);
        if (end == std::string::npos) end = maps.size();
        const std::string line = maps.substr(at, end - at);
        at = end + 1;
        char perms[8] = {};
        unsigned major = 0, minor = 0;
        unsigned long long inode = 0;
        int path_at = 0;
        if (std::sscanf(line.c_str(), "%*x-%*x %7s %*x %x:%x %llu %n", perms, &major, &minor, &inode, &path_at) < 4)
            continue;
        if (perms[3] != 's' || inode == 0 || path_at <= 0) continue;
        const std::uint64_t dev = static_cast<std::uint64_t>(makedev(major, minor));
        if (!seen.insert({dev, inode}).second) continue;
        HeldFile h;
        h.id = FileId{dev, inode, 0};
        h.path = line.substr(static_cast<std::size_t>(path_at));
        out.push_back(std::move(h));
    }
    return out;
}

std::optional<std::string> memfd_name(const std::string& path) {
    constexpr std::string_view prefix = "/memfd:";
    constexpr std::string_view deleted = " (deleted)";
    if (path.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
    std::string name = path.substr(prefix.size());
    if (name.size() >= deleted.size() && name.compare(name.size() - deleted.size(), deleted.size(), deleted) == 0)
        name.resize(name.size() - deleted.size());
    return name;
}

std::string process_name(pid_t pid) {
    std::string s = read_text_file("/proc/" + std::to_string(pid) + "/comm");
    while (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
}

pid_t process_of_thread(pid_t tid) {
    if (tid <= 0) return 0;
    return static_cast<pid_t>(status_field(tid, "Tgid"));
}

pid_t parent_of(pid_t pid) { return static_cast<pid_t>(status_field(pid, "PPid")); }

ReadOnlyView ReadOnlyView::open(pid_t pid, int fd, std::size_t size) noexcept {
    ReadOnlyView v;
    const std::string path = "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd);
    int f;
    do f = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    while (f < 0 && errno == EINTR);
    if (f < 0) return v;
    Fd owned(f);
    struct stat st {};
    if (::fstat(f, &st) != 0 || st.st_size < 0 || static_cast<std::uint64_t>(st.st_size) < size || size == 0)
        return v;
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, f, 0);
    if (p == MAP_FAILED) return v;
    v.data_ = static_cast<const std::byte*>(p);
    v.size_ = size;
    v.file_size_ = static_cast<std::uint64_t>(st.st_size);
    return v;
}

ReadOnlyView::ReadOnlyView(ReadOnlyView&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(o.size_), file_size_(o.file_size_) {}

ReadOnlyView& ReadOnlyView::operator=(ReadOnlyView&& o) noexcept {
    if (this != &o) {
        if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
        data_ = std::exchange(o.data_, nullptr);
        size_ = o.size_;
        file_size_ = o.file_size_;
    }
    return *this;
}

ReadOnlyView::~ReadOnlyView() {
    if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
}

ThreadLook look_at_thread(pid_t tid) noexcept {
    ThreadLook look;
    if (tid <= 0) return look;
    char path[32];
    std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(tid));
    int f;
    do f = ::open(path, O_RDONLY | O_CLOEXEC);
    while (f < 0 && errno == EINTR);
    if (f < 0) {
        if (errno == ENOENT || errno == ESRCH) return look;
        // Hidden from us: all that can be told is whether the id is in use.
        if (::kill(tid, 0) == 0 || errno == EPERM) look.is = ThreadLook::Is::unknown;
        return look;
    }
    char buf[1024];
    ssize_t n;
    do n = ::read(f, buf, sizeof buf - 1);
    while (n < 0 && errno == EINTR);
    ::close(f);
    if (n <= 0) return look;  // it went away while we looked
    buf[n] = '\0';
    // "tid (comm) S ppid ...": the comm may hold anything, so fields are
    // counted from the last ')'. The state is field 3, starttime field 22.
    const char* p = std::strrchr(buf, ')');
    if (!p || p[1] != ' ') return look;
    p += 2;
    const char state = *p;
    if (state == 'Z' || state == 'X' || state == 'x') return look;  // exited: holds nothing
    for (int field = 3; field < 22; ++field) {
        p = std::strchr(p, ' ');
        if (!p) return look;
        ++p;
    }
    look.start_ticks = std::strtoull(p, nullptr, 10);
    look.is = ThreadLook::Is::alive;
    return look;
}

std::string read_text_file(const std::string& path) {
    int f;
    do f = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    while (f < 0 && errno == EINTR);
    if (f < 0) return {};
    Fd owned(f);
    std::string out;
    char buf[8192];
    for (;;) {
        const ssize_t n = ::read(f, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
}

void sleep_for(Duration d) noexcept {
    const double s = std::max(0.0, d.count());
    timespec ts{static_cast<time_t>(s), static_cast<long>((s - static_cast<double>(static_cast<time_t>(s))) * 1e9)};
    ::nanosleep(&ts, nullptr);
}

}  // namespace mproc::os
