// mproc-top's census. See census.hpp.
#include "census.hpp"

#include <algorithm>
#include <map>
#include <utility>

#include "os/os.hpp"
#include "os/procfs.hpp"

namespace mproc::top {

namespace {

constexpr std::string_view kPrefix = "mproc-";
constexpr std::string_view kShm = "/dev/shm/";

struct Found {
    Object obj;
    pid_t open_pid = 0;  // a holder with an fd on it, to map it through
    int open_fd = -1;
};

// What a held file is, or nullopt if it is not mproc's.
std::optional<std::pair<std::string, std::string>> classify(const std::string& path) {
    if (auto name = os::memfd_name(path)) {
        if (name->compare(0, kPrefix.size(), kPrefix) != 0) return std::nullopt;
        return std::make_pair(name->substr(kPrefix.size()), *name);
    }
    if (path.compare(0, kShm.size(), kShm) == 0) return std::make_pair(std::string("named-segment"), path);
    return std::nullopt;
}

bool is_ring(const std::string& kind) {
    return kind == "queue" || kind == "joinable-queue" || kind == "pipe" || kind == "pool-tasks" ||
           kind == "pool-results";
}

void inspect(Found& f) {
    Object& o = f.obj;
    if (f.open_fd < 0) return;
    if (is_ring(o.kind)) {
        auto view = os::ReadOnlyView::open(f.open_pid, f.open_fd, detail::ring_header_bytes());
        if (!view) return;
        o.ring = detail::inspect_ring({view.data(), view.size()}, view.file_size());
        if (o.ring) {
            o.reader_pid = os::process_of_thread(o.ring->reader_tid);
            o.writer_pid = os::process_of_thread(o.ring->writer_tid);
        }
    } else if (o.kind == "manager") {
        auto view = os::ReadOnlyView::open(f.open_pid, f.open_fd, detail::heap_header_bytes());
        if (view) o.heap = detail::inspect_heap({view.data(), view.size()}, view.file_size());
    }
}

bool holds(const Object& o, pid_t pid) {
    return std::any_of(o.holders.begin(), o.holders.end(), [&](const Holder& h) { return h.pid == pid; });
}

// The processes with an fd on it: a pool's owner and workers keep theirs
// (a process that only maps it, a fork that closed its fds, is no worker).
std::vector<pid_t> fd_holders(const Object& o) {
    std::vector<pid_t> v;
    for (const Holder& h : o.holders)
        if (h.has_fd) v.push_back(h.pid);
    return v;
}

// The holder that is not a descendant of another holder: the pool's maker
// (workers are its children, or a fork server's, which is its child too).
pid_t eldest(const std::vector<pid_t>& pids) {
    for (pid_t p : pids) {
        bool descends = false;
        for (pid_t a = os::parent_of(p), hops = 0; a > 1 && hops < 64; a = os::parent_of(a), ++hops)
            if (std::find(pids.begin(), pids.end(), a) != pids.end()) {
                descends = true;
                break;
            }
        if (!descends) return p;
    }
    return pids.empty() ? 0 : pids.front();
}

// A pool is its task ring and the result ring held by the same processes.
std::vector<Pool> find_pools(const std::vector<Object>& objects) {
    std::vector<Pool> pools;
    for (const Object& t : objects) {
        if (t.kind != "pool-tasks" || !t.ring) continue;
        const std::vector<pid_t> who = fd_holders(t);
        const Object* r = nullptr;
        for (const Object& c : objects)
            if (c.kind == "pool-results" && c.ring && fd_holders(c) == who) r = &c;
        Pool p;
        p.owner = eldest(who);
        for (pid_t w : who)
            if (w != p.owner) p.workers.push_back(w);
        p.queued = t.ring->items;
        p.tasks_ino = t.ino;
        if (r) {
            p.results_ino = r->ino;
            p.results_waiting = r->ring->items;
            // Each chunk a worker takes is answered by one result; what was
            // taken and not answered is running (a worker that died with
            // its chunk, or a stop message, would count too: bounded by the
            // live workers).
            const std::uint64_t open = detail::ring_count_diff(t.ring->gets, r->ring->puts);
            // (The result ring is read after the task ring: an answer that
            // came in between makes the difference "negative": none.)
            p.running = open > (std::uint64_t{1} << 30) ? 0 : std::min<std::uint64_t>(open, p.workers.size());
        }
        pools.push_back(std::move(p));
    }
    return pools;
}

}  // namespace

Census take_census(pid_t only_pid) {
    const pid_t self = os::pid();
    std::map<std::pair<std::uint64_t, std::uint64_t>, Found> found;
    for (pid_t pid : os::list_processes()) {
        if (pid == self) continue;
        std::string command;
        for (const os::HeldFile& h : os::held_files(pid)) {
            auto what = classify(h.path);
            if (!what) continue;
            Found& f = found[{h.id.dev, h.id.ino}];
            if (f.obj.holders.empty()) {
                f.obj.kind = what->first;
                f.obj.name = what->second;
                f.obj.dev = h.id.dev;
                f.obj.ino = h.id.ino;
            }
            if (h.fd >= 0 && f.open_fd < 0) {
                f.open_pid = pid;
                f.open_fd = h.fd;
                f.obj.size = h.id.size;
                f.obj.size_known = true;
            }
            if (!holds(f.obj, pid)) {
                if (command.empty()) command = os::process_name(pid);
                f.obj.holders.push_back(Holder{pid, command, false});
            }
            if (h.fd >= 0) f.obj.holders.back().has_fd = true;
        }
    }
    Census c;
    for (auto& [key, f] : found) {
        inspect(f);
        c.objects.push_back(std::move(f.obj));
    }
    c.pools = find_pools(c.objects);
    if (only_pid != 0) {
        std::erase_if(c.objects, [&](const Object& o) { return !holds(o, only_pid); });
        std::erase_if(c.pools, [&](const Pool& p) {
            return p.owner != only_pid && std::find(p.workers.begin(), p.workers.end(), only_pid) == p.workers.end();
        });
    }
    std::stable_sort(c.objects.begin(), c.objects.end(), [](const Object& a, const Object& b) {
        const pid_t pa = a.holders.empty() ? 0 : a.holders.front().pid;
        const pid_t pb = b.holders.empty() ? 0 : b.holders.front().pid;
        return std::tie(a.kind, pa, a.ino) < std::tie(b.kind, pb, b.ino);
    });
    return c;
}

}  // namespace mproc::top
