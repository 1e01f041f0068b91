// The submitter's timer thread: per-task timeouts and interrupting cancels.
// A chunk with a timeout is timed from the moment a worker claims it (the
// claim records the time); past it the chunk fails with TimeoutError and
// the claiming worker is ended. A doomed chunk (cancel(interrupt=true),
// or a timeout) has its worker ended as soon as a claim names it. Chunks
// not claimed yet are looked for again every kRecheckNs.
#include "pool/submitter_impl.hpp"

namespace mproc::detail {

void PoolCore::Impl::timer_loop() {
    const auto n = static_cast<std::uint32_t>(transport->size());
    std::vector<SlotState> slots(n);
    std::unique_lock<std::mutex> g(mu);
    while (!timer_stop) {
        if (watched == 0) {
            timer_parked = true;
            timer_cv.wait(g);
            timer_parked = false;
            continue;
        }
        g.unlock();
        for (std::uint32_t i = 0; i < n; ++i) slots[i] = transport->slot_state(i);
        g.lock();
        const std::uint64_t now = os::monotonic_ns();
        std::uint64_t next = UINT64_MAX;
        std::vector<std::uint32_t> kill;
        std::vector<Failure> expired;
        for (auto& [id, f] : inflight) {
            if ((!f.timeout && !f.doomed) || f.ended) continue;
            std::uint32_t slot = n;
            for (std::uint32_t i = 0; i < n; ++i)
                if (slots[i].chunk == id) slot = i;
            if (slot == n) {
                next = std::min(next, now + kRecheckNs);
                continue;
            }
            if (!f.doomed) {
                const auto limit = static_cast<std::uint64_t>(f.timeout->count() * 1e9);
                const std::uint64_t deadline = slots[slot].started_ns + limit;
                if (now < deadline) {
                    next = std::min(next, deadline);
                    continue;
                }
                f.doomed = true;
                expired.push_back({f.job, f.first, f.count,
                                   std::make_exception_ptr(TimeoutError(
                                       "mproc pool: the task ran past its timeout of " +
                                       std::to_string(f.timeout->count()) +
                                       " s; its worker was killed and replaced"))});
            }
            f.ended = true;
            ending.insert(slot);
            kill.push_back(slot);
        }
        g.unlock();
        deliver(expired);
        for (std::uint32_t s : kill) transport->end_worker(s, true);
        g.lock();
        if (timer_stop || !kill.empty()) continue;  // look again now: the ended are skipped
        if (next == UINT64_MAX) {
            // Only chunks whose workers were ended: wait for their deaths
            // (or a new timed chunk) to be reported.
            timer_parked = true;
            timer_cv.wait(g);
            timer_parked = false;
        } else {
            const std::uint64_t t = os::monotonic_ns();
            if (next > t) timer_cv.wait_for(g, std::chrono::nanoseconds(next - t));
        }
    }
}

bool PoolCore::Impl::interrupt(const Job* job, std::exception_ptr e) {
    std::vector<Failure> fs;
    {
        std::lock_guard<std::mutex> g(mu);
        for (auto it = backlog.begin(); it != backlog.end();) {
            if (it->job.get() == job) {
                fs.push_back({std::move(it->job), it->first, it->count, e});
                it = backlog.erase(it);
            } else {
                ++it;
            }
        }
        for (auto& [id, f] : inflight) {
            if (f.job.get() != job || f.doomed) continue;
            if (!f.timeout) ++watched;
            f.doomed = true;
            fs.push_back({f.job, f.first, f.count, e});
        }
        if (watched) timer_cv.notify_all();
        if (backlog.empty() && inflight.empty()) idle_cv.notify_all();
    }
    const bool any = !fs.empty();
    deliver(fs);
    return any;
}

}  // namespace mproc::detail
