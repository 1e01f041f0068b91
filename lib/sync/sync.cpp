// Cross-process synchronization primitives. See include/mproc/sync.hpp.
//
// Lock/RLock are robust pthread mutexes (the kernel's robust-futex list
// tells the next locker when an owner died) with a spin before the kernel
// wait. Everything else waits on a futex word of its own: a waiter registers
// in a `waiters` counter (seq_cst) before it re-checks the condition and
// sleeps, and a waker changes the word (seq_cst) before it reads the counter,
// so either the waiter sees the change or the waker sees the waiter: a
// wake-up is never lost and an uncontended wake costs no syscall.
#include "mproc/sync.hpp"

#include <climits>
#include <new>

#include "os/os.hpp"

namespace mproc {
namespace detail {

namespace {
constexpr std::uint32_t kMutexMagic = 0x4d504c4b;      // "MPLK"
constexpr std::uint32_t kSemaphoreMagic = 0x4d505345;  // "MPSE"
constexpr std::uint32_t kEventMagic = 0x4d504556;      // "MPEV"
constexpr std::uint32_t kConditionMagic = 0x4d50434f;  // "MPCO"
constexpr std::uint32_t kBarrierMagic = 0x4d504241;    // "MPBA"

template <class State>
State* checked(std::byte* p, std::uint32_t magic, const char* what) {
    auto* st = reinterpret_cast<State*>(p);
    if (st->magic != magic)
        throw SerializationError(std::string("handle does not point at a ") + what);
    return st;
}

template <class State>
std::pair<SegmentPtr, State*> new_state(const char* label) {
    auto seg = Segment::anonymous(sizeof(State), label);
    return {seg, new (seg->data()) State()};
}
}  // namespace

struct MutexState {
    pthread_mutex_t m;
    std::uint32_t magic;
    std::uint32_t recursive;
    // Written only by the holder, under m.
    std::atomic<pid_t> owner_tid{0};
    std::uint32_t count = 0;      // recursion depth
    std::uint32_t recovered = 0;  // this hold took over from a dead owner
};
static_assert(sizeof(MutexState) <= kMutexStateSize, "MutexState outgrew kMutexStateSize");

struct SemaphoreState {
    std::atomic<std::uint32_t> value{0};
    std::atomic<std::uint32_t> waiters{0};
    std::uint32_t bound = 0;
    std::uint32_t magic = kSemaphoreMagic;
};

struct EventState {
    std::atomic<std::uint32_t> flag{0};
    std::atomic<std::uint32_t> waiters{0};
    std::uint32_t magic = kEventMagic;
};

struct ConditionState {
    std::atomic<std::uint32_t> seq{0};
    std::atomic<std::uint32_t> waiters{0};
    std::uint32_t magic = kConditionMagic;
};

struct BarrierState {
    pthread_mutex_t m;
    std::atomic<std::uint32_t> gen{0};  // futex word: bumped when a round ends or breaks
    std::uint32_t magic = kBarrierMagic;
    std::uint32_t parties = 0;
    std::atomic<std::uint32_t> count{0};
    std::atomic<std::uint32_t> broken{0};          // sticky until reset()
    std::atomic<std::uint32_t> has_broken_gen{0};  // the round broken_gen was broken
    std::atomic<std::uint32_t> broken_gen{0};
};

// ---- spinning then sleeping on a futex word -----------------------------

namespace {

// Waits until ready() is true. Returns false if the deadline passed first.
template <class Ready>
bool wait_until(const std::atomic<std::uint32_t>& word, std::atomic<std::uint32_t>& waiters,
                Ready ready, const os::Deadline& deadline) {
    if (os::spin_until(ready, os::spin_budget_ns())) return true;
    waiters.fetch_add(1);
    bool ok = true;
    for (;;) {
        std::uint32_t seen = word.load();
        if (ready()) break;
        if (!os::futex_wait(&word, seen, deadline)) {
            ok = ready();
            break;
        }
    }
    waiters.fetch_sub(1);
    return ok;
}

void wake(const std::atomic<std::uint32_t>& word, const std::atomic<std::uint32_t>& waiters,
          int n) {
    if (waiters.load() > 0) os::futex_wake(&word, n);
}

}  // namespace

// ---- MutexHandle ----------------------------------------------------------

MutexHandle::MutexHandle(bool recursive, SegmentPtr seg, std::byte* at) {
    if (!seg) {
        seg = Segment::anonymous(kMutexStateSize, recursive ? "mproc-rlock" : "mproc-lock");
        at = seg->data();
    }
    auto* st = new (at) MutexState();
    os::robust_mutex_init(&st->m, recursive);
    st->recursive = recursive ? 1 : 0;
    st->magic = kMutexMagic;
    seg_ = std::move(seg);
    st_ = st;
}

bool MutexHandle::acquire(Timeout timeout) const {
    os::LockStatus s = os::robust_mutex_trylock(&st_->m);
    if (s == os::LockStatus::timed_out && !(timeout && timeout->count() <= 0))
        s = os::robust_mutex_lock(&st_->m, os::Deadline::after(timeout));
    const pid_t me = os::tid();
    switch (s) {
        case os::LockStatus::timed_out:
            return false;
        case os::LockStatus::would_deadlock:
            // Only this thread could release it, so a bounded wait would
            // time out: say so now. An unbounded one would never return.
            if (timeout) return false;
            throw Error(
                "Lock::acquire(): this thread already holds this Lock, so waiting would "
                "deadlock forever; use mproc::RLock for re-entrant locking");
        case os::LockStatus::owner_died:
            st_->owner_tid.store(me, std::memory_order_relaxed);
            st_->count = 1;
            st_->recovered = 1;
            return true;
        case os::LockStatus::acquired:
            break;
    }
    if (st_->count > 0 && st_->owner_tid.load(std::memory_order_relaxed) == me) {
        ++st_->count;  // re-entry of an RLock
    } else {
        st_->owner_tid.store(me, std::memory_order_relaxed);
        st_->count = 1;
        st_->recovered = 0;
    }
    return true;
}

// Thread ids are unique across the processes of one pid namespace, so the
// owner's tid alone says whether this thread holds the lock.
bool MutexHandle::held_by_me() const noexcept {
    return st_->count > 0 && st_->owner_tid.load(std::memory_order_relaxed) == os::tid();
}

void MutexHandle::release() const {
    if (!held_by_me())
        throw ValueError(st_->recursive ? "RLock::release(): this thread does not hold the RLock"
                                        : "Lock::release(): this thread does not hold the Lock");
    if (--st_->count == 0) {
        st_->owner_tid.store(0, std::memory_order_relaxed);
        st_->recovered = 0;
    }
    if (!os::robust_mutex_unlock(&st_->m))
        throw ValueError("Lock::release(): the lock is not held by this thread");
}

bool MutexHandle::owner_died() const noexcept { return held_by_me() && st_->recovered != 0; }
bool MutexHandle::recursive() const noexcept { return st_->recursive != 0; }

std::uint32_t MutexHandle::release_all() const {
    std::uint32_t levels = st_->count;
    for (std::uint32_t i = 0; i < levels; ++i) release();
    return levels;
}

void MutexHandle::reacquire(std::uint32_t levels) const {
    for (std::uint32_t i = 0; i < levels; ++i) acquire(std::nullopt);
}

void MutexHandle::mproc_export(HandleWriter& w) const { w.segment(seg_, st_); }

MutexHandle MutexHandle::attach(SegmentPtr seg, std::byte* at) {
    MutexHandle h;
    h.st_ = checked<MutexState>(at, kMutexMagic, "Lock or RLock");
    h.seg_ = std::move(seg);
    return h;
}

MutexHandle MutexHandle::mproc_import(HandleReader& r) {
    auto [seg, p] = r.segment(kMutexStateSize);
    return attach(std::move(seg), p);
}

}  // namespace detail

Lock Lock::mproc_import(detail::HandleReader& r) {
    auto m = detail::MutexHandle::mproc_import(r);
    if (m.recursive()) throw SerializationError("handle is an RLock, not a Lock");
    return Lock(std::move(m));
}

RLock RLock::mproc_import(detail::HandleReader& r) {
    auto m = detail::MutexHandle::mproc_import(r);
    if (!m.recursive()) throw SerializationError("handle is a Lock, not an RLock");
    return RLock(std::move(m));
}

// ---- Condition ------------------------------------------------------------

Condition::Condition() : m_(true) { init_state(); }
Condition::Condition(Lock lock) : m_(std::move(lock.m_)) { init_state(); }
Condition::Condition(RLock lock) : m_(std::move(lock.m_)) { init_state(); }

void Condition::init_state() {
    std::tie(seg_, st_) = detail::new_state<detail::ConditionState>("mproc-condition");
}

void Condition::check_guard(bool owns) {
    if (!owns) throw ValueError("Condition: the guard passed to wait() does not hold the lock");
}

bool Condition::wait(Timeout timeout) const {
    if (!m_.held_by_me()) throw ValueError("Condition::wait(): the lock must be held to wait");
    const os::Deadline deadline = os::Deadline::after(timeout);
    const std::uint32_t seq = st_->seq.load();
    const std::uint32_t levels = m_.release_all();
    bool woken;
    try {
        woken = detail::wait_until(
            st_->seq, st_->waiters, [&] { return st_->seq.load() != seq; }, deadline);
    } catch (...) {
        m_.reacquire(levels);
        throw;
    }
    m_.reacquire(levels);
    return woken;
}

void Condition::notify(int n) const {
    if (!m_.held_by_me()) throw ValueError("Condition::notify(): the lock must be held to notify");
    if (n <= 0) return;
    st_->seq.fetch_add(1);
    detail::wake(st_->seq, st_->waiters, n);
}

void Condition::notify_all() const { notify(INT_MAX); }

void Condition::mproc_export(detail::HandleWriter& w) const {
    m_.mproc_export(w);
    w.segment(seg_, st_);
}

Condition Condition::mproc_import(detail::HandleReader& r) {
    auto m = detail::MutexHandle::mproc_import(r);
    auto [seg, p] = r.segment(sizeof(detail::ConditionState));
    auto* st = detail::checked<detail::ConditionState>(p, detail::kConditionMagic, "Condition");
    return Condition(std::move(m), std::move(seg), st);
}

// ---- Semaphore ------------------------------------------------------------

Semaphore::Semaphore(unsigned value, unsigned bound) {
    std::tie(seg_, st_) = detail::new_state<detail::SemaphoreState>("mproc-semaphore");
    st_->value.store(value);
    st_->bound = bound;
}

bool Semaphore::acquire(Timeout timeout) const {
    auto take = [&] {
        std::uint32_t v = st_->value.load(std::memory_order_relaxed);
        while (v > 0)
            if (st_->value.compare_exchange_weak(v, v - 1)) return true;
        return false;
    };
    if (take()) return true;
    if (timeout && timeout->count() <= 0) return false;
    return detail::wait_until(st_->value, st_->waiters, take, os::Deadline::after(timeout));
}

void Semaphore::release(unsigned n) const {
    if (n == 0) return;
    if (st_->bound != 0) {
        std::uint32_t v = st_->value.load();
        do {
            if (v + n > st_->bound)
                throw ValueError("BoundedSemaphore::release(): released more times than acquired");
        } while (!st_->value.compare_exchange_weak(v, v + n));
    } else {
        st_->value.fetch_add(n);
    }
    detail::wake(st_->value, st_->waiters, static_cast<int>(n));
}

unsigned Semaphore::get_value() const noexcept { return st_->value.load(); }

void Semaphore::mproc_export(detail::HandleWriter& w) const { w.segment(seg_, st_); }

Semaphore Semaphore::mproc_import(detail::HandleReader& r) {
    auto [seg, p] = r.segment(sizeof(detail::SemaphoreState));
    return Semaphore(std::move(seg),
                     detail::checked<detail::SemaphoreState>(p, detail::kSemaphoreMagic, "Semaphore"));
}

BoundedSemaphore BoundedSemaphore::mproc_import(detail::HandleReader& r) {
    auto [seg, p] = r.segment(sizeof(detail::SemaphoreState));
    auto* st = detail::checked<detail::SemaphoreState>(p, detail::kSemaphoreMagic, "Semaphore");
    if (st->bound == 0) throw SerializationError("handle is a Semaphore, not a BoundedSemaphore");
    return BoundedSemaphore(std::move(seg), st);
}

// ---- Event ----------------------------------------------------------------

Event::Event() { std::tie(seg_, st_) = detail::new_state<detail::EventState>("mproc-event"); }

void Event::set() const {
    st_->flag.store(1);
    detail::wake(st_->flag, st_->waiters, INT_MAX);
}

void Event::clear() const { st_->flag.store(0); }
bool Event::is_set() const noexcept { return st_->flag.load() != 0; }

bool Event::wait(Timeout timeout) const {
    if (st_->flag.load() != 0) return true;
    if (timeout && timeout->count() <= 0) return false;
    return detail::wait_until(
        st_->flag, st_->waiters, [&] { return st_->flag.load() != 0; },
        os::Deadline::after(timeout));
}

void Event::mproc_export(detail::HandleWriter& w) const { w.segment(seg_, st_); }

Event Event::mproc_import(detail::HandleReader& r) {
    auto [seg, p] = r.segment(sizeof(detail::EventState));
    return Event(std::move(seg), detail::checked<detail::EventState>(p, detail::kEventMagic, "Event"));
}

// ---- Barrier --------------------------------------------------------------

namespace {
// The barrier's own short critical sections. A dead holder only ever leaves
// counters mid-update, which the next holder can live with.
struct BarrierGuard {
    explicit BarrierGuard(detail::BarrierState* st) : st_(st) {
        os::robust_mutex_lock(&st_->m, os::Deadline::never());
    }
    ~BarrierGuard() { os::robust_mutex_unlock(&st_->m); }
    detail::BarrierState* st_;
};

void break_round(detail::BarrierState* st) {
    st->broken_gen.store(st->gen.load());
    st->has_broken_gen.store(1);
    st->count.store(0);
    st->gen.fetch_add(1);
    os::futex_wake(&st->gen, INT_MAX);
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
        if (st_->broken.load()) throw BrokenBarrierError("Barrier::wait(): the barrier is broken");
        index = st_->count.fetch_add(1);
        gen = st_->gen.load();
        if (index + 1 == st_->parties) {
            if (action_) {
                try {
                    action_();
                } catch (...) {
                    st_->broken.store(1);
                    break_round(st_);
                    throw;
                }
            }
            st_->count.store(0);
            st_->gen.fetch_add(1);
            os::futex_wake(&st_->gen, INT_MAX);
            return index;
        }
    }
    auto round_over = [&] { return st_->gen.load() != gen; };
    bool ok = true;
    os::spin_until(round_over, os::spin_budget_ns());
    while (!round_over()) {
        if (!os::futex_wait(&st_->gen, gen, deadline)) {
            ok = round_over();
            break;
        }
    }
    if (!ok) {
        BarrierGuard g(st_);
        if (st_->gen.load() == gen) {
            st_->broken.store(1);
            break_round(st_);
            throw BrokenBarrierError("Barrier::wait(): timed out, the barrier is now broken");
        }
    }
    if (st_->has_broken_gen.load() && st_->broken_gen.load() == gen)
        throw BrokenBarrierError("Barrier::wait(): the barrier was broken while waiting");
    return index;
}

void Barrier::abort() const {
    BarrierGuard g(st_);
    st_->broken.store(1);
    break_round(st_);
}

void Barrier::reset() const {
    BarrierGuard g(st_);
    if (st_->count.load() > 0) break_round(st_);
    st_->broken.store(0);
    st_->count.store(0);
}

unsigned Barrier::parties() const noexcept { return st_->parties; }
unsigned Barrier::n_waiting() const noexcept { return st_->broken.load() ? 0 : st_->count.load(); }
bool Barrier::broken() const noexcept { return st_->broken.load() != 0; }

void Barrier::mproc_export(detail::HandleWriter& w) const { w.segment(seg_, st_); }

Barrier Barrier::mproc_import(detail::HandleReader& r) {
    auto [seg, p] = r.segment(sizeof(detail::BarrierState));
    return Barrier(std::move(seg), detail::checked<detail::BarrierState>(p, detail::kBarrierMagic, "Barrier"));
}

}  // namespace mproc
