// Logging (see include/mproc/log.hpp). One ring per log: the first
// log_to_stderr()/add_sink() makes it and starts the writer thread in that
// process; every process with the ring puts whole records into it; the
// writer takes them one at a time and writes each as one write(2), then
// runs the sinks. The ring is FIFO and a process's records enter it in the
// order it makes them: order per process holds.
//
// How children get the ring: forked ones inherit it with the memory; spawn
// and forkserver ones through the process layer's child-setup hook
// (process_setup.hpp, piece "mproc.log": the ring's handle and the level),
// which every Process start uses — plain Processes, pool and executor
// workers, and their children alike.
//
// Forks: a fork may come from any thread while another holds one of our
// mutexes. `mu` is taken around every fork (os::at_fork: the prepare
// handler locks it, both sides unlock it), so a forked child finds it free;
// it is held only for short, non-blocking steps (never around a sink, a
// write or a fork). `write_mu` is held around sinks, which may block, so
// it is not: a forked child never takes it, because only the writer's own
// process drains (write_mu is taken only where writer_pid is this process,
// and a child's writer_pid is its parent's, or 0 when it inherited no ring,
// in which case no writer existed to hold write_mu). The ring pointer, the
// level and writer_pid are atomics that log() and the child-setup save read
// without a lock.
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <tuple>

#include "mproc/detail/channel.hpp"
#include "mproc/detail/process_setup.hpp"
#include "mproc/log.hpp"
#include "mproc/process.hpp"
#include "mproc/serialization.hpp"
#include "os/os.hpp"
#include "os/process.hpp"

namespace mproc {

namespace {

constexpr std::size_t kLogRing = std::size_t{1} << 20;
using Wire = std::tuple<int, std::string, int, std::string>;  // level, process, pid, message

struct LogState {
    std::mutex mu;                // sinks, to_stderr, the ring's creation; free in a forked child
    std::mutex write_mu;          // one record handled at a time (the writer's process only)
    std::atomic<int> level{0};
    // Where records go: this process's own ring or its parent's. Never
    // freed (records are logged until the process ends).
    std::atomic<detail::ChannelCore*> ring{nullptr};
    // The ring this process's writer drains (null: no writer here).
    std::atomic<detail::ChannelCore*> own{nullptr};
    std::atomic<int> writer_pid{0};
    bool to_stderr = false;
    std::vector<std::function<void(const LogRecord&)>> sinks;
};

LogState& state() {
    static LogState* s = [] {
        auto* st = new LogState;  // never destroyed: workers log until exit
        os::hold_across_fork(st->mu, os::kForkRankLog);
        return st;
    }();
    return *s;
}

void handle(LogState& s, std::span<const std::byte> bytes) {
    LogRecord rec;
    try {
        Wire w = detail::load_from<Wire>(bytes);
        rec.level = static_cast<LogLevel>(std::get<0>(w));
        rec.process = std::move(std::get<1>(w));
        rec.pid = std::get<2>(w);
        rec.message = std::move(std::get<3>(w));
    } catch (...) {
        return;  // a torn or foreign record: skip it
    }
    std::vector<std::function<void(const LogRecord&)>> sinks;
    bool err;
    {
        std::lock_guard<std::mutex> g(s.mu);
        sinks = s.sinks;
        err = s.to_stderr;
    }
    if (err) {
        // Appended piece by piece: GCC 12 at -O3 warns falsely (-Wrestrict)
        // on a "[" + ... chain.
        std::string line(1, '[');
        line += level_name(rec.level);
        line += '/';
        line += rec.process;
        line += "] ";
        line += rec.message;
        line += '\n';
        try {
            os::write_all(2, std::as_bytes(std::span(line.data(), line.size())), "stderr");
        } catch (...) {
        }
    }
    for (auto& sink : sinks) {
        try {
            sink(rec);
        } catch (...) {
        }
    }
}

// Handles the records in `ring` now; with `wait`, waits for the first.
bool drain_one(LogState& s, detail::ChannelCore& ring, Timeout wait) {
    std::lock_guard<std::mutex> g(s.write_mu);
    detail::ReadReservation r;
    if (!ring.begin_get(r, wait)) return false;
    handle(s, r.bytes());
    r.commit();
    return true;
}

// Handles every record in the ring, if this process runs the writer.
void drain_all() noexcept {
    LogState& s = state();
    detail::ChannelCore* own = s.own.load(std::memory_order_acquire);
    if (!own || s.writer_pid.load() != os::pid()) return;
    try {
        while (drain_one(s, *own, Duration(0))) {
        }
    } catch (...) {
    }
}

void flush_at_exit() { drain_all(); }

// Under s.mu: makes the ring and starts the writer, once.
void start_writer(LogState& s) {
    if (s.ring.load()) return;  // this process's, or its parent's (a child)
    auto* ring = new detail::ChannelCore(kLogRing, 0, detail::ChannelCore::Wait::futex);
    s.writer_pid = os::pid();
    s.own.store(ring, std::memory_order_release);
    s.ring.store(ring, std::memory_order_release);
    std::thread([&s, ring] {
        for (;;) {
            // Wait outside write_mu, so flush() may drain meanwhile.
            ring->poll(std::nullopt);
            drain_one(s, *ring, Duration(0));
        }
    }).detach();
    std::atexit(flush_at_exit);
}

// ---- the child-setup piece: how spawn and forkserver children get the ring --

void save_link(detail::HandleWriter& w) {
    LogState& s = state();
    detail::ChannelCore* ring = s.ring.load(std::memory_order_acquire);
    w.value(ring ? 1 : 0);
    w.value(static_cast<std::uint64_t>(s.level.load()));
    if (ring) ring->mproc_export(w);
}

void load_link(detail::HandleReader& r) {
    LogState& s = state();
    const bool on = r.value() != 0;
    const int level = static_cast<int>(r.value());
    if (on) {
        auto* ring = new detail::ChannelCore(detail::ChannelCore::mproc_import(r, nullptr));
        // The parent's writer wins over one a static initializer here may
        // have started: records go to the parent.
        s.ring.store(ring, std::memory_order_release);
    }
    s.level = level;
}

const detail::ChildSetup kLogPiece{"mproc.log", save_link, load_link, drain_all};
[[maybe_unused]] const bool kLogPieceRegistered = detail::register_child_setup(kLogPiece);

}  // namespace

std::string_view level_name(LogLevel level) noexcept {
    switch (level) {
        case LogLevel::debug: return "DEBUG";
        case LogLevel::info: return "INFO";
        case LogLevel::warning: return "WARNING";
        case LogLevel::error: return "ERROR";
        case LogLevel::critical: return "CRITICAL";
        default: return "NOTSET";
    }
}

void Logger::log(LogLevel level, std::string_view message) {
    LogState& s = state();
    if (!is_enabled_for(level)) return;
    detail::ChannelCore* ring = s.ring.load(std::memory_order_acquire);
    if (!ring) return;
    detail::VectorOutBuf out(64 + message.size());
    detail::dump_to(out, Wire{static_cast<int>(level), current_process().name(), static_cast<int>(os::pid()),
                              std::string(message)});
    ring->put(out.take(), Duration(1.0));
}

void Logger::set_level(LogLevel level) { state().level = static_cast<int>(level); }

LogLevel Logger::level() const { return static_cast<LogLevel>(state().level.load()); }

bool Logger::is_enabled_for(LogLevel level) const { return static_cast<int>(level) >= state().level.load(); }

void Logger::add_sink(std::function<void(const LogRecord&)> sink) {
    LogState& s = state();
    std::lock_guard<std::mutex> g(s.mu);
    s.sinks.push_back(std::move(sink));
    start_writer(s);
}

void Logger::flush() { drain_all(); }

Logger& get_logger() {
    static Logger logger;
    return logger;
}

Logger& log_to_stderr(LogLevel level) {
    LogState& s = state();
    {
        std::lock_guard<std::mutex> g(s.mu);
        s.to_stderr = true;
        start_writer(s);
    }
    if (level != LogLevel::notset) get_logger().set_level(level);
    return get_logger();
}

}  // namespace mproc
