// mproc logging — multiprocessing.get_logger() / log_to_stderr(): one log
// for the parent and every worker and child.
//
//   mproc::log_to_stderr(mproc::LogLevel::info);    // before starting workers
//   mproc::get_logger().info("starting");           // in any process
//   // stderr:  [INFO/MainProcess] starting
//   //          [INFO/PoolWorker-1] ...
//
// Records travel through one shared-memory ring to one writer thread in the
// process that called log_to_stderr() (or add_sink()) first, which writes
// them whole, prefixed with the level and the process name, in order per
// process (records of different processes interleave only as whole lines).
// Every child started after that logs through the same writer, under every
// start method: a plain Process, Pool and ProcessPoolExecutor workers, and
// their own children (forked ones inherit the ring; spawn and forkserver
// ones get it, with the level, before their target runs). A child started
// while nothing is configured anywhere may call log_to_stderr() itself: it
// then has its own writer and stderr, and its records are written when it
// ends at the latest.
//
// Sinks (add_sink) run on the writer thread of that process, one record at a
// time: <mproc/log_spdlog.hpp> has an spdlog sink that logs through this
// path, so one spdlog logger collects every process's records.
//
// Thread safety: every call may be made from any thread, and a fork from
// any thread leaves the child a usable logger (the log's own lock is taken
// around forks; log() takes none). log() blocks only while the ring is
// full. A child that dies mid-record, kill -9 included, loses at most that
// record (a record is published whole or not at all) and never stops the
// others' records. A record that finds the ring full waits for room at most
// a second, then is dropped (the writer's process may be gone).
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace mproc {

/// Python's logging levels.
enum class LogLevel : int { notset = 0, debug = 10, info = 20, warning = 30, error = 40, critical = 50 };

/// "INFO" for LogLevel::info.
std::string_view level_name(LogLevel level) noexcept;

struct LogRecord {
    LogLevel level = LogLevel::notset;
    std::string process;  // the process's name (MainProcess, PoolWorker-1, ...)
    int pid = 0;
    std::string message;
};

/// multiprocessing's logger: process-wide, shared by every thread.
class Logger {
public:
    /// Sends a record (if `level` passes the logger's level) to the writer.
    void log(LogLevel level, std::string_view message);
    void debug(std::string_view m) { log(LogLevel::debug, m); }
    void info(std::string_view m) { log(LogLevel::info, m); }
    void warning(std::string_view m) { log(LogLevel::warning, m); }
    void error(std::string_view m) { log(LogLevel::error, m); }
    void critical(std::string_view m) { log(LogLevel::critical, m); }
    /// Records below `level` are dropped where they are made (in the
    /// process that makes them; workers take the parent's at their start).
    void set_level(LogLevel level);
    LogLevel level() const;
    bool is_enabled_for(LogLevel level) const;
    /// A destination in this (the writer's) process; starts the writer.
    void add_sink(std::function<void(const LogRecord&)> sink);
    /// Waits until every record sent so far from this process is written.
    void flush();
};

/// multiprocessing.get_logger().
Logger& get_logger();
/// multiprocessing.log_to_stderr(level): records go to stderr as
/// "[LEVEL/ProcessName] message"; sets the level unless notset (then
/// records of any level pass). Returns the logger.
Logger& log_to_stderr(LogLevel level = LogLevel::notset);

}  // namespace mproc
