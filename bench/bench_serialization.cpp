// mproc::dumps + loads against Python's pickle.dumps + pickle.loads
// (protocol 5) on the same data, in one run:
//  - a map of 10 000 string -> int ("key00000".. -> i): std::map and
//    std::unordered_map against a dict;
//  - a vector of 1 000 000 doubles against a list of floats;
//  - a vector of 10 000 small structs {int id; double x, y;} against a list
//    of (id, x, y) tuples: trivially copyable (the raw-bytes path), and the
//    same struct with a Boost serialize() (the archive path).
// Each figure is the median of several runs of one dumps+loads round trip;
// the ratio is pickle's time over mproc's (> 1: mproc faster).
#include <mproc/serialization.hpp>

#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "bench_util.hpp"

namespace {

constexpr int kReps = 21;

struct Particle {
    int id;
    double x, y;
};

struct ParticleS {
    int id = 0;
    double x = 0, y = 0;
    template <class Archive>
    void serialize(Archive& ar, unsigned) {
        ar & id & x & y;
    }
};

// Seconds for one dumps+loads of `value` — freeing the bytes and the copy
// included, in the order Python's loop frees them (`del b, back`: the bytes
// first) — median of kReps after one warm-up. `check` sanity-checks the
// copy. (The order matters to glibc, not to mproc: freeing a map's 10 000
// nodes and then a >64 KiB block makes malloc consolidate the nodes into
// the top of the heap and trim it, so the next round faults ~800 KB of
// fresh pages in again, which about doubles the figure.)
template <class T, class Check>
double round_trip_seconds(const T& value, Check check) {
    check(mproc::loads<T>(mproc::dumps(value)));
    return bench::median_of(kReps, [&] {
        auto t0 = bench::Clock::now();
        {
            std::optional<std::vector<std::byte>> b = mproc::dumps(value);
            T back = mproc::loads<T>(*b);
            check(back);
            b.reset();
        }
        return bench::seconds_since(t0);
    });
}

// Seconds for a plain copy of `value` (made and freed), for scale: what the
// container's own allocations cost.
template <class T>
double copy_seconds(const T& value) {
    return bench::median_of(kReps, [&] {
        auto t0 = bench::Clock::now();
        {
            T copy = value;
            asm volatile("" : : "r"(&copy) : "memory");
        }
        return bench::seconds_since(t0);
    });
}

// Median seconds of pickle.loads(pickle.dumps(obj, 5)) for the object that
// `make` (a Python expression) builds.
std::optional<double> pickle_seconds(const std::string& make) {
    return bench::python_figure(
        "import pickle, time, statistics\n"
        "obj = " + make + "\n"
        "pickle.loads(pickle.dumps(obj, 5))\n"
        "ts = []\n"
        "for _ in range(" + std::to_string(kReps) + "):\n"
        "    t0 = time.perf_counter()\n"
        "    b = pickle.dumps(obj, 5)\n"
        "    back = pickle.loads(b)\n"
        "    del b, back\n"
        "    ts.append(time.perf_counter() - t0)\n"
        "print(statistics.median(ts))\n");
}

struct Line {
    const char* what;
    double mproc_s;
    double copy_s;
};

void report(const char* title, const std::vector<Line>& lines, std::optional<double> pickle_s) {
    bench::group("\n%s (us per dumps+loads)\n", title);
    if (pickle_s)
        bench::row("pickle.dumps + pickle.loads (protocol 5)", *pickle_s * 1e6, "us");
    else
        std::printf("  (python3 unavailable: no pickle figure)\n");
    for (const Line& l : lines) {
        bench::row(l.what, l.mproc_s * 1e6, "us");
        std::string scale = std::string("  for scale: a plain copy of it");
        bench::row(scale.c_str(), l.copy_s * 1e6, "us");
        if (pickle_s) bench::ratio("  ratio vs pickle", *pickle_s / l.mproc_s);
    }
}

}  // namespace

int main() {
    std::printf("mproc serialization benchmark (median of %d runs; ratio > 1: mproc faster)\n", kReps);

    // 1. map of 10 000 string -> int
    std::map<std::string, int> m;
    std::unordered_map<std::string, int> um;
    for (int i = 0; i < 10'000; ++i) {
        char key[16];
        std::snprintf(key, sizeof key, "key%05d", i);
        m[key] = i;
        um[key] = i;
    }
    const double map_s = round_trip_seconds(m, [](const auto& b) {
        if (b.size() != 10'000) std::fprintf(stderr, "map: wrong size!\n");
    });
    const double umap_s = round_trip_seconds(um, [](const auto& b) {
        if (b.size() != 10'000) std::fprintf(stderr, "unordered_map: wrong size!\n");
    });
    auto map_py = pickle_seconds("{f'key{i:05d}': i for i in range(10000)}");
    report("map of 10 000 string -> int",
           {{"mproc, std::map<std::string, int>", map_s, copy_seconds(m)},
            {"mproc, std::unordered_map<std::string, int>", umap_s, copy_seconds(um)}},
           map_py);

    // 2. vector of 1 000 000 doubles
    std::vector<double> v(1'000'000);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(i) * 0.5;
    const double vec_s = round_trip_seconds(v, [](const auto& b) {
        if (b.size() != 1'000'000 || b[3] != 1.5) std::fprintf(stderr, "vector: wrong contents!\n");
    });
    auto vec_py = pickle_seconds("[i * 0.5 for i in range(1000000)]");
    report("vector of 1 000 000 doubles", {{"mproc, std::vector<double>", vec_s, copy_seconds(v)}}, vec_py);

    // 3. vector of 10 000 small structs
    std::vector<Particle> ps(10'000);
    std::vector<ParticleS> pss(10'000);
    for (int i = 0; i < 10'000; ++i) {
        ps[i] = {i, i * 0.5, i * 0.25};
        pss[i] = {i, i * 0.5, i * 0.25};
    }
    const double ps_s = round_trip_seconds(ps, [](const auto& b) {
        if (b.size() != 10'000 || b[2].x != 1.0) std::fprintf(stderr, "structs: wrong contents!\n");
    });
    const double pss_s = round_trip_seconds(pss, [](const auto& b) {
        if (b.size() != 10'000 || b[2].x != 1.0) std::fprintf(stderr, "structs: wrong contents!\n");
    });
    auto ps_py = pickle_seconds("[(i, i * 0.5, i * 0.25) for i in range(10000)]");
    report("vector of 10 000 small structs {int id; double x, y;}",
           {{"mproc, trivially copyable (raw bytes)", ps_s, copy_seconds(ps)},
            {"mproc, with a Boost serialize()", pss_s, copy_seconds(pss)}},
           ps_py);

    std::printf("\nencoded sizes: map %zu B, vector<double> %zu B, structs %zu B (raw) / %zu B (serialize)\n",
                mproc::dumps(m).size(), mproc::dumps(v).size(), mproc::dumps(ps).size(), mproc::dumps(pss).size());
    return 0;
}
