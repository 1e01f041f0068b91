// Chaos: queue producers and consumers, and Pipe senders and receivers,
// killed at random (DESIGN.md principle 4). Every id a put returned for
// must arrive exactly once; an id whose put was interrupted at most once;
// an id being consumed by a killed consumer (inside consume()) may arrive
// a second time, never a third.
#include <catch2/catch.hpp>

#include <mproc/pipe.hpp>
#include <mproc/process.hpp>
#include <mproc/queue.hpp>
#include <mproc/shared_memory.hpp>
#include <mproc/sync.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <thread>

#include "harness.hpp"

using mproc::Duration;
using mproc::StartMethod;

namespace {

// Ids per round: a round ends when they run out (producers park), is
// checked, and the next starts afresh, until the kill budget is spent.
constexpr std::uint32_t kMaxIds = 2'000'000, kNone = UINT32_MAX;
constexpr int kMaxRoles = 8;

struct Shared {
    std::uint32_t next_id;
    std::uint32_t pending[kMaxRoles];  // id whose put may not have returned
    std::uint32_t inside[kMaxRoles];   // id a consumer holds inside consume()
    std::uint64_t ops[kMaxRoles];
    std::uint32_t stop;                // 1: producers stop; 2: consumers stop once empty
};

struct Books {
    mproc::Value<Shared> sh{Shared{}};
    mproc::Array<std::uint8_t> published = mproc::Array<std::uint8_t>(kMaxIds);
    mproc::Array<std::uint8_t> received = mproc::Array<std::uint8_t>(kMaxIds);
    mproc::Array<std::uint8_t> may_repeat = mproc::Array<std::uint8_t>(kMaxIds);
};

template <class T>
std::atomic_ref<T> ref(T& x) {
    return std::atomic_ref<T>(x);
}

// The next id to send, or false once this round's ids ran out (then after
// parking until the round stops).
bool next_id(Shared& s, std::uint32_t& id) {
    id = ref(s.next_id).fetch_add(1);
    if (id < kMaxIds) return true;
    ref(s.next_id).store(kMaxIds);
    while (!ref(s.stop).load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));  // parked
    return false;
}

// The roles, as free functions so spawn and forkserver children run them.
void queue_producer(mproc::Queue<std::uint32_t> q, mproc::Value<Shared> sh, mproc::Array<std::uint8_t> published,
                    int role) {
    Shared& s = sh.value();
    std::uint32_t id;
    while (!ref(s.stop).load() && next_id(s, id)) {
        ref(s.pending[role]).store(id);
        q.put(id);
        ref(published[id]).store(1);
        ref(s.pending[role]).store(kNone);
        ref(s.ops[role]).fetch_add(1);
    }
}

void queue_consumer(mproc::Queue<std::uint32_t> q, mproc::Value<Shared> sh, mproc::Array<std::uint8_t> received,
                    int role) {
    Shared& s = sh.value();
    for (;;) {
        bool got = q.consume(
            [&](std::uint32_t id) {
                ref(s.inside[role]).store(id);
                if (id < kMaxIds) ref(received[id]).fetch_add(1);
            },
            Duration(0.05));
        ref(s.inside[role]).store(kNone);
        ref(s.ops[role]).fetch_add(1);
        if (!got && ref(s.stop).load() == 2) return;
    }
}

chaos::Child start_role(StartMethod method, bool producer, int role, const mproc::Queue<std::uint32_t>& q,
                        Books& b) {
    if (method == StartMethod::fork)
        return chaos::fork_role([&, producer, role] {
            if (producer) queue_producer(q, b.sh, b.published, role);
            else queue_consumer(q, b.sh, b.received, role);
        });
    mproc::Process p = producer ? mproc::Process(queue_producer, q, b.sh, b.published, role)
                                : mproc::Process(queue_consumer, q, b.sh, b.received, role);
    p.start_method(method).start();
    return {static_cast<pid_t>(*p.pid()), [p]() mutable {
                p.join();
                return p.exitcode().value_or(999);
            }};
}

struct QueueCase {
    const char* name;
    int producers, consumers;
    std::size_t maxsize;
    StartMethod method;
    long kills;
    bool no_spin;  // children started with MPROC_SPIN_US=0 (spawn only)
};

// One round: fresh books and queue, kills until the ids or the budget run
// out, then stop, drain and check. False if it ended in a hang.
bool queue_round(const QueueCase& c, chaos::Row& row, long budget, std::mt19937& rng) {
    Books b;
    Shared& s = b.sh.value();
    for (int i = 0; i < kMaxRoles; ++i) s.pending[i] = s.inside[i] = kNone;
    mproc::Queue<std::uint32_t> q(c.maxsize, mproc::QueueOptions{.capacity = 16 * 1024});
    const int n = c.producers + c.consumers;
    std::vector<chaos::Role> roles;
    for (int r = 0; r < n; ++r) {
        const bool producer = r < c.producers;
        roles.push_back({[&, producer, r] { return start_role(c.method, producer, r, q, b); }, [&, producer, r] {
                             if (producer) {
                                 s.pending[r] = kNone;  // its id may arrive 0 or 1 times: not published
                             } else {
                                 std::uint32_t id = s.inside[r];
                                 if (id < kMaxIds) b.may_repeat[id] = 1;
                                 s.inside[r] = kNone;
                             }
                         }});
    }
    std::vector<chaos::Child> running;
    for (auto& r : roles) running.push_back(r.start());
    const bool ok = chaos::kill_loop(roles, running, s.ops, budget, rng, row, 50,
                                     [&] { return ref(s.next_id).load() >= kMaxIds; });
    if (ok) {
        ref(s.stop).store(1);
        for (int r = 0; r < c.producers; ++r)
            if (running[r].reap() != 0) ++row.wrong;
        if (!chaos::wait_for([&] { return q.empty(); })) {
            std::fprintf(stderr, "chaos %s: consumers never drained the queue (qsize %zu)\n", c.name, q.qsize());
            ++row.hangs;
        }
        ref(s.stop).store(2);
        for (int r = c.producers; r < n; ++r)
            if (running[r].reap() != 0) ++row.wrong;
    }
    const std::uint32_t ids = std::min(s.next_id, kMaxIds);
    for (std::uint32_t id = 0; id < ids; ++id) {
        if (b.published[id] && b.received[id] == 0) ++row.lost;
        if (b.received[id] > 1 && !b.may_repeat[id]) ++row.duplicated;
        if (b.received[id] > 2) ++row.duplicated;
    }
    return ok && row.hangs == 0;
}

chaos::Row run_queue(const QueueCase& c) {
    chaos::Scope scope(c.name);
    chaos::Row& row = scope.row();
    if (c.no_spin) ::setenv("MPROC_SPIN_US", "0", 1);
    std::mt19937 rng(12345);
    const long budget = chaos::scaled(c.kills);
    while (row.kills < budget && queue_round(c, row, budget - row.kills, rng)) {
    }
    if (c.no_spin) ::unsetenv("MPROC_SPIN_US");
    return scope.finish();
}

}  // namespace

TEST_CASE("chaos: queue 2 producers and 2 consumers (fork)", "[chaos][queue]") {
    chaos::require_clean(run_queue({"queue 2->2 (fork)", 2, 2, 0, StartMethod::fork, 20000, false}));
}

TEST_CASE("chaos: queue 1 -> 1 maxsize=1 (fork)", "[chaos][queue]") {
    chaos::require_clean(run_queue({"queue 1->1 maxsize=1 (fork)", 1, 1, 1, StartMethod::fork, 20000, false}));
}

TEST_CASE("chaos: queue 1 -> 1 maxsize=1 without spinning (spawn)", "[chaos][queue]") {
    chaos::require_clean(
        run_queue({"queue 1->1 maxsize=1, no spin (spawn)", 1, 1, 1, StartMethod::spawn, 2000, true}));
}

TEST_CASE("chaos: queue 2 producers and 2 consumers (forkserver)", "[chaos][queue]") {
    chaos::require_clean(run_queue({"queue 2->2 maxsize=4 (forkserver)", 2, 2, 4, StartMethod::forkserver, 4000, false}));
}

// ---- Pipe -----------------------------------------------------------------------

namespace {

void pipe_sender(mproc::Connection<std::uint32_t> out, mproc::Value<Shared> sh, mproc::Array<std::uint8_t> published) {
    Shared& s = sh.value();
    std::uint32_t id;
    while (!ref(s.stop).load() && next_id(s, id)) {
        ref(s.pending[0]).store(id);
        out.send(id);
        ref(published[id]).store(1);
        ref(s.pending[0]).store(kNone);
        ref(s.ops[0]).fetch_add(1);
    }
}

void pipe_receiver(mproc::Connection<std::uint32_t> in, mproc::Value<Shared> sh, mproc::Array<std::uint8_t> received) {
    Shared& s = sh.value();
    for (;;) {
        if (in.poll(Duration(0.05))) {
            std::uint32_t id = in.recv();
            if (id < kMaxIds) ref(received[id]).fetch_add(1);
        } else if (ref(s.stop).load() == 2) {
            return;
        }
        ref(s.ops[1]).fetch_add(1);
    }
}

}  // namespace

namespace {
bool pipe_round(chaos::Row& row, long budget, std::mt19937& rng) {
    Books b;
    Shared& s = b.sh.value();
    for (int i = 0; i < kMaxRoles; ++i) s.pending[i] = s.inside[i] = kNone;
    auto [in, out] = mproc::Pipe<std::uint32_t>(false, 16 * 1024);
    long receiver_kills = 0;
    std::vector<chaos::Role> roles{
        {[&, out = out] { return chaos::fork_role([&] { pipe_sender(out, b.sh, b.published); }); },
         [&] { s.pending[0] = kNone; }},
        {[&, in = in] { return chaos::fork_role([&] { pipe_receiver(in, b.sh, b.received); }); },
         [&] { ++receiver_kills; }},
    };
    std::vector<chaos::Child> running;
    for (auto& r : roles) running.push_back(r.start());
    const bool ok = chaos::kill_loop(roles, running, s.ops, budget, rng, row, 50,
                                     [&] { return ref(s.next_id).load() >= kMaxIds; });
    if (ok) {
        ref(s.stop).store(1);
        if (running[0].reap() != 0) ++row.wrong;
        if (!chaos::wait_for([&] { return !in.poll(Duration(0)); })) ++row.hangs;
        ref(s.stop).store(2);
        if (running[1].reap() != 0) ++row.wrong;
    }
    // A receiver killed between taking a message and counting it loses it:
    // the receiver's death, not the pipe's; at most one per receiver kill.
    const std::uint32_t ids = std::min(s.next_id, kMaxIds);
    long unreceived = 0;
    for (std::uint32_t id = 0; id < ids; ++id) {
        if (b.published[id] && b.received[id] == 0) ++unreceived;
        if (b.received[id] > 1) ++row.duplicated;
    }
    if (unreceived > receiver_kills) row.lost += unreceived - receiver_kills;
    return ok && row.hangs == 0;
}
}  // namespace

TEST_CASE("chaos: Pipe sender and receiver (fork)", "[chaos][pipe]") {
    chaos::Scope scope("Pipe sender + receiver (fork)");
    chaos::Row& row = scope.row();
    std::mt19937 rng(777);
    const long budget = chaos::scaled(6000);
    while (row.kills < budget && pipe_round(row, budget - row.kills, rng)) {
    }
    chaos::require_clean(scope.finish());
}
