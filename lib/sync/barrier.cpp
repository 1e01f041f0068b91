// Barrier. See include/mproc/sync.hpp.
//
// The barrier's word (a WaitWord) holds its generation and whether it is
// broken: state = generation << 1 | broken. Waiters of a round wait for the
// generation to move. Every transition — a round completed, broken, reset —
// is one add() on that word, made under the barrier's (robust) lock and so
// exclusive: it changes the generation and wakes every waiter in one step,
// and a process killed anywhere has made it or not. What the lock also
// guards is written before the step and read only with the generation it
// belongs to:
//  - `arrived`: how many have arrived in generation g, stored as (g, n), so
//    it is void the moment the generation moves, whoever moved it;
//  - `outcome[g & 3]`: how the round that ended in generation g ended,
//    stored as (g, broken) before the transition into g, so a record
//    written by a process killed before its transition is overwritten by
//    the real one. A waiter reads its round's record when it wakes (four
//    transitions later it would be gone: then it reports "completed").
// So the last party killed before its step leaves the round waiting for a
// replacement; killed after, the round is over and its waiters are awake.
#include <algorithm>

#include "mproc/sync.hpp"

#include "os/fault.hpp"
#include "os/os.hpp"
#include "sync/state.hpp"
#include "sync/waiter.hpp"

namespace mproc {
namespace detail {

struct BarrierState {
    pthread_mutex_t m;
    WaitWord word;  // generation << 1 | broken
    std::uint32_t magic = kBarrierMagic;
    std::uint32_t parties = 0;
    std::atomic<std::uint64_t> arrived{0};  // generation << 32 | count; under m
    std::atomic<std::uint32_t> outcome[4]{};  // generation << 1 | broken; under m
};

}  // namespace detail

namespace {

constexpr std::uint32_t kGenMask = detail::WaitWord::kStateMask >> 1;
constexpr std::uint32_t gen_of(std::uint32_t state) { return state >> 1; }
constexpr bool broken_in(std::uint32_t state) { return (state & 1u) != 0; }

// The barrier's own short critical sections. A dead holder left nothing
// half-done (see above), so owner death needs no repair.
struct BarrierGuard {
    explicit BarrierGuard(detail::BarrierState* st) : st_(st) {
        os::robust_mutex_lock(&st_->m, os::Deadline::never());
    }
    ~BarrierGuard() { os::robust_mutex_unlock(&st_->m); }
    detail::BarrierState* st_;
};

// Under the lock: ends generation `gen` (the current one) — its round
// `broken_round` or completed — and leaves the barrier broken or not.
void transition(detail::BarrierState* st, std::uint32_t gen, bool broken_round, bool stay_broken) {
    const std::uint32_t now = st->word.state();
    const std::uint32_t next = (gen + 1) & kGenMask;
    st->outcome[next & 3].store((next << 1) | (broken_round ? 1u : 0u), std::memory_order_release);
    const std::uint32_t target = (next << 1) | (stay_broken ? 1u : 0u);
    os::fault_point("sync.publish");
    st->word.add((target - now) & detail::WaitWord::kStateMask, detail::kWakeAll,
                 detail::Publishers::exclusive);
    os::fault_point("sync.published");
}

std::uint32_t arrived_in(const detail::BarrierState* st, std::uint32_t gen) {
    const std::uint64_t a = st->arrived.load(std::memory_order_relaxed);
    return static_cast<std::uint32_t>(a >> 32) == gen ? static_cast<std::uint32_t>(a) : 0;
}

}  // namespace

Barrier::Barrier(unsigned parties, std::function<void()> action, Timeout timeout)
    : action_(std::move(action)), default_timeout_(timeout) {
    if (parties == 0) throw ValueError("Barrier: parties must be at least 1");
    std::tie(seg_, st_) = detail::new_state<detail::BarrierState>("mproc-barrier");
    os::robust_mutex_init(&st_->m, false);
    st_->parties = parties;
}

unsigned Barrier::wait(Timeout timeout) const {
    if (!timeout) timeout = default_timeout_;
    const os::Deadline deadline = os::Deadline::after(timeout);
    unsigned index;
    std::uint32_t gen;
    {
        BarrierGuard g(st_);
        const std::uint32_t s = st_->word.state();
        if (broken_in(s)) throw BrokenBarrierError("Barrier::wait(): the barrier is broken");
        gen = gen_of(s);
        index = arrived_in(st_, gen);
        if (index + 1 < st_->parties) {
            st_->arrived.store((std::uint64_t{gen} << 32) | (index + 1), std::memory_order_relaxed);
        } else {
            if (action_) {
                try {
                    action_();
                } catch (...) {
                    transition(st_, gen, true, true);
                    throw;
                }
            }
            transition(st_, gen, false, false);
            return index;
        }
    }
    auto round_over = [gen](std::uint32_t s) { return gen_of(s) != gen; };
    bool ok = os::spin_until([&] { return round_over(st_->word.state()); }, os::spin_budget_ns()) ||
              st_->word.wait(round_over, deadline, detail::Net::none, "sync.woken");
    if (!ok) {
        BarrierGuard g(st_);
        if (gen_of(st_->word.state()) == gen) {
            transition(st_, gen, true, true);
            throw BrokenBarrierError("Barrier::wait(): timed out, the barrier is now broken");
        }
    }
    const std::uint32_t next = (gen + 1) & kGenMask;
    const std::uint32_t o = st_->outcome[next & 3].load(std::memory_order_acquire);
    if ((o >> 1) == next && (o & 1u))
        throw BrokenBarrierError("Barrier::wait(): the barrier was broken while waiting");
    return index;
}

void Barrier::abort() const {
    BarrierGuard g(st_);
    const std::uint32_t s = st_->word.state();
    if (!broken_in(s)) transition(st_, gen_of(s), true, true);
}

void Barrier::reset() const {
    BarrierGuard g(st_);
    const std::uint32_t s = st_->word.state();
    // Waiters of the current round get BrokenBarrierError; the barrier is
    // then as new (a broken one has no waiters left).
    if (broken_in(s) || arrived_in(st_, gen_of(s)) > 0) transition(st_, gen_of(s), true, false);
}

unsigned Barrier::parties() const noexcept { return st_->parties; }

unsigned Barrier::n_waiting() const noexcept {
    const std::uint32_t s = st_->word.state();
    return broken_in(s) ? 0 : arrived_in(st_, gen_of(s));
}

bool Barrier::broken() const noexcept { return broken_in(st_->word.state()); }

// The handle carries the default timeout (nanoseconds + 1; 0 for none), so
// a spawned party times out as the creator's would. The action cannot
// travel (a std::function has no reference to send): see sync.hpp.
void Barrier::mproc_export(detail::HandleWriter& w) const {
    w.segment(seg_, st_);
    std::uint64_t ns = 0;
    if (default_timeout_) {
        const double t = std::max(0.0, default_timeout_->count());
        ns = static_cast<std::uint64_t>(std::min(t, 1e9) * 1e9) + 1;
    }
    w.value(ns);
}

Barrier Barrier::mproc_import(detail::HandleReader& r) {
    auto [seg, p] = r.segment(sizeof(detail::BarrierState));
    Barrier b(std::move(seg), detail::checked<detail::BarrierState>(p, detail::kBarrierMagic, "Barrier"));
    if (const std::uint64_t ns = r.value()) b.default_timeout_ = Duration(static_cast<double>(ns - 1) * 1e-9);
    return b;
}

}  // namespace mproc
