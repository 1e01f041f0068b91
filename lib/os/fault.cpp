// Fault points: see fault.hpp.
#include "os/fault.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include "mproc/detail/fault.hpp"
#include "mproc/errors.hpp"

namespace mproc::os {

namespace {

struct Point {
    char name[48];
    std::uint32_t nth;
    bool stop;
    std::atomic<std::uint32_t> hits;
};
constexpr int kMaxPoints = 8;
Point g_points[kMaxPoints];
std::atomic<int> g_count{0};

// Parses without allocating: it also runs in a forked child of a threaded
// process. Returns false (and arms nothing) on a malformed spec.
bool parse(std::string_view spec) noexcept {
    fault_detail::armed.store(false, std::memory_order_relaxed);
    g_count.store(0, std::memory_order_relaxed);
    int n = 0;
    while (!spec.empty()) {
        std::size_t comma = spec.find(',');
        std::string_view item = spec.substr(0, comma);
        spec = comma == std::string_view::npos ? std::string_view{} : spec.substr(comma + 1);
        if (item.empty()) continue;
        std::size_t c1 = item.find(':');
        if (c1 == 0 || c1 == std::string_view::npos || n == kMaxPoints || c1 >= sizeof(Point::name))
            return false;
        std::string_view name = item.substr(0, c1), rest = item.substr(c1 + 1);
        std::size_t c2 = rest.find(':');
        std::string_view count = rest.substr(0, c2);
        std::string_view action = c2 == std::string_view::npos ? std::string_view{} : rest.substr(c2 + 1);
        std::uint32_t nth = 0;
        if (count.empty()) return false;
        for (char ch : count) {
            if (ch < '0' || ch > '9' || nth > 100000000) return false;
            nth = nth * 10 + static_cast<std::uint32_t>(ch - '0');
        }
        if (nth == 0 || !(action.empty() || action == "kill" || action == "stop")) return false;
        Point& p = g_points[n++];
        std::memcpy(p.name, name.data(), name.size());
        p.name[name.size()] = '\0';
        p.nth = nth;
        p.stop = action == "stop";
        p.hits.store(0, std::memory_order_relaxed);
    }
    g_count.store(n, std::memory_order_release);
    fault_detail::armed.store(n > 0, std::memory_order_release);
    return true;
}

void parse_environment() noexcept {
    const char* s = std::getenv("MPROC_FAULT");
    if (s && !parse(s)) {
        static const char msg[] = "mproc: ignoring malformed MPROC_FAULT (want name:N[:stop],...)\n";
        ssize_t ignored = ::write(2, msg, sizeof msg - 1);
        (void)ignored;
    }
    if (!s) parse({});
}

struct Init {
    Init() {
        parse_environment();
        // A forked child counts its own hits, armed by its environment.
        ::pthread_atfork(nullptr, nullptr, [] { parse_environment(); });
    }
} g_init;

}  // namespace

namespace fault_detail {

std::atomic<bool> armed{false};

void hit(const char* name) noexcept {
    const int n = g_count.load(std::memory_order_acquire);
    for (int i = 0; i < n; ++i) {
        Point& p = g_points[i];
        if (std::strcmp(p.name, name) != 0) continue;
        if (p.hits.fetch_add(1, std::memory_order_relaxed) + 1 != p.nth) continue;
        if (p.stop) {
            ::kill(::getpid(), SIGSTOP);  // resumes here on SIGCONT
            continue;
        }
        ::kill(::getpid(), SIGKILL);
        for (;;) ::pause();  // SIGKILL is on its way
    }
}

}  // namespace fault_detail

void arm_faults(std::string_view spec) {
    if (!parse(spec))
        throw ValueError("mproc fault spec \"" + std::string(spec) + "\": want name:N[:stop],... (at most " +
                         std::to_string(kMaxPoints) + " points)");
}

}  // namespace mproc::os

namespace mproc::detail {
void arm_fault(std::string_view spec) { os::arm_faults(spec); }
}  // namespace mproc::detail
