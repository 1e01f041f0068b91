// ProgressLine: the `{.progress = true}` line of a map (pool_jobs.hpp).
// On a terminal: one line redrawn at most 10 times a second,
//   [##########----------]  512/1024  50%  830.2/s  ETA 0:00:01
// elsewhere (a log file, CI): a plain line every 5 seconds and at the end.
// Advanced from the pool's result thread, finished from there or the
// consumer's; a mutex keeps the writes whole.
#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>

#include "mproc/detail/pool_jobs.hpp"
#include "os/os.hpp"
#include "os/process.hpp"

namespace mproc::detail {

struct ProgressLine::Impl {
    using Clock = std::chrono::steady_clock;
    std::mutex mu;
    std::size_t total = 0;
    std::size_t done = 0;
    bool finished = false;
    bool tty = os::is_terminal(2);
    Clock::time_point start = Clock::now();
    Clock::time_point last{};

    static std::string clock_text(double s) {
        auto t = static_cast<long>(s + 0.5);
        char buf[32];
        std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
        return buf;
    }

    void draw(bool final) {
        const auto now = Clock::now();
        if (!final && now - last < (tty ? std::chrono::milliseconds(100) : std::chrono::milliseconds(5000))) return;
        last = now;
        const double secs = std::chrono::duration<double>(now - start).count();
        const double rate = secs > 0 ? static_cast<double>(done) / secs : 0.0;
        std::string line;
        char buf[128];
        if (total) {
            const int width = 20;
            const auto filled = static_cast<int>(static_cast<double>(done) * width / static_cast<double>(total));
            line = tty ? "\r[" + std::string(static_cast<std::size_t>(filled), '#') +
                             std::string(static_cast<std::size_t>(width - filled), '-') + "]"
                       : "mproc progress:";
            std::snprintf(buf, sizeof buf, " %zu/%zu %3.0f%% %.1f/s", done, total,
                          100.0 * static_cast<double>(done) / static_cast<double>(total), rate);
            line += buf;
            if (rate > 0 && done < total)
                line += " ETA " + clock_text(static_cast<double>(total - done) / rate);
        } else {
            std::snprintf(buf, sizeof buf, " %zu done %.1f/s", done, rate);
            line = (tty ? "\r" : "mproc progress:") + std::string(buf);
        }
        if (final || !tty) line += final && tty ? " in " + clock_text(secs) + "\n" : "\n";
        try {
            os::write_all(2, std::as_bytes(std::span(line.data(), line.size())), "stderr");
        } catch (...) {
            // A closed stderr does not stop the map.
        }
    }
};

ProgressLine::ProgressLine(std::size_t total) : impl_(std::make_unique<Impl>()) { impl_->total = total; }

ProgressLine::~ProgressLine() { finish(); }

void ProgressLine::set_total(std::size_t total) {
    std::lock_guard<std::mutex> g(impl_->mu);
    impl_->total = total;
}

void ProgressLine::advance(std::size_t n) {
    std::lock_guard<std::mutex> g(impl_->mu);
    if (impl_->finished) return;
    impl_->done += n;
    impl_->draw(false);
}

void ProgressLine::finish() {
    std::lock_guard<std::mutex> g(impl_->mu);
    if (impl_->finished) return;
    impl_->finished = true;
    impl_->draw(true);
}

}  // namespace mproc::detail
