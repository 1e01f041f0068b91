// Python's multiprocessing.connection docs, "Listeners and Clients": a
// server sends a list, some bytes and an array; a client receives them, the
// array into a buffer with recv_bytes_into. Here the client is a child
// process (Python runs the two as separate programs; an mproc Client can
// just as well run in a program of its own).
//
//   ./listener_client [--start-method fork|spawn] [--address A]
//   A: host:port (default localhost:0, any free port), /path/to.sock, @name,
//      or @ alone for an abstract name of this process's own
//
// Python original:
//   with Listener(address, authkey=b'secret password') as listener:
//       with listener.accept() as conn:
//           print('connection accepted from', listener.last_accepted)
//           conn.send([2.25, None, 'junk', float])
//           conn.send_bytes(b'hello')
//           conn.send_bytes(array('i', [42, 1729]))
//
//   with Client(address, authkey=b'secret password') as conn:
//       print(conn.recv())                  # => [2.25, None, 'junk', float]
//       print(conn.recv_bytes())            # => 'hello'
//       arr = array('i', [0, 0, 0, 0, 0])
//       print(conn.recv_bytes_into(arr))    # => 8
//       print(arr)                          # => array('i', [42, 1729, 0, 0, 0])
#include <mproc/mproc.hpp>

#include <array>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <tuple>

// [2.25, None, 'junk', float]: a float, None, a str and a type, whose C++
// stand-in is its name.
using Item = std::tuple<double, std::optional<int>, std::string, std::string>;

std::string show(const Item& x) {
    char num[32];
    std::snprintf(num, sizeof num, "%g", std::get<0>(x));
    return std::string("[") + num + ", " + (std::get<1>(x) ? std::to_string(*std::get<1>(x)) : "None") + ", '" +
           std::get<2>(x) + "', " + std::get<3>(x) + "]";
}

void client(std::string address) {
    auto conn = mproc::Client<Item>(address, "secret password");
    const Item item = conn.recv();
    std::printf("%s\n", show(item).c_str());
    const auto hello = conn.recv_bytes();
    const std::string text(reinterpret_cast<const char*>(hello.data()), hello.size());
    std::printf("b'%s'\n", text.c_str());
    std::array<int, 5> arr{};
    const std::size_t n = conn.recv_bytes_into(std::as_writable_bytes(std::span(arr)));
    std::printf("%zu\n", n);
    std::printf("array('i', [%d, %d, %d, %d, %d])\n", arr[0], arr[1], arr[2], arr[3], arr[4]);
    const bool ok = item == Item{2.25, std::nullopt, "junk", "float"} && text == "hello" && n == 8 &&
                    arr == std::array<int, 5>{42, 1729, 0, 0, 0};
    if (!ok) std::printf("MISMATCH in what the client received\n");
    std::fflush(stdout);
    if (!ok) throw std::runtime_error("the client received the wrong data");
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    std::string address = "localhost:0";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (std::strcmp(argv[i], "--start-method") == 0)
            mproc::set_start_method(std::strcmp(argv[i + 1], "spawn") == 0 ? mproc::StartMethod::spawn
                                                                           : mproc::StartMethod::fork);
        if (std::strcmp(argv[i], "--address") == 0) address = argv[i + 1];
    }
    if (address == "@") address = "@mproc-listener-client-" + std::to_string(mproc::current_process().pid());

    mproc::Listener listener(address, "secret password");
    mproc::Process p(client, listener.address());  // port 0 became a real one
    p.start();
    {
        auto conn = listener.accept<Item>();
        std::printf("connection accepted from %s\n",
                    listener.last_accepted()->empty() ? "(a unix socket)" : listener.last_accepted()->c_str());
        std::fflush(stdout);
        conn.send(Item{2.25, std::nullopt, "junk", "float"});
        conn.send_bytes(std::as_bytes(std::span("hello", 5)));
        const std::array<int, 2> arr{42, 1729};
        conn.send_bytes(std::as_bytes(std::span(arr)));
    }
    p.join();
    std::printf("%s\n", p.exitcode() == 0 ? "OK" : "FAILED");
    return p.exitcode() == 0 ? 0 : 1;
}
