// The chaos suite's harness (./build.sh chaos; ctest label "chaos", outside
// the default run): random kill -9s of the processes of a scenario, and the
// checks every scenario reports as one table row — hangs, published items
// lost or duplicated (an item whose put was interrupted may arrive 0 or 1
// times, never 2), wrong results, /dev/shm entries left behind, processes
// left behind.
//
// A scenario runs its processes as roles: the harness picks a role at
// random, lets it make a random amount of progress (its counter in shared
// memory), kills it with SIGKILL, reaps it, lets the scenario do its
// bookkeeping, and starts a replacement. A role that makes no progress for
// kHangSeconds is a hang: the scenario stops there and reports it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <sys/types.h>

namespace chaos {

inline constexpr int kHangSeconds = 20;

struct Row {
    std::string scenario;
    long kills = 0, hangs = 0, lost = 0, duplicated = 0, wrong = 0, leftovers = 0, orphans = 0;
    double wall_s = 0;
};

/// Measures one scenario: /dev/shm entries and child processes at the start
/// against those at the end (this process is a child subreaper, so the
/// orphans of killed processes come back to it), and the wall time.
class Scope {
public:
    explicit Scope(std::string scenario);
    Row& row() { return row_; }
    /// Waits (bounded) for stray processes to go, counts and kills those
    /// that do not, counts new /dev/shm entries; prints the row and appends
    /// it to $MPROC_CHAOS_TABLE; returns it.
    Row finish();

private:
    Row row_;
    std::chrono::steady_clock::time_point start_;
    std::set<std::string> shm_before_;
    std::set<pid_t> children_before_;
};

/// Checks the row with Catch (every count but kills zero, kills > 0).
void require_clean(const Row& row);

/// A running role: its pid and how to reap it (exit status, -N for signal N).
struct Child {
    pid_t pid = 0;
    std::function<int()> reap;
};
Child fork_role(std::function<void()> fn);

struct Role {
    std::function<Child()> start;
    /// After the role was killed and reaped: the scenario's bookkeeping.
    std::function<void()> killed = [] {};
};

/// Kills random roles `kills` times (counts into row.kills), each after it
/// made 1..max_ops progress on ops[role], or until `exhausted()` (the
/// scenario ran out of ids: it starts a new round). Returns false on a hang
/// (counted into row.hangs, with a line on stderr naming the role). Leaves
/// every role running (the scenario stops them) unless it returns false:
/// then it has killed them all.
bool kill_loop(std::vector<Role>& roles, std::vector<Child>& running, std::uint64_t* ops, long kills,
               std::mt19937& rng, Row& row, std::uint64_t max_ops = 50,
               const std::function<bool()>& exhausted = [] { return false; });

/// Kills and reaps every running role.
void kill_all(std::vector<Child>& running);

/// Kill budgets scale with MPROC_CHAOS_SCALE (default 1.0).
long scaled(long kills);

/// Waits until pred() or kHangSeconds; false on timeout (a hang).
bool wait_for(const std::function<bool()>& pred, int seconds = kHangSeconds);

/// This process's child that is mproc's fork server, if one runs.
std::optional<pid_t> fork_server_pid();

}  // namespace chaos
