// A Pipe between a parent and a child: send, recv, poll, and EOF when the
// child is done.
//
// Python original:
//   parent_conn, child_conn = Pipe()
//   p = Process(target=f, args=(child_conn,)); p.start()
//   print(parent_conn.recv())
#include <mproc/mproc.hpp>

#include <cstdio>
#include <string>

void child(mproc::Connection<std::string> conn) {
    for (std::string msg = conn.recv(); msg != "bye"; msg = conn.recv())
        conn.send(msg == "ping" ? "pong" : "?");
    conn.close();  // the parent sees EOF once this end is closed
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    auto [parent_conn, child_conn] = mproc::Pipe<std::string>();
    mproc::Process p(child, child_conn);
    p.start();
    child_conn.close();  // the child holds its end; closing ours lets EOF through

    std::printf("poll before sending: %s\n", parent_conn.poll() ? "ready" : "nothing yet");
    for (int i = 0; i < 3; ++i) {
        parent_conn.send("ping");
        std::printf("sent ping, got %s\n", parent_conn.recv().c_str());
    }
    parent_conn.send("bye");
    try {
        parent_conn.recv();
        std::printf("FAILED: expected EOF\n");
        return 1;
    } catch (const mproc::EOFError&) {
        std::printf("EOF after the child closed its end\n");
    }
    p.join();
    std::printf("%s\n", p.exitcode() == 0 ? "OK" : "FAILED");
    return p.exitcode() == 0 ? 0 : 1;
}
