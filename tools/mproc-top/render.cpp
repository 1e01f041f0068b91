// mproc-top's outputs. See render.hpp.
#include "render.hpp"

#include <cstdarg>
#include <cstdio>
#include <type_traits>
#include <string>
#include <vector>

namespace mproc::top {

namespace {

class Json {
public:
    std::string out;
    void str(const std::string& s) {
        out += '"';
        for (unsigned char ch : s) {
            if (ch == '"' || ch == '\\') {
                out += '\\';
                out += static_cast<char>(ch);
            } else if (ch < 0x20) {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\u%04x", ch);
                out += buf;
            } else {
                out += static_cast<char>(ch);
            }
        }
        out += '"';
    }
    void key(const char* k) {
        comma();
        str(k);
        out += ':';
        fresh_ = true;
    }
    void num(std::uint64_t v) { comma(); out += std::to_string(v); }
    void boolean(bool v) { comma(); out += v ? "true" : "false"; }
    void null() { comma(); out += "null"; }
    void text(const std::string& s) { comma(); str(s); }
    void open(char c) { comma(); out += c; fresh_ = true; }
    void close(char c) { out += c; fresh_ = false; }
    template <class T>
    void field(const char* k, const T& v) {
        key(k);
        if constexpr (std::is_same_v<T, bool>) boolean(v);
        else if constexpr (std::is_convertible_v<T, std::string>) text(v);
        else num(static_cast<std::uint64_t>(v));
    }
    void pids(const char* k, const std::vector<pid_t>& v) {
        key(k);
        open('[');
        for (pid_t p : v) num(static_cast<std::uint64_t>(p));
        close(']');
    }

private:
    void comma() {
        if (!fresh_) out += ',';
        fresh_ = false;
    }
    bool fresh_ = true;
};

std::vector<pid_t> pids_of(const Object& o) {
    std::vector<pid_t> v;
    for (const Holder& h : o.holders) v.push_back(h.pid);
    return v;
}

std::string pid_list(const std::vector<pid_t>& v) {
    std::string s;
    for (pid_t p : v) s += (s.empty() ? "" : ",") + std::to_string(p);
    return s.empty() ? "-" : s;
}

std::string bytes(std::uint64_t n) {
    char buf[32];
    if (n >= (std::uint64_t{1} << 30)) std::snprintf(buf, sizeof buf, "%.1fG", static_cast<double>(n) / (1 << 30));
    else if (n >= (1u << 20)) std::snprintf(buf, sizeof buf, "%.1fM", static_cast<double>(n) / (1 << 20));
    else if (n >= (1u << 10)) std::snprintf(buf, sizeof buf, "%.1fK", static_cast<double>(n) / (1 << 10));
    else std::snprintf(buf, sizeof buf, "%lluB", static_cast<unsigned long long>(n));
    return buf;
}

// "1 (pid 42 asleep) +queued": who waits on one side of a ring.
std::string waiting(pid_t pid, bool asleep, bool queued) {
    if (!asleep && !queued) return "0";
    std::string s = asleep ? "1 (pid " + std::to_string(pid) + ")" : "0";
    if (queued) s += " +more";
    return s;
}

void line(std::string& out, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void line(std::string& out, const char* fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    out += buf;
    out += '\n';
}

}  // namespace

std::string to_json(const Census& c) {
    Json j;
    j.open('{');
    j.key("objects");
    j.open('[');
    for (const Object& o : c.objects) {
        j.open('{');
        j.field("kind", o.kind);
        j.field("name", o.name);
        j.field("inode", o.ino);
        j.key("size");
        if (o.size_known) j.num(o.size);
        else j.null();
        j.pids("pids", pids_of(o));
        std::vector<pid_t> mapped_only;
        for (const Holder& h : o.holders)
            if (!h.has_fd) mapped_only.push_back(h.pid);
        j.pids("mapped_only", mapped_only);
        j.key("commands");
        j.open('[');
        for (const Holder& h : o.holders) j.text(h.command);
        j.close(']');
        if (o.ring) {
            const detail::RingView& r = *o.ring;
            j.field("depth", r.items);
            j.field("maxsize", r.maxsize);
            j.field("capacity_bytes", r.capacity_bytes);
            j.field("bytes_used", r.bytes_used);
            j.field("puts", r.puts);
            j.field("gets", r.gets);
            if (r.joinable) j.field("unfinished", r.unfinished);
            // Waiting readers (writers): the lock holder asleep in the
            // ring, plus "more" if others queue on the lock (at least one).
            j.field("waiting_readers", (r.reader_asleep ? 1 : 0) + (r.readers_queued ? 1 : 0));
            j.field("readers_queued", r.readers_queued);
            j.field("reader_pid", o.reader_pid);
            j.field("waiting_writers", (r.writer_asleep ? 1 : 0) + (r.writers_queued ? 1 : 0));
            j.field("writers_queued", r.writers_queued);
            j.field("writer_pid", o.writer_pid);
        }
        if (o.heap) {
            j.field("heap_used", o.heap->used_bytes);
            j.field("heap_committed", o.heap->committed_bytes);
            j.field("heap_max", o.heap->max_bytes);
            j.field("objects", o.heap->objects);
            j.field("shut_down", o.heap->shut_down);
        }
        j.close('}');
    }
    j.close(']');
    j.key("pools");
    j.open('[');
    for (const Pool& p : c.pools) {
        j.open('{');
        j.field("owner", p.owner);
        j.pids("workers", p.workers);
        j.field("worker_count", p.workers.size());
        j.field("tasks_queued", p.queued);
        j.field("tasks_running", p.running);
        j.field("results_waiting", p.results_waiting);
        // Restarts are counted by the pool's owner, in its own memory:
        // nothing in shared memory says how many there were.
        j.key("restarts");
        j.null();
        j.field("tasks_inode", p.tasks_ino);
        j.field("results_inode", p.results_ino);
        j.close('}');
    }
    j.close(']');
    j.close('}');
    j.out += '\n';
    return j.out;
}

std::string to_text(const Census& c) {
    std::string out;
    std::size_t rings = 0, heaps = 0, other = 0;
    for (const Object& o : c.objects) (o.ring ? rings : o.heap ? heaps : other) += 1;
    if (rings) {
        line(out, "%-15s %9s %9s %17s %9s %-16s %-16s %s", "QUEUES/PIPES", "inode", "depth", "bytes used/cap",
             "unfinish", "readers waiting", "writers waiting", "pids");
        for (const Object& o : c.objects) {
            if (!o.ring) continue;
            const detail::RingView& r = *o.ring;
            const std::string used = bytes(r.bytes_used) + "/" + bytes(r.capacity_bytes);
            const std::string depth = r.maxsize ? std::to_string(r.items) + "/" + std::to_string(r.maxsize)
                                                : std::to_string(r.items);
            line(out, "%-15s %9llu %9s %17s %9s %-16s %-16s %s", o.kind.c_str(),
                 static_cast<unsigned long long>(o.ino), depth.c_str(), used.c_str(),
                 r.joinable ? std::to_string(r.unfinished).c_str() : "-",
                 waiting(o.reader_pid, r.reader_asleep, r.readers_queued).c_str(),
                 waiting(o.writer_pid, r.writer_asleep, r.writers_queued).c_str(), pid_list(pids_of(o)).c_str());
        }
        out += '\n';
    }
    if (!c.pools.empty()) {
        line(out, "%-8s %8s %8s %8s %8s %8s  %s", "POOLS", "owner", "workers", "queued", "running", "results",
             "worker pids");
        for (const Pool& p : c.pools)
            line(out, "%-8s %8d %8zu %8llu %8llu %8llu  %s", "pool", p.owner, p.workers.size(),
                 static_cast<unsigned long long>(p.queued), static_cast<unsigned long long>(p.running),
                 static_cast<unsigned long long>(p.results_waiting), pid_list(p.workers).c_str());
        out += '\n';
    }
    if (heaps) {
        line(out, "%-10s %9s %10s %10s %10s %9s  %s", "MANAGERS", "inode", "heap used", "committed", "reserved",
             "objects", "pids");
        for (const Object& o : c.objects) {
            if (!o.heap) continue;
            line(out, "%-10s %9llu %10s %10s %10s %9llu  %s", o.heap->shut_down ? "manager*" : "manager",
                 static_cast<unsigned long long>(o.ino), bytes(o.heap->used_bytes).c_str(),
                 bytes(o.heap->committed_bytes).c_str(), bytes(o.heap->max_bytes).c_str(),
                 static_cast<unsigned long long>(o.heap->objects), pid_list(pids_of(o)).c_str());
        }
        out += '\n';
    }
    if (other) {
        line(out, "%-20s %9s %9s  %-30s %s", "SEGMENTS AND OTHERS", "inode", "size", "name", "pids");
        for (const Object& o : c.objects) {
            if (o.ring || o.heap) continue;
            line(out, "%-20s %9llu %9s  %-30s %s", o.kind.c_str(), static_cast<unsigned long long>(o.ino),
                 o.size_known ? bytes(o.size).c_str() : "?", o.name.c_str(), pid_list(pids_of(o)).c_str());
        }
    }
    if (c.objects.empty()) out += "no mproc objects in the processes this user may see\n";
    return out;
}

}  // namespace mproc::top
