// The ring's two wake transports. See ring_wait.hpp.
#include "channel/ring_wait.hpp"

#include "mproc/errors.hpp"
#include "os/fault.hpp"
#include "os/socket.hpp"

namespace mproc::detail {

namespace {

void stamp(const WaitWord& word, std::atomic<std::uint64_t>& woken_at) noexcept {
    if (word.has_sleepers()) woken_at.store(os::monotonic_ns(), std::memory_order_relaxed);
}

class FutexWaker final : public RingWaker {
public:
    void publish(WaitWord& word, std::atomic<std::uint64_t>& woken_at, int,
                 const char* published_point) const override {
        stamp(word, woken_at);
        // Every commit on a side is made under its lock: one wake-all
        // operation publishes, wakes and clears the sleeper flag.
        word.add(1, kWakeAll, Publishers::exclusive);
        os::fault_point(published_point);
    }
    bool sleep(const std::atomic<std::uint32_t>& word, std::uint32_t value, int,
               const os::Deadline& until) const override {
        return os::futex_wait(&word, value, until);
    }
    Net net() const noexcept override { return Net::none; }
};

class SocketWaker final : public RingWaker {
public:
    void publish(WaitWord& word, std::atomic<std::uint64_t>& woken_at, int link,
                 const char* published_point) const override {
        stamp(word, woken_at);
        const bool sleeping = word.add_and_claim(1);
        os::fault_point(published_point);  // published, its wake-up not yet sent
        if (sleeping && !os::send_wake(link)) throw EOFError("Connection: the other end is closed");
    }
    bool sleep(const std::atomic<std::uint32_t>& word, std::uint32_t value, int link,
               const os::Deadline& until) const override {
        const os::Readiness r = os::wait_and_drain(link, until);
        if (r == os::Readiness::hangup && word.load(std::memory_order_acquire) == value)
            throw EOFError("Connection: the other end is closed");
        return r != os::Readiness::timed_out;
    }
    // A waker killed between its commit and its byte (above) is caught here.
    Net net() const noexcept override { return Net::recheck; }
};

const FutexWaker g_futex;
const SocketWaker g_socket;

}  // namespace

const RingWaker& RingWaker::futex() noexcept { return g_futex; }
const RingWaker& RingWaker::socket() noexcept { return g_socket; }

}  // namespace mproc::detail
