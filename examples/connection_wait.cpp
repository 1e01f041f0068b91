// Python's multiprocessing.connection docs, the wait() example: four
// children each send ten messages down a Pipe and close it; the parent waits
// on all the readers at once and drops each one as it reaches EOF.
//
//   ./connection_wait [--start-method fork|spawn|forkserver]
//
// Python original:
//   def foo(w):
//       for i in range(10):
//           w.send((i, current_process().name))
//       w.close()
//
//   readers = []
//   for i in range(4):
//       r, w = Pipe(duplex=False)
//       readers.append(r)
//       p = Process(target=foo, args=(w,))
//       p.start()
//       w.close()    # so that p alone holds the writable end, and wait() sees its EOF
//   while readers:
//       for r in wait(readers):
//           try:
//               msg = r.recv()
//           except EOFError:
//               readers.remove(r)
//           else:
//               print(msg)
#include <mproc/mproc.hpp>

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "start_method_arg.hpp"

using Msg = std::pair<int, std::string>;

void foo(mproc::Connection<Msg> w) {
    for (int i = 0; i < 10; ++i) w.send({i, mproc::current_process().name()});
    w.close();
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    start_method_from_args(argc, argv);
    std::vector<mproc::Connection<Msg>> readers;
    std::vector<mproc::Process> procs;
    for (int i = 0; i < 4; ++i) {
        auto [r, w] = mproc::Pipe<Msg>(/*duplex=*/false);
        readers.push_back(r);
        procs.emplace_back(foo, w).start();
        w.close();
    }
    std::map<std::string, int> next;  // per child, the next number expected
    bool in_order = true;
    while (!readers.empty()) {
        for (auto& r : mproc::wait(readers)) {
            try {
                const Msg msg = r.recv();
                std::printf("(%d, '%s')\n", msg.first, msg.second.c_str());
                in_order = in_order && next[msg.second]++ == msg.first;
            } catch (const mproc::EOFError&) {
                std::erase(readers, r);  // readers.remove(r): Connections compare by end
            }
        }
    }
    for (auto& p : procs) p.join();
    bool ok = in_order && next.size() == 4;
    for (auto& [name, n] : next) ok = ok && n == 10;
    for (auto& p : procs) ok = ok && p.exitcode() == 0;
    std::printf("%s: %zu children, 10 messages each, in order, every reader removed at EOF\n",
                ok ? "OK" : "FAILED", next.size());
    return ok ? 0 : 1;
}
