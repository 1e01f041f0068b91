// Small timing helpers shared by mproc's benchmarks: medians over repeated
// runs, a monotonic stopwatch, and running a python3 snippet for the
// comparison figures. Benchmarks print; they never assert on time.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <stdlib.h>
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

inline void row(const char* what, double ns, const char* unit = "ns") {
    std::printf("  %-52s %12.1f %s\n", what, ns, unit);
}

inline void ratio(const char* what, double ratio) { std::printf("  %-52s %11.2fx\n", what, ratio); }

}  // namespace bench
