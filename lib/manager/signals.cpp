// Manager Semaphores, Events and Barriers: state words guarded by the
// object's robust lock, each change one store, waits on the object's wait
// word (waiter.hpp). None has an owner, so a process killed at any point
// leaves each whole; one killed inside Barrier::wait leaves the others to
// their timeouts, as with mproc::Barrier.
#include <string>

#include "manager/ops_impl.hpp"
#include "mproc/errors.hpp"

namespace mproc::detail::mgr {

/// Waits (the object's lock released) until ready() under the lock, or the
/// deadline: ready() is called with the lock held and returns true when
/// done. False on timeout, after a last look.
template <class Ready>
bool wait_until(const Target& t, const os::Deadline& deadline, Ready ready) {
    for (;;) {
        std::uint32_t seen;
        {
            Locked g(t);
            if (ready()) return true;
            seen = wait_token(t);
        }
        if (!wait(t.obj->change, seen, deadline)) {
            Locked g(t);
            return ready();
        }
    }
}

// ---- Semaphore ----------------------------------------------------------------------

bool impl::sem_acquire(const Target& t, Timeout timeout) {
    SemaphoreState& s = t.state<SemaphoreState>();
    return wait_until(t, os::Deadline::after(timeout), [&] {
        const std::uint64_t v = load(s.value);
        if (v == 0) return false;
        store(s.value, v - 1);
        return true;
    });
}

void impl::sem_release(const Target& t, std::uint64_t n) {
    SemaphoreState& s = t.state<SemaphoreState>();
    Locked g(t);
    const std::uint64_t v = load(s.value);
    const std::uint64_t bound = load(s.bound);
    if ((bound != 0 && (n > bound || v > bound - n)) || v > UINT64_MAX - n)
        throw ValueError("mproc BoundedSemaphore released too many times");
    store(s.value, v + n);
    wake_all(t.obj->change);
}

std::uint64_t impl::sem_value(const Target& t) { return load(t.state<SemaphoreState>().value); }

// ---- Event --------------------------------------------------------------------------

void impl::event_set(const Target& t) {
    Locked g(t);
    store(t.state<EventState>().flag, 1);
    wake_all(t.obj->change);
}

void impl::event_clear(const Target& t) {
    Locked g(t);
    store(t.state<EventState>().flag, 0);
}

bool impl::event_is_set(const Target& t) { return load(t.state<EventState>().flag) != 0; }

bool impl::event_wait(const Target& t, Timeout timeout) {
    EventState& s = t.state<EventState>();
    return wait_until(t, os::Deadline::after(timeout), [&] { return load(s.flag) != 0; });
}

// ---- Barrier ------------------------------------------------------------------------

namespace {

struct Round {
    std::uint32_t generation;
    std::uint32_t arrived;
    bool broken;
    bool last_broken;  // the previous round ended broken (reset() while waited on)

    static Round of(std::uint64_t w) noexcept {
        return {static_cast<std::uint32_t>(w >> 32), static_cast<std::uint32_t>((w >> 2) & 0x3fffffff),
                (w & 2) != 0, (w & 1) != 0};
    }
    std::uint64_t word() const noexcept {
        return std::uint64_t{generation} << 32 | std::uint64_t{arrived} << 2 | (broken ? 2u : 0u) |
               (last_broken ? 1u : 0u);
    }
};

[[noreturn]] void broken_barrier() { throw BrokenBarrierError("mproc Barrier: the barrier is broken"); }

/// Breaks the round (a wait timed out, or its caller is gone).
void break_round(const Target& t) {
    BarrierState& s = t.state<BarrierState>();
    Round r = Round::of(load(s.round));
    r.broken = true;
    store(s.round, r.word());
    wake_all(t.obj->change);
}

}  // namespace

std::uint64_t impl::barrier_wait(const Target& t, Timeout timeout) {
    BarrierState& s = t.state<BarrierState>();
    const os::Deadline deadline = os::Deadline::after(timeout);
    std::uint32_t generation, index, seen;
    {
        Locked g(t);
        Round r = Round::of(load(s.round));
        if (r.broken) broken_barrier();
        generation = r.generation;
        index = r.arrived;
        if (index + 1 == load(s.parties)) {
            store(s.round, Round{generation + 1, 0, false, false}.word());  // releases the round
            wake_all(t.obj->change);
            return index;
        }
        r.arrived = index + 1;
        store(s.round, r.word());
        seen = wait_token(t);
    }
    for (;;) {
        bool moved;
        try {
            moved = wait(t.obj->change, seen, deadline);
        } catch (const WaitCancelled&) {
            Locked g(t);
            if (Round::of(load(s.round)).generation == generation) break_round(t);
            throw;
        }
        Locked g(t);
        const Round r = Round::of(load(s.round));
        if (r.generation != generation) {
            if (r.generation == generation + 1 && r.last_broken) broken_barrier();
            return index;
        }
        if (r.broken) broken_barrier();
        if (!moved) {
            break_round(t);
            broken_barrier();
        }
        seen = wait_token(t);
    }
}

void impl::barrier_abort(const Target& t) {
    Locked g(t);
    break_round(t);
}

void impl::barrier_reset(const Target& t) {
    BarrierState& s = t.state<BarrierState>();
    Locked g(t);
    const Round r = Round::of(load(s.round));
    // Waiters of the round being reset get BrokenBarrierError, as Python's.
    store(s.round, Round{r.generation + 1, 0, false, r.arrived > 0 || r.broken}.word());
    wake_all(t.obj->change);
}

std::uint64_t impl::barrier_parties(const Target& t) { return load(t.state<BarrierState>().parties); }

std::uint64_t impl::barrier_n_waiting(const Target& t) {
    const Round r = Round::of(load(t.state<BarrierState>().round));
    return r.broken ? 0 : r.arrived;
}

bool impl::barrier_broken(const Target& t) { return Round::of(load(t.state<BarrierState>().round)).broken; }

}  // namespace mproc::detail::mgr
