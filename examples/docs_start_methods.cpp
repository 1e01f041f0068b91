// Python's multiprocessing docs, "Contexts and start methods":
// set_start_method, then the same program through get_context.
//
//   ./docs_start_methods [--start-method fork|spawn|forkserver]
//
// Python originals:
//   def foo(q):
//       q.put('hello')
//
//   if __name__ == '__main__':
//       mp.set_start_method('spawn')
//       q = mp.Queue()
//       p = mp.Process(target=foo, args=(q,))
//       p.start()
//       print(q.get())
//       p.join()
//
//   if __name__ == '__main__':
//       ctx = mp.get_context('spawn')
//       q = ctx.Queue()
//       p = ctx.Process(target=foo, args=(q,))
//       p.start()
//       print(q.get())
//       p.join()
//
// The method comes from the command line (set_start_method); the context
// part then runs once with each of the three methods, whatever the default.
#include <mproc/mproc.hpp>

#include <cstdio>
#include <string>

#include "start_method_arg.hpp"

void foo(mproc::Queue<std::string> q) { q.put("hello"); }

const char* name_of(mproc::StartMethod m) {
    return m == mproc::StartMethod::spawn ? "spawn" : m == mproc::StartMethod::forkserver ? "forkserver" : "fork";
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    start_method_from_args(argc, argv);  // mp.set_start_method(...)
    bool ok = true;
    {
        mproc::Queue<std::string> q;
        mproc::Process p(foo, q);
        p.start();
        std::string got = q.get();
        std::printf("%s: %s\n", name_of(p.start_method()), got.c_str());
        p.join();
        ok = ok && got == "hello" && p.start_method() == mproc::get_start_method() && p.exitcode() == 0;
    }
    for (auto method : {mproc::StartMethod::fork, mproc::StartMethod::spawn, mproc::StartMethod::forkserver}) {
        auto ctx = mproc::get_context(method);
        auto q = ctx.Queue<std::string>();
        auto p = ctx.Process(foo, q);
        p.start();
        std::string got = q.get();
        std::printf("get_context(%s): %s\n", name_of(ctx.get_start_method()), got.c_str());
        p.join();
        ok = ok && got == "hello" && p.start_method() == method && p.exitcode() == 0;
    }
    std::printf("%s\n", ok ? "OK" : "MISMATCH");
    return ok ? 0 : 1;
}
