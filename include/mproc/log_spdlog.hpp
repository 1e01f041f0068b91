// mproc::spdlog_sink — an spdlog sink that sends records through mproc's
// log path (<mproc/log.hpp>), so one spdlog logger in the parent collects
// the records of every process (spdlog alone cannot: several processes
// writing one file interleave, spdlog #937). Needs spdlog (Debian's
// libspdlog-dev); include it only where spdlog is available.
//
//   // in every process (workers: in the pool initializer):
//   auto log = std::make_shared<spdlog::logger>("app", std::make_shared<mproc::spdlog_sink_mt>());
//   // in the parent: where the records end up, one at a time
//   mproc::forward_to_spdlog(spdlog::basic_logger_mt("file", "app.log"));
//
// The sink formats nothing itself: the parent's logger formats each record
// (its message is prefixed with the process name). Thread safety: as
// spdlog's sinks (_mt: any thread); records cross processes whole.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include <spdlog/details/null_mutex.h>
#include <spdlog/logger.h>
#include <spdlog/sinks/base_sink.h>

#include "mproc/log.hpp"

namespace mproc {

inline LogLevel from_spdlog(spdlog::level::level_enum l) noexcept {
    switch (l) {
        case spdlog::level::trace:
        case spdlog::level::debug: return LogLevel::debug;
        case spdlog::level::info: return LogLevel::info;
        case spdlog::level::warn: return LogLevel::warning;
        case spdlog::level::err: return LogLevel::error;
        case spdlog::level::critical: return LogLevel::critical;
        default: return LogLevel::notset;
    }
}

inline spdlog::level::level_enum to_spdlog(LogLevel l) noexcept {
    switch (l) {
        case LogLevel::debug: return spdlog::level::debug;
        case LogLevel::info: return spdlog::level::info;
        case LogLevel::warning: return spdlog::level::warn;
        case LogLevel::error: return spdlog::level::err;
        case LogLevel::critical: return spdlog::level::critical;
        default: return spdlog::level::trace;
    }
}

/// Sends each record to mproc's log (to the writer in the parent).
template <class Mutex>
class spdlog_sink final : public spdlog::sinks::base_sink<Mutex> {
protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        get_logger().log(from_spdlog(msg.level), std::string_view(msg.payload.data(), msg.payload.size()));
    }
    void flush_() override {}
};
using spdlog_sink_mt = spdlog_sink<std::mutex>;
using spdlog_sink_st = spdlog_sink<spdlog::details::null_mutex>;

/// In the writer's process: every record, from every process, is logged by
/// `logger` as "[ProcessName] message" at its level.
inline void forward_to_spdlog(std::shared_ptr<spdlog::logger> logger) {
    get_logger().add_sink([logger = std::move(logger)](const LogRecord& r) {
        logger->log(to_spdlog(r.level), "[{}] {}", r.process, r.message);
    });
}

}  // namespace mproc
