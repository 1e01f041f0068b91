// Chaos: manager dict writers killed at random, inside operations too. Each
// writer stores its own key and adds to a shared total through modify();
// at the end every key must hold a value its writer wrote last or was
// writing, and the total must lie between the adds that returned and the
// adds that were tried.
#include <catch2/catch.hpp>

#include <mproc/manager.hpp>
#include <mproc/shared_memory.hpp>

#include <atomic>
#include <string>

#include "harness.hpp"

namespace {

constexpr int kWriters = 3;

struct Books {
    std::uint64_t ops[kWriters];
    std::int64_t seq[kWriters];        // the last value a writer of this role chose
    std::int64_t attempted[kWriters];  // value being stored
    std::int64_t completed[kWriters];  // value stored
    std::int64_t adds_tried, adds_done;
};

template <class T>
std::atomic_ref<T> ref(T& x) {
    return std::atomic_ref<T>(x);
}

}  // namespace

TEST_CASE("chaos: manager dict writers", "[chaos][manager]") {
    chaos::Scope scope("Manager dict writers (fork)");
    chaos::Row& row = scope.row();
    mproc::Value<Books> sh(Books{});
    Books& b = sh.value();
    mproc::Manager mgr;
    auto d = mgr.dict<std::string, std::int64_t>();
    auto writer = [&](int w) {
        const std::string key = "w" + std::to_string(w);
        for (;;) {
            const std::int64_t v = ref(b.seq[w]).fetch_add(1) + 1;
            ref(b.attempted[w]).store(v);
            d[key] = v;
            ref(b.completed[w]).store(v);
            ref(b.adds_tried).fetch_add(1);
            d.modify("total", [](std::int64_t& t) { t += 1; });
            ref(b.adds_done).fetch_add(1);
            ref(b.ops[w]).fetch_add(1);
        }
    };
    std::vector<chaos::Role> roles;
    for (int w = 0; w < kWriters; ++w)
        roles.push_back({[&, w] { return chaos::fork_role([&, w] { writer(w); }); }});
    std::vector<chaos::Child> running;
    for (auto& r : roles) running.push_back(r.start());
    std::mt19937 rng(8);
    chaos::kill_loop(roles, running, b.ops, chaos::scaled(6000), rng, row, 40);
    chaos::kill_all(running);
    for (int w = 0; w < kWriters; ++w) {
        const auto v = d.get("w" + std::to_string(w));
        if (!v || (*v != b.completed[w] && *v != b.attempted[w])) {
            std::fprintf(stderr, "chaos: key w%d holds %lld, completed %lld, attempted %lld\n", w,
                         static_cast<long long>(v.value_or(-1)), static_cast<long long>(b.completed[w]),
                         static_cast<long long>(b.attempted[w]));
            ++row.wrong;
        }
    }
    const std::int64_t total = d.get("total", 0);
    if (total < b.adds_done || total > b.adds_tried) {
        std::fprintf(stderr, "chaos: total %lld outside [%lld, %lld]\n", static_cast<long long>(total),
                     static_cast<long long>(b.adds_done), static_cast<long long>(b.adds_tried));
        ++row.wrong;
    }
    chaos::require_clean(scope.finish());
}
