// Chaos: pool and executor workers killed at random while tasks run, serial
// Pool(1).apply included (the result path's wake-up); and the death of a
// pool's parent, of a manager's serving process and of the fork server.
// Every call must return: a result, which must be right, or the error that
// names the dead worker. "lost": a task that neither.
#include <catch2/catch.hpp>

#include <mproc/futures.hpp>
#include <mproc/manager.hpp>
#include <mproc/pool.hpp>
#include <mproc/process.hpp>
#include <mproc/shared_memory.hpp>

#include <atomic>
#include <thread>

#include <signal.h>
#include <unistd.h>

#include "harness.hpp"

using mproc::Duration;
using mproc::StartMethod;
using namespace std::chrono_literals;

namespace {

long triple(long x) {
    // A few microseconds of work, so a kill often lands inside a task.
    long acc = x;
    for (int i = 0; i < 2000; ++i) acc = (acc * 31 + i) % 1000003;
    return x * 3 + (acc == -1);
}

// Kills one of `pids` (if any) after a random pause of up to `max_us`.
bool kill_one(const std::vector<int>& pids, std::mt19937& rng, unsigned max_us) {
    if (pids.empty()) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % (max_us + 1)));  // random timing, not sync
    return ::kill(pids[rng() % pids.size()], SIGKILL) == 0;
}

// Waits for one apply's result and checks it: false on a hang. An error is
// counted as lost unless a kill may have caused it.
bool check_apply(const mproc::AsyncResult<long>& ar, long expected, bool may_fail, chaos::Row& row) {
    if (!ar.wait(Duration(chaos::kHangSeconds))) {
        ++row.hangs;
        return false;
    }
    try {
        if (ar.get() != expected) ++row.wrong;
    } catch (const mproc::Error&) {
        if (!may_fail) ++row.lost;
    }
    return true;
}

chaos::Row pool_map(const char* name, int processes, StartMethod method, long kills, std::size_t chunksize) {
    chaos::Scope scope(name);
    chaos::Row& row = scope.row();
    mproc::Pool pool(mproc::PoolOptions{.processes = processes, .start_method = method});
    std::vector<long> in(64);
    for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<long>(i);
    std::mt19937 rng(2024);
    const long target = chaos::scaled(kills);
    while (row.kills < target) {
        auto ar = pool.map_async(triple, in, chunksize);
        if (kill_one(pool.worker_pids(), rng, 3000)) ++row.kills;
        if (!ar.wait(Duration(chaos::kHangSeconds))) {
            ++row.hangs;
            break;
        }
        try {
            auto out = ar.get();
            for (std::size_t i = 0; i < in.size(); ++i)
                if (out[i] != in[i] * 3) ++row.wrong;
        } catch (const mproc::Error&) {
            // a task died with its worker: reported, as it should be
        }
    }
    // The pool still works.
    auto out = pool.map(triple, in);
    for (std::size_t i = 0; i < in.size(); ++i)
        if (out[i] != in[i] * 3) ++row.wrong;
    pool.terminate();
    return scope.finish();
}

}  // namespace

TEST_CASE("chaos: Pool.map workers (fork)", "[chaos][pool]") {
    chaos::require_clean(pool_map("Pool(2).map workers (fork)", 2, StartMethod::fork, 5000, 4));
}

TEST_CASE("chaos: Pool.map workers (spawn)", "[chaos][pool]") {
    chaos::require_clean(pool_map("Pool(2).map workers (spawn)", 2, StartMethod::spawn, 600, 4));
}

TEST_CASE("chaos: Pool.map workers (forkserver)", "[chaos][pool]") {
    chaos::require_clean(pool_map("Pool(2).map workers (forkserver)", 2, StartMethod::forkserver, 1500, 4));
}

TEST_CASE("chaos: serial Pool(1).apply", "[chaos][pool]") {
    chaos::Scope scope("serial Pool(1).apply (fork)");
    chaos::Row& row = scope.row();
    mproc::Pool pool(mproc::PoolOptions{.processes = 1, .start_method = StartMethod::fork});
    std::mt19937 rng(7);
    const long target = chaos::scaled(20000);
    for (long i = 0; row.kills < target; ++i) {
        // Runs of plain apply() (the result thread wakes for each), then one
        // apply_async whose worker is killed somewhere along its way.
        bool ok = true;
        for (int k = 0; k < 5 && ok; ++k) ok = check_apply(pool.apply_async(triple, i), i * 3, false, row);
        if (!ok) break;
        auto ar = pool.apply_async(triple, i);
        if (kill_one(pool.worker_pids(), rng, 200)) ++row.kills;
        if (!check_apply(ar, i * 3, true, row)) break;
    }
    pool.terminate();
    chaos::require_clean(scope.finish());
}

TEST_CASE("chaos: ProcessPoolExecutor workers", "[chaos][pool]") {
    chaos::Scope scope("ProcessPoolExecutor(2) workers (fork)");
    chaos::Row& row = scope.row();
    std::mt19937 rng(11);
    const long target = chaos::scaled(2500);
    while (row.kills < target && row.hangs == 0) {
        // A killed worker breaks the executor (BrokenProcessPool for what
        // was pending): each kill gets a fresh one, as a user would.
        mproc::ProcessPoolExecutor ex(2, StartMethod::fork);
        std::vector<mproc::Future<long>> fs;
        for (long i = 0; i < 16; ++i) fs.push_back(ex.submit(triple, i));
        if (kill_one(ex.worker_pids(), rng, 2000)) ++row.kills;
        for (long i = 0; i < 16; ++i) {
            try {
                if (fs[static_cast<std::size_t>(i)].result(Duration(chaos::kHangSeconds)) != i * 3) ++row.wrong;
            } catch (const mproc::BrokenProcessPool&) {
            } catch (const mproc::TimeoutError&) {
                ++row.hangs;
                break;
            }
        }
        ex.shutdown(true);
    }
    chaos::require_clean(scope.finish());
}

// ---- deaths of the processes that own things ------------------------------------

namespace {

struct Owned {
    std::int32_t pids[8];
    std::uint64_t ops;
    std::uint32_t ready;
};

}  // namespace

TEST_CASE("chaos: kill -9 of a pool's parent: its workers go too", "[chaos][pool]") {
    chaos::Scope scope("a pool's parent (fork)");
    chaos::Row& row = scope.row();
    mproc::Value<Owned> sh(Owned{});
    const long target = chaos::scaled(300);
    for (long k = 0; k < target; ++k) {
        Owned& o = sh.value();
        std::atomic_ref<std::uint32_t>(o.ready).store(0);
        chaos::Child parent = chaos::fork_role([&] {
            mproc::Pool pool(mproc::PoolOptions{.processes = 2, .start_method = StartMethod::fork});
            auto pids = pool.worker_pids();
            for (std::size_t i = 0; i < pids.size() && i < 8; ++i) o.pids[i] = pids[i];
            std::atomic_ref<std::uint32_t>(o.ready).store(static_cast<std::uint32_t>(pids.size()));
            std::vector<long> in(32, 1);
            for (;;) {
                pool.map(triple, in);
                std::atomic_ref<std::uint64_t>(o.ops).fetch_add(1);
            }
        });
        if (!chaos::wait_for([&] { return std::atomic_ref<std::uint32_t>(o.ready).load() > 0; })) {
            ++row.hangs;
            ::kill(parent.pid, SIGKILL);
            parent.reap();
            break;
        }
        const std::uint64_t base = std::atomic_ref<std::uint64_t>(o.ops).load();
        chaos::wait_for([&] { return std::atomic_ref<std::uint64_t>(o.ops).load() > base + k % 3; });
        ::kill(parent.pid, SIGKILL);
        parent.reap();
        ++row.kills;
        // Its workers must follow it (counted as orphans by the scope if not;
        // they are the scope's grandchildren, reparented here).
        const std::uint32_t n = std::atomic_ref<std::uint32_t>(o.ready).load();
        bool gone = chaos::wait_for([&] {
            for (std::uint32_t i = 0; i < n; ++i)
                if (::kill(o.pids[i], 0) == 0) {
                    char path[64];
                    std::snprintf(path, sizeof path, "/proc/%d/stat", o.pids[i]);
                    FILE* f = std::fopen(path, "r");
                    char state = 'Z';
                    if (f) {
                        if (std::fscanf(f, "%*d %*s %c", &state) != 1) state = 'Z';
                        std::fclose(f);
                    }
                    if (state != 'Z') return false;
                }
            return true;
        }, 10);
        if (!gone) ++row.orphans;
    }
    chaos::require_clean(scope.finish());
}

namespace {
void manager_client(std::string address, std::string authkey, mproc::Value<Owned> sh) {
    auto m = mproc::Manager::connect(address, authkey);
    auto d = m.lookup<mproc::DictProxy<std::string, long>>("counts");
    for (;;) {
        try {
            d.modify("n", [](long& v) { v += 1; });
        } catch (const mproc::Error&) {
            std::_Exit(0);  // the server is gone: EOFError, as it should be
        }
        std::atomic_ref<std::uint64_t>(sh.value().ops).fetch_add(1);
    }
}
}  // namespace

TEST_CASE("chaos: kill -9 of a serving manager's process: clients get errors and nothing hangs",
          "[chaos][manager]") {
    chaos::Scope scope("a serving manager's process (fork)");
    chaos::Row& row = scope.row();
    mproc::Value<Owned> sh(Owned{});
    mproc::Array<char> address(64);
    const std::string authkey = "chaos-key";
    const long target = chaos::scaled(300);
    for (long k = 0; k < target; ++k) {
        Owned& o = sh.value();
        std::atomic_ref<std::uint32_t>(o.ready).store(0);
        chaos::Child server = chaos::fork_role([&] {
            mproc::Manager m;
            auto d = m.dict<std::string, long>();
            d["n"] = 0;
            m.publish("counts", d);
            std::string a = m.serve("127.0.0.1:0", authkey);
            std::snprintf(address.data(), 64, "%s", a.c_str());
            std::atomic_ref<std::uint32_t>(o.ready).store(1);
            for (;;) ::pause();
        });
        if (!chaos::wait_for([&] { return std::atomic_ref<std::uint32_t>(o.ready).load() == 1; })) {
            ++row.hangs;
            ::kill(server.pid, SIGKILL);
            server.reap();
            break;
        }
        mproc::Process client(manager_client, std::string(address.data()), authkey, sh);
        client.start_method(k % 2 ? StartMethod::spawn : StartMethod::fork).start();
        const std::uint64_t base = std::atomic_ref<std::uint64_t>(o.ops).load();
        chaos::wait_for([&] { return std::atomic_ref<std::uint64_t>(o.ops).load() > base + 10; });
        ::kill(server.pid, SIGKILL);
        server.reap();
        ++row.kills;
        if (!client.join(Duration(chaos::kHangSeconds))) {
            ++row.hangs;
            client.kill();
            client.join();
        } else if (client.exitcode() != 0) {
            ++row.wrong;
        }
    }
    chaos::require_clean(scope.finish());
}

TEST_CASE("chaos: kill -9 of the fork server: the next forkserver child starts anyway", "[chaos][process]") {
    chaos::Scope scope("the fork server");
    chaos::Row& row = scope.row();
    mproc::Value<Owned> sh(Owned{});
    const long target = chaos::scaled(300);
    for (long k = 0; k < target; ++k) {
        mproc::Process p([](mproc::Value<Owned> s) { std::atomic_ref<std::uint64_t>(s.value().ops).fetch_add(1); },
                         sh);
        try {
            p.start_method(StartMethod::forkserver).start();
        } catch (const mproc::Error& e) {
            // No hang, but a start that should have worked: counted.
            std::fprintf(stderr, "chaos: forkserver start %ld failed: %s\n", k, e.what());
            ++row.wrong;
            continue;
        }
        if (!p.join(Duration(chaos::kHangSeconds))) {
            ++row.hangs;
            break;
        }
        if (p.exitcode() != 0) ++row.wrong;
        if (auto fs = chaos::fork_server_pid()) {
            ::kill(*fs, SIGKILL);
            if (!chaos::wait_for([&] { return chaos::fork_server_pid() != fs; })) ++row.hangs;
            ++row.kills;
        }
    }
    if (std::atomic_ref<std::uint64_t>(sh.value().ops).load() + static_cast<std::uint64_t>(row.wrong) !=
        static_cast<std::uint64_t>(target))
        ++row.lost;
    chaos::require_clean(scope.finish());
}
