// Python's shared_memory documentation, SharedMemoryManager examples: the
// manager's segments are unlinked by shutdown(), and two processes fill
// halves of a ShareableList it made.
//
//   ./shared_memory_manager [--start-method fork|spawn|forkserver]
//
// Python original:
//   smm = SharedMemoryManager(); smm.start()
//   sl = smm.ShareableList(range(4))
//   raw_shm = smm.SharedMemory(size=128)
//   another_sl = smm.ShareableList('alpha')
//   smm.shutdown()  # Calls unlink() on sl, raw_shm, and another_sl
//
//   with SharedMemoryManager() as smm:
//       sl = smm.ShareableList(range(2000))
//       p1 = Process(target=do_work, args=(sl, 0, 1000))
//       p2 = Process(target=do_work, args=(sl, 1000, 2000))
//       p1.start(); p2.start(); p1.join(); p2.join()
//       total_result = sum(sl)
#include <mproc/mproc.hpp>

#include <cstdio>
#include <filesystem>
#include <numeric>
#include <ranges>
#include <string>
#include <string_view>

#include "start_method_arg.hpp"

// The documentation leaves do_work to the reader: square each element.
void do_work(mproc::ShareableList<long> sl, std::size_t start, std::size_t stop) {
    for (std::size_t i = start; i < stop; ++i) sl[i] = sl[i] * sl[i];
}

bool exists(const std::string& name) { return std::filesystem::exists("/dev/shm/" + name); }

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    start_method_from_args(argc, argv);
    bool ok = true;

    mproc::SharedMemoryManager smm;
    smm.start();
    auto sl = smm.ShareableList<long>(std::views::iota(0L, 4L));
    auto raw_shm = smm.SharedMemory(128);
    auto another_sl = smm.ShareableList<char>(std::string_view("alpha"));
    std::printf("sl = [%ld, %ld, %ld, %ld], name '%s'\n", sl[0], sl[1], sl[2], sl[3], sl.name().c_str());
    std::printf("another_sl = ['%c', '%c', '%c', '%c', '%c']\n", another_sl[0], another_sl[1], another_sl[2],
                another_sl[3], another_sl[4]);
    ok = ok && exists(sl.name()) && exists(raw_shm.name()) && exists(another_sl.name());
    smm.shutdown();  // unlinks sl, raw_shm and another_sl
    ok = ok && !exists(sl.name()) && !exists(raw_shm.name()) && !exists(another_sl.name());
    std::printf("after shutdown: %s\n", ok ? "all three names gone" : "a name is left");

    long total_result = 0;
    std::string name;
    {
        mproc::SharedMemoryManager smm2;  // Python's `with`: the destructor shuts it down
        auto sl2 = smm2.ShareableList<long>(std::views::iota(0L, 2000L));
        name = sl2.name();
        mproc::Process p1(do_work, sl2, std::size_t{0}, std::size_t{1000});
        mproc::Process p2(do_work, sl2, std::size_t{1000}, std::size_t{2000});
        p1.start();
        p2.start();
        p1.join();
        p2.join();
        for (long x : sl2) total_result += x;
        ok = ok && p1.exitcode() == 0 && p2.exitcode() == 0;
    }
    const long expected = 1999L * 2000 * 3999 / 6;  // sum of squares 0..1999
    std::printf("total_result = %ld (expected %ld)\n", total_result, expected);
    ok = ok && total_result == expected && !exists(name);
    std::printf("%s\n", ok ? "OK" : "MISMATCH");
    return ok ? 0 : 1;
}
