// Python's multiprocessing docs, "Sharing state between processes", shared
// memory: a Value('d') and an Array('i', range(10)) changed by a child.
//
//   ./docs_shared_value_array [--start-method fork|spawn|forkserver]
//
// Python original:
//   def f(n, a):
//       n.value = 3.1415927
//       for i in range(len(a)):
//           a[i] = -a[i]
//
//   if __name__ == '__main__':
//       num = Value('d', 0.0)
//       arr = Array('i', range(10))
//       p = Process(target=f, args=(num, arr))
//       p.start()
//       p.join()
//       print(num.value)   # 3.1415927
//       print(arr[:])      # [0, -1, -2, -3, -4, -5, -6, -7, -8, -9]
//
// The typecode becomes the element type ('d' double, 'i' int). As in
// Python, Value and Array carry a lock (get_lock()), which plain stores like
// these do not need.
#include <mproc/mproc.hpp>

#include <cstdio>
#include <ranges>

#include "start_method_arg.hpp"

void f(mproc::Value<double> n, mproc::Array<int> a) {
    n.value() = 3.1415927;
    for (std::size_t i = 0; i < a.size(); ++i) a[i] = -a[i];
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    start_method_from_args(argc, argv);
    mproc::Value<double> num(0.0);
    mproc::Array<int> arr(std::views::iota(0, 10));

    mproc::Process p(f, num, arr);
    p.start();
    p.join();

    std::printf("%.7f\n", num.value());
    std::printf("[");
    bool ok = num.value() == 3.1415927 && arr.size() == 10 && p.exitcode() == 0;
    for (std::size_t i = 0; i < arr.size(); ++i) {
        std::printf("%s%d", i ? ", " : "", arr[i]);
        ok = ok && arr[i] == -static_cast<int>(i);
    }
    std::printf("]\n%s\n", ok ? "OK" : "MISMATCH");
    return ok ? 0 : 1;
}
