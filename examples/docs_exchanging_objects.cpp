// Python's multiprocessing docs, "Exchanging objects between processes":
// the Queue example and the Pipe example, each sending [42, None, 'hello'].
//
//   ./docs_exchanging_objects [--start-method fork|spawn|forkserver]
//
// Python originals:
//   def f(q):
//       q.put([42, None, 'hello'])
//   q = Queue()
//   p = Process(target=f, args=(q,)); p.start()
//   print(q.get())    # prints "[42, None, 'hello']"
//   p.join()
//
//   def f(conn):
//       conn.send([42, None, 'hello'])
//       conn.close()
//   parent_conn, child_conn = Pipe()
//   p = Process(target=f, args=(child_conn,)); p.start()
//   print(parent_conn.recv())   # prints "[42, None, 'hello']"
//   p.join()
//
// A Python list may mix types; in C++ the item is a tuple, and None is an
// empty std::optional.
#include <mproc/mproc.hpp>

#include <cstdio>
#include <optional>
#include <string>
#include <tuple>

#include "start_method_arg.hpp"

using Item = std::tuple<int, std::optional<int>, std::string>;

void print(const Item& x) {
    const auto& [n, none, s] = x;
    std::printf("[%d, %s, '%s']\n", n, none ? std::to_string(*none).c_str() : "None", s.c_str());
}

void f_queue(mproc::Queue<Item> q) { q.put({42, std::nullopt, "hello"}); }

void f_pipe(mproc::Connection<Item> conn) {
    conn.send({42, std::nullopt, "hello"});
    conn.close();
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    start_method_from_args(argc, argv);
    const Item expected{42, std::nullopt, "hello"};

    mproc::Queue<Item> q;
    mproc::Process p(f_queue, q);
    p.start();
    Item from_queue = q.get();
    print(from_queue);
    p.join();

    auto [parent_conn, child_conn] = mproc::Pipe<Item>();
    mproc::Process p2(f_pipe, child_conn);
    p2.start();
    Item from_pipe = parent_conn.recv();
    print(from_pipe);
    p2.join();

    const bool ok = from_queue == expected && from_pipe == expected && p.exitcode() == 0 && p2.exitcode() == 0;
    std::printf("%s\n", ok ? "OK" : "MISMATCH");
    return ok ? 0 : 1;
}
