// Python's shared_memory documentation, first example: a NumPy array backed
// by a SharedMemory block, attached by name from a second process. In C++
// the "ndarray over shm.buf" is a std::span<std::int64_t> over shm.data().
//
//   ./shared_memory_array [--start-method fork|spawn|forkserver]
//
// Python original:
//   a = np.array([1, 1, 2, 3, 5, 8])
//   shm = shared_memory.SharedMemory(create=True, size=a.nbytes)
//   b = np.ndarray(a.shape, dtype=a.dtype, buffer=shm.buf)
//   b[:] = a[:]
//   # in another process:
//   existing_shm = shared_memory.SharedMemory(name=shm.name)
//   c = np.ndarray((6,), dtype=np.int64, buffer=existing_shm.buf)
//   c[-1] = 888
//   # back in the first: b is now [1, 1, 2, 3, 5, 888]
//   shm.close(); shm.unlink()
#include <mproc/mproc.hpp>

#include <array>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <span>
#include <string>

#include "start_method_arg.hpp"

void print(const char* label, std::span<const std::int64_t> v) {
    std::printf("%s [", label);
    for (std::size_t i = 0; i < v.size(); ++i) std::printf("%s%lld", i ? ", " : "", static_cast<long long>(v[i]));
    std::printf("]\n");
}

// The second shell: attach to the block by its name, view it as six int64.
void second_process(std::string name) {
    auto existing_shm = mproc::SharedMemory::attach(name);
    std::span<std::int64_t> c(reinterpret_cast<std::int64_t*>(existing_shm.data()), 6);
    print("c =", c);
    c[c.size() - 1] = 888;
    print("c =", c);
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    start_method_from_args(argc, argv);

    const std::array<std::int64_t, 6> a{1, 1, 2, 3, 5, 8};
    // Python picks a name; mproc asks for one (psm_<pid>, as Python's look).
    const std::string name = "psm_" + std::to_string(::getpid());
    auto shm = mproc::SharedMemory::create(name, sizeof a);
    std::span<std::int64_t> b(reinterpret_cast<std::int64_t*>(shm.data()), a.size());
    std::copy(a.begin(), a.end(), b.begin());
    print("b =", b);
    std::printf("shm.name() = %s\n", shm.name().c_str());

    std::fflush(stdout);  // so the two processes' lines come out in order
    mproc::Process other(second_process, shm.name());
    other.start();
    other.join();

    print("b =", b);  // reflects the change made in the other process
    const bool changed = b[5] == 888 && b[4] == 5 && other.exitcode() == 0;
    shm.unlink();  // free the name at the very end
    const bool unlinked = !std::filesystem::exists("/dev/shm/" + name);
    std::printf("%s\n", changed && unlinked ? "OK" : "MISMATCH");
    return changed && unlinked ? 0 : 1;
}
