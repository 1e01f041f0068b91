// Python's shared_memory documentation, ShareableList examples. A C++ list
// holds one element type, so Python's mixed list becomes a list of strings
// beside a list of double; the rest is line for line.
//
//   ./shareable_list [--start-method fork|spawn|forkserver]
//
// Python original:
//   a = shared_memory.ShareableList(['howdy', b'HoWdY', -273.154, 100, None, True, 42])
//   a[2] = -78.5; a[2] = 'dry ice'
//   a[2] = 'larger than previously allocated storage space'   # ValueError
//   len(a); a.index(42); a.count(b'howdy'); a.count(b'HoWdY')
//   a.shm.close(); a.shm.unlink()
//
//   b = shared_memory.ShareableList(range(5))          # in a first process
//   c = shared_memory.ShareableList(name=b.shm.name)   # in a second process
//   c[-1] = -999                                       # b[-1] is now -999
//
//   sl = shared_memory.ShareableList(range(10))
//   deserialized_sl = pickle.loads(pickle.dumps(sl))   # a handle to the same list
//   sl[0] = -1; deserialized_sl[1] = -2                # both see [-1, -2, 2, ...]
#include <mproc/mproc.hpp>

#include <cstdio>
#include <filesystem>
#include <ranges>
#include <string>
#include <vector>

#include "start_method_arg.hpp"

bool ok = true;
void expect(bool cond, const char* what) {
    if (!cond) {
        std::printf("MISMATCH: %s\n", what);
        ok = false;
    }
}

// The second process: attaches by name, as ShareableList(name=...).
void second_process(std::string name) {
    auto c = mproc::ShareableList<long>::attach(name);
    c[c.size() - 1] = -999;
}

// The pickle round trip's C++ form: the list travels to a child as a handle.
void child_with_handle(mproc::ShareableList<long> deserialized_sl) { deserialized_sl[1] = -2; }

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    start_method_from_args(argc, argv);
    const std::string base = "psm_" + std::to_string(::getpid());

    auto a = mproc::ShareableList<std::string>::create(base + "_a", {"howdy", "HoWdY", "-273.154", "100", "None", "True", "42"});
    auto numbers = mproc::ShareableList<double>::create(base + "_n", {-273.154});
    std::printf("a[2] = %s, numbers[0] = %g\n", std::string(a[2]).c_str(), numbers[0]);
    numbers[0] = -78.5;
    std::printf("numbers[0] = %g\n", numbers[0]);
    expect(numbers[0] == -78.5, "numbers[0] == -78.5");
    a[2] = "dry ice";
    std::printf("a[2] = %s\n", std::string(a[2]).c_str());
    try {
        a[2] = "larger than previously allocated storage space";
        expect(false, "a string over its slot's capacity was accepted");
    } catch (const mproc::ValueError& e) {
        std::printf("ValueError: %s\n", e.what());
    }
    expect(a[2] == "dry ice", "a[2] unchanged by the refused write");
    std::printf("len(a) = %zu, a.index(\"42\") = %zu, a.count(\"hOwDy\") = %zu, a.count(\"HoWdY\") = %zu\n",
                a.size(), a.index("42"), a.count("hOwDy"), a.count("HoWdY"));
    expect(a.size() == 7 && a.index("42") == 6 && a.count("hOwDy") == 0 && a.count("HoWdY") == 1, "len/index/count");
    a.shm().unlink();
    numbers.shm().unlink();

    auto b = mproc::ShareableList<long>::create(base + "_b", std::views::iota(0L, 5L));
    mproc::Process second(second_process, b.name());
    second.start();
    second.join();
    std::printf("b[-1] = %ld\n", b[b.size() - 1]);
    expect(second.exitcode() == 0 && b[4] == -999, "b[-1] == -999 after the second process wrote c[-1]");
    b.shm().unlink();

    auto sl = mproc::ShareableList<long>::create(base + "_sl", std::views::iota(0L, 10L));
    sl[0] = -1;
    mproc::Process child(child_with_handle, sl);
    child.start();
    child.join();
    std::vector<long> seen(sl.begin(), sl.end());
    std::printf("list(sl) = [");
    for (std::size_t i = 0; i < seen.size(); ++i) std::printf("%s%ld", i ? ", " : "", seen[i]);
    std::printf("]\n");
    expect(seen == std::vector<long>{-1, -2, 2, 3, 4, 5, 6, 7, 8, 9}, "list(sl)");
    sl.shm().unlink();

    for (const char* suffix : {"_a", "_n", "_b", "_sl"})
        expect(!std::filesystem::exists("/dev/shm/" + base + suffix), "every name unlinked");
    std::printf("%s\n", ok ? "OK" : "MISMATCH");
    return ok ? 0 : 1;
}
