// Python's multiprocessing docs, "The Process class": f('bob'), then the
// info() example that shows the parent and child pids.
//
//   ./docs_process_intro [--start-method fork|spawn|forkserver]
//
// Python original:
//   def info(title):
//       print(title)
//       print('module name:', __name__)
//       print('parent process:', os.getppid())
//       print('process id:', os.getpid())
//
//   def f(name):
//       info('function f')
//       print('hello', name)
//
//   if __name__ == '__main__':
//       info('main line')
//       p = Process(target=f, args=('bob',))
//       p.start()
//       p.join()
#include <mproc/mproc.hpp>

#include <cstdio>
#include <string>

#include "start_method_arg.hpp"

void info(const char* title) {
    std::printf("%s\n", title);
    std::printf("process name: %s\n", mproc::current_process().name().c_str());  // Python: __name__
    if (auto ppid = mproc::parent_process()) std::printf("parent process: %d\n", *ppid);
    std::printf("process id: %d\n", mproc::current_process().pid());
}

void f(std::string name) {
    info("function f");
    std::printf("hello %s\n", name.c_str());
    // The child checks what it was given; the parent sees the exit code.
    if (name != "bob" || mproc::parent_process() == std::nullopt) std::exit(3);
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);  // the C++ `if __name__ == '__main__':`
    start_method_from_args(argc, argv);
    info("main line");
    std::fflush(stdout);  // so the parent's lines come out before the child's

    mproc::Process p(f, std::string("bob"));
    p.start();
    p.join();
    const bool ok = p.exitcode() == 0 && mproc::parent_process() == std::nullopt;
    std::printf("%s\n", ok ? "OK" : "MISMATCH");
    return ok ? 0 : 1;
}
