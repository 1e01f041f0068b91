// Python's multiprocessing docs, "Sharing state between processes", server
// process: a Manager's dict and list, changed by a child.
//
//   ./docs_manager [--start-method fork|spawn|forkserver]
//
// Python original:
//   def f(d, l):
//       d[1] = '1'
//       d['2'] = 2
//       d[0.25] = None
//       l.reverse()
//
//   if __name__ == '__main__':
//       with Manager() as manager:
//           d = manager.dict()
//           l = manager.list(range(10))
//           p = Process(target=f, args=(d, l))
//           p.start()
//           p.join()
//           print(d)   # {1: '1', '2': 2, 0.25: None}
//           print(l)   # [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
//
// A C++ dict has one key type and one value type: the keys here are the
// Python keys' text, the values optional strings (None = nullopt).
#include <mproc/mproc.hpp>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "start_method_arg.hpp"

using Dict = mproc::DictProxy<std::string, std::optional<std::string>>;

void f(Dict d, mproc::ListProxy<int> l) {
    d.set("1", "1");
    d.set("'2'", "2");
    d.set("0.25", std::nullopt);
    // l.reverse(), written with the calls every ListProxy has had (the
    // manager rebuild adds reverse() itself).
    std::vector<int> v = l.snapshot();
    std::reverse(v.begin(), v.end());
    for (std::size_t i = 0; i < v.size(); ++i) l.set(static_cast<std::int64_t>(i), v[i]);
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    start_method_from_args(argc, argv);
    mproc::Manager manager;
    auto d = manager.dict<std::string, std::optional<std::string>>();
    auto l = manager.list<int>(std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});

    mproc::Process p(f, d, l);
    p.start();
    p.join();

    std::printf("{");
    const char* sep = "";
    for (const char* k : {"1", "'2'", "0.25"}) {
        auto v = d.get(k);
        std::printf("%s%s: %s", sep, k, v && *v ? ("'" + **v + "'").c_str() : v ? "None" : "<missing>");
        sep = ", ";
    }
    std::printf("}\n[");
    std::vector<int> got = l.snapshot();
    for (std::size_t i = 0; i < got.size(); ++i) std::printf("%s%d", i ? ", " : "", got[i]);
    std::printf("]\n");

    using Entry = std::optional<std::optional<std::string>>;  // absent / None / a string
    const bool ok = d.get("1") == Entry(std::in_place, "1") && d.get("'2'") == Entry(std::in_place, "2") &&
                    d.get("0.25") == Entry(std::in_place, std::nullopt) && d.size() == 3 &&
                    got == std::vector<int>{9, 8, 7, 6, 5, 4, 3, 2, 1, 0} && p.exitcode() == 0;
    std::printf("%s\n", ok ? "OK" : "MISMATCH");
    return ok ? 0 : 1;
}
