// Logging: records from the parent and from pool workers (fork, spawn,
// forkserver) reach the one writer in the parent, whole, prefixed with the
// process name, in order per process; the level filters where records are
// made; the spdlog sink (when spdlog is there) goes through the same path.
#include <catch2/catch.hpp>

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <mproc/futures.hpp>
#include <mproc/log.hpp>
#include <mproc/pool.hpp>

#ifdef MPROC_TEST_SPDLOG
#include <spdlog/sinks/ostream_sink.h>
#include <sstream>
#include <mproc/log_spdlog.hpp>
#endif

namespace {

std::mutex g_mu;
std::vector<mproc::LogRecord> g_records;

int log_five(int x) {
    for (int i = 0; i < 5; ++i) mproc::get_logger().info("item " + std::to_string(x) + " step " + std::to_string(i));
    mproc::get_logger().debug("dropped: below the level");
    return x;
}

#ifdef MPROC_TEST_SPDLOG
int log_spdlog(int x) {
    static auto logger = std::make_shared<spdlog::logger>("w", std::make_shared<mproc::spdlog_sink_mt>());
    logger->warn("spdlog from task {}", x);
    return x;
}
#endif

}  // namespace

TEST_CASE("log records from pool workers reach the parent's writer, in order per process") {
    static bool once = [] {
        mproc::log_to_stderr(mproc::LogLevel::info);
        mproc::get_logger().add_sink([](const mproc::LogRecord& r) {
            std::lock_guard<std::mutex> g(g_mu);
            g_records.push_back(r);
        });
        return true;
    }();
    (void)once;
    auto method = GENERATE(mproc::StartMethod::fork, mproc::StartMethod::spawn, mproc::StartMethod::forkserver);
    {
        std::lock_guard<std::mutex> g(g_mu);
        g_records.clear();
    }
    mproc::get_logger().info("parent says hello");
    {
        mproc::Pool pool(mproc::PoolOptions{.processes = 2, .start_method = method});
        CHECK(pool.map(log_five, std::vector<int>{0, 1, 2, 3}, 1) == std::vector<int>{0, 1, 2, 3});
        pool.close();
        pool.join();
    }
    mproc::get_logger().flush();
    std::lock_guard<std::mutex> g(g_mu);
    std::map<int, std::vector<std::string>> per_pid;
    std::size_t worker_records = 0;
    bool parent_seen = false;
    for (auto& r : g_records) {
        CHECK(r.level == mproc::LogLevel::info);
        if (r.process == "MainProcess") {
            parent_seen = parent_seen || r.message == "parent says hello";
            continue;
        }
        CHECK(r.process.rfind("PoolWorker-", 0) == 0);
        per_pid[r.pid].push_back(r.message);
        ++worker_records;
    }
    CHECK(parent_seen);
    CHECK(worker_records == 20);
    // Within one process, each item's steps come in order.
    for (auto& [pid, msgs] : per_pid) {
        std::map<std::string, int> next_step;
        for (auto& m : msgs) {
            auto item = m.substr(0, m.find(" step "));
            int step = std::stoi(m.substr(m.find(" step ") + 6));
            CHECK(step == next_step[item]++);
        }
    }
}

#ifdef MPROC_TEST_SPDLOG
TEST_CASE("the spdlog sink sends workers' records to one spdlog logger in the parent") {
    std::ostringstream out;
    auto parent = std::make_shared<spdlog::logger>("parent", std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
    parent->set_pattern("%l %v");
    mproc::forward_to_spdlog(parent);
    mproc::log_to_stderr(mproc::LogLevel::info);
    {
        mproc::ProcessPoolExecutor ex(mproc::ExecutorOptions{.max_workers = 1, .start_method = mproc::StartMethod::spawn});
        CHECK(ex.submit(log_spdlog, 7).result() == 7);
    }
    mproc::get_logger().flush();
    parent->flush();
    CHECK(out.str().find("warning [PoolWorker-1] spdlog from task 7") != std::string::npos);
}
#endif
