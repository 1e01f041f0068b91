#include "harness.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.hpp"

namespace fs = std::filesystem;

namespace chaos {

namespace {

std::set<std::string> shm_entries() {
    std::set<std::string> s;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/dev/shm", ec)) s.insert(e.path().filename());
    return s;
}

// This process's children and their states (R, S, Z, ...), from /proc.
std::vector<std::pair<pid_t, char>> children() {
    std::vector<std::pair<pid_t, char>> out;
    const pid_t self = ::getpid();
    std::error_code ec;
    for (const auto& p : fs::directory_iterator("/proc", ec)) {
        const std::string name = p.path().filename();
        if (name.find_first_not_of("0123456789") != std::string::npos) continue;
        std::ifstream f(p.path() / "stat");
        std::string line;
        if (!std::getline(f, line)) continue;
        auto close = line.rfind(')');
        if (close == std::string::npos) continue;
        std::istringstream rest(line.substr(close + 2));
        char state = 0;
        pid_t ppid = 0;
        rest >> state >> ppid;
        if (ppid == self) out.emplace_back(static_cast<pid_t>(std::stol(name)), state);
    }
    return out;
}

std::set<pid_t> live_children() {
    std::set<pid_t> out;
    for (auto [pid, state] : children())
        if (state != 'Z') out.insert(pid);
    return out;
}

// Orphans that came back to us and exited: reap them (only those no
// mproc::Process of ours waits for, which are all joined by now).
void reap_zombies(const std::set<pid_t>& keep) {
    for (auto [pid, state] : children())
        if (state == 'Z' && !keep.count(pid)) ::waitpid(pid, nullptr, WNOHANG);
}

struct Subreaper {
    Subreaper() { ::prctl(PR_SET_CHILD_SUBREAPER, 1); }
} g_subreaper;

bool header_printed = false;

}  // namespace

Scope::Scope(std::string scenario) : start_(std::chrono::steady_clock::now()) {
    // Children are forked from here on: give them no buffered output to copy.
    std::fflush(nullptr);
    row_.scenario = std::move(scenario);
    shm_before_ = shm_entries();
    children_before_ = live_children();
}

Row Scope::finish() {
    // Processes the scenario left: give them a while to notice their
    // parent's death, then count and kill what is left.
    std::set<pid_t> stray;
    for (int i = 0; i < 100; ++i) {
        reap_zombies(children_before_);
        stray.clear();
        for (pid_t p : live_children())
            if (!children_before_.count(p) && p != fork_server_pid().value_or(0)) stray.insert(p);
        if (stray.empty()) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));  // polling /proc
    }
    for (pid_t p : stray) {
        std::ifstream f("/proc/" + std::to_string(p) + "/cmdline");
        std::string cmd;
        std::getline(f, cmd, '\0');
        std::fprintf(stderr, "chaos %s: process %d (%s) left behind\n", row_.scenario.c_str(), p, cmd.c_str());
        ::kill(p, SIGKILL);
    }
    row_.orphans += static_cast<long>(stray.size());
    for (pid_t p : stray) ::waitpid(p, nullptr, 0);
    for (const auto& e : shm_entries())
        if (!shm_before_.count(e)) {
            std::fprintf(stderr, "chaos %s: /dev/shm/%s left behind\n", row_.scenario.c_str(), e.c_str());
            ++row_.leftovers;
        }
    row_.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();

    char line[256];
    std::snprintf(line, sizeof line, "| %-38s | %6ld | %5ld | %4ld | %10ld | %5ld | %9ld | %7ld | %7.1f s |\n",
                  row_.scenario.c_str(), row_.kills, row_.hangs, row_.lost, row_.duplicated, row_.wrong,
                  row_.leftovers, row_.orphans, row_.wall_s);
    const char* head =
        "| scenario                               |  kills | hangs | lost | duplicated | wrong | leftovers | orphans |      wall |\n"
        "|---|---|---|---|---|---|---|---|---|\n";
    if (!header_printed) std::fputs(head, stdout);
    header_printed = true;
    std::fputs(line, stdout);
    std::fflush(stdout);
    if (const char* path = std::getenv("MPROC_CHAOS_TABLE")) {
        std::ofstream out(path, std::ios::app);
        out << line;
    }
    return row_;
}

void require_clean(const Row& r) {
    INFO("scenario " << r.scenario);
    CHECK(r.kills > 0);
    CHECK(r.hangs == 0);
    CHECK(r.lost == 0);
    CHECK(r.duplicated == 0);
    CHECK(r.wrong == 0);
    CHECK(r.leftovers == 0);
    CHECK(r.orphans == 0);
}

Child fork_role(std::function<void()> fn) {
    pid_t pid = mproc_test::fork_child(fn);
    return {pid, [pid] { return mproc_test::wait_child(pid, std::chrono::seconds(kHangSeconds)).value_or(999); }};
}

bool kill_loop(std::vector<Role>& roles, std::vector<Child>& running, std::uint64_t* ops, long kills,
               std::mt19937& rng, Row& row, std::uint64_t max_ops, const std::function<bool()>& exhausted) {
    const std::size_t n = roles.size();
    for (long k = 0; k < kills; ++k) {
        const std::size_t role = rng() % n;
        std::atomic_ref<std::uint64_t> counter(ops[role]);
        const std::uint64_t target = counter.load() + 1 + rng() % max_ops;
        const auto since = std::chrono::steady_clock::now();
        while (counter.load() < target) {
            if (exhausted()) return true;
            if (std::chrono::steady_clock::now() - since > std::chrono::seconds(kHangSeconds)) {
                std::fprintf(stderr, "chaos %s: kill %ld: role %zu made no progress for %d s (ops %llu)\n",
                             row.scenario.c_str(), k, role, kHangSeconds,
                             static_cast<unsigned long long>(counter.load()));
                ++row.hangs;
                kill_all(running);
                return false;
            }
            std::this_thread::sleep_for(std::chrono::microseconds(50));  // polling a counter
        }
        ::kill(running[role].pid, SIGKILL);
        const int status = running[role].reap();
        if (status != -SIGKILL) {
            std::fprintf(stderr, "chaos %s: role %zu ended with status %d before its kill\n",
                         row.scenario.c_str(), role, status);
            ++row.wrong;
        }
        ++row.kills;
        roles[role].killed();
        running[role] = roles[role].start();
    }
    return true;
}

void kill_all(std::vector<Child>& running) {
    for (auto& c : running)
        if (c.pid > 0) ::kill(c.pid, SIGKILL);
    for (auto& c : running)
        if (c.pid > 0) c.reap();
    running.clear();
}

long scaled(long kills) {
    double s = 1.0;
    if (const char* e = std::getenv("MPROC_CHAOS_SCALE")) s = std::atof(e);
    long k = static_cast<long>(static_cast<double>(kills) * s);
    return k < 1 ? 1 : k;
}

bool wait_for(const std::function<bool()>& pred, int seconds) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (!pred()) {
        if (std::chrono::steady_clock::now() > until) return false;
        std::this_thread::sleep_for(std::chrono::microseconds(50));  // polling
    }
    return true;
}

std::optional<pid_t> fork_server_pid() {
    for (pid_t p : live_children()) {
        std::ifstream f("/proc/" + std::to_string(p) + "/environ", std::ios::binary);
        std::string var;
        while (std::getline(f, var, '\0'))
            if (var.rfind("MPROC_FORKSERVER=", 0) == 0) return p;
    }
    return std::nullopt;
}

}  // namespace chaos
