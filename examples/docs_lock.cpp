// Python's multiprocessing docs, "Synchronization between processes": ten
// children started in a loop and never joined by name, each printing under
// a shared Lock. The Process objects go out of scope at once; the children
// keep running (the destructor does not join, as in Python) and the exit
// handler waits for them when main returns. Their lines come in any order;
// the ctest test sorts them.
//
//   ./docs_lock [--start-method fork|spawn|forkserver]
//
// Python original:
//   def f(l, i):
//       l.acquire()
//       try:
//           print('hello world', i)
//       finally:
//           l.release()
//
//   if __name__ == '__main__':
//       lock = Lock()
//       for num in range(10):
//           Process(target=f, args=(lock, num)).start()
#include <mproc/mproc.hpp>

#include <cstdio>
#include <mutex>

#include "start_method_arg.hpp"

void f(mproc::Lock l, int i) {
    std::lock_guard guard(l);  // acquire ... finally release
    std::printf("hello world %d\n", i);
    std::fflush(stdout);  // the whole line while the lock is held
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    start_method_from_args(argc, argv);
    mproc::Lock lock;
    for (int num = 0; num < 10; ++num) mproc::Process(f, lock, num).start();
}
