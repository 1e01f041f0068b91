// Small timing helpers shared by mproc's benchmarks: medians over repeated
// runs, a monotonic stopwatch, running a python3 snippet for the
// comparison figures, and the figures' printing. Benchmarks print; they
// never assert on time.
//
// Every figure printed by row() and ratio() is also written, with the
// title of the group() it belongs to, to <bench>.csv in $MPROC_BENCH_CSV
// (a directory) or else in bench-results/ beside the executable:
//     bench,group,label,value,unit
// bench/plot.py draws them.
#pragma once

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

namespace bench {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

inline double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    std::size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/// Runs `once` (which returns a per-operation figure) `reps` times; median.
inline double median_of(int reps, const std::function<double()>& once) {
    std::vector<double> v;
    for (int i = 0; i < reps; ++i) v.push_back(once());
    return median(v);
}

/// Runs `code` with /usr/bin/python3 (from a temporary file) and parses the
/// first number it prints; nullopt if python3 is missing or prints nothing
/// useful.
inline std::optional<double> python_figure(const std::string& code) {
    char path[] = "/tmp/mproc-bench-XXXXXX.py";
    int fd = ::mkstemps(path, 3);
    if (fd < 0) return std::nullopt;
    FILE* src = ::fdopen(fd, "w");
    std::fputs(code.c_str(), src);
    std::fclose(src);
    std::string cmd = std::string("/usr/bin/python3 ") + path + " 2>/dev/null";
    FILE* f = ::popen(cmd.c_str(), "r");
    std::string out;
    if (f) {
        std::array<char, 256> buf{};
        while (std::fgets(buf.data(), buf.size(), f)) out += buf.data();
        if (::pclose(f) != 0) out.clear();
    }
    ::unlink(path);
    try {
        return std::stod(out);
    } catch (...) {
        return std::nullopt;
    }
}

namespace detail {

// The CSV of this run: opened (truncated) at the first figure, written a
// line at a time, and only by the process that started the benchmark (its
// forked children share the FILE and must not write into it).
struct Csv {
    pid_t pid = ::getpid();
    FILE* file = nullptr;
    bool failed = false;
    std::string bench, group;

    static std::string quoted(const std::string& s) {
        std::string q = "\"";
        for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
        return q + "\"";
    }
    void open() {
        bench = program_invocation_short_name;
        std::string dir;
        if (const char* d = std::getenv("MPROC_BENCH_CSV"); d && *d) {
            dir = d;
        } else {
            char exe[4096];
            const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
            dir = n > 0 ? std::string(exe, static_cast<std::size_t>(n)) : std::string("./x");
            dir = dir.substr(0, dir.rfind('/') + 1) + "bench-results";
        }
        if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
            failed = true;
            return;
        }
        const std::string path = dir + "/" + bench + ".csv";
        file = std::fopen(path.c_str(), "w");
        if (!file) {
            std::fprintf(stderr, "bench: cannot write %s\n", path.c_str());
            failed = true;
            return;
        }
        std::fputs("bench,group,label,value,unit\n", file);
    }
    void add(const char* label, double value, const char* unit) {
        if (::getpid() != pid || failed) return;
        if (!file) open();
        if (!file) return;
        std::fprintf(file, "%s,%s,%s,%.6g,%s\n", quoted(bench).c_str(), quoted(group).c_str(),
                     quoted(label).c_str(), value, quoted(unit).c_str());
        std::fflush(file);
    }
};

inline Csv& csv() {
    static Csv c;
    return c;
}

}  // namespace detail

/// Prints a group's title (printf-style, printed as given) and names the
/// group of the figures that follow in the CSV (the title, trimmed).
inline void group(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
inline void group(const char* fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    std::fputs(buf, stdout);
    std::string t = buf;
    const auto b = t.find_first_not_of(" \n");
    const auto e = t.find_last_not_of(" \n");
    detail::csv().group = b == std::string::npos ? std::string() : t.substr(b, e - b + 1);
}

inline void row(const char* what, double ns, const char* unit = "ns") {
    std::printf("  %-52s %12.1f %s\n", what, ns, unit);
    detail::csv().add(what, ns, unit);
}

inline void ratio(const char* what, double ratio) {
    std::printf("  %-52s %11.2fx\n", what, ratio);
    detail::csv().add(what, ratio, "x");
}

}  // namespace bench
