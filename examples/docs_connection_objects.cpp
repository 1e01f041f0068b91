// Python's multiprocessing docs, "Connection Objects": send/recv of an
// object, send_bytes/recv_bytes, and recv_bytes_into an array, with the
// other end (b) in a child process. Then BufferTooShort, which here keeps
// the message (Python's consumes it).
//
//   ./docs_connection_objects [--start-method fork|spawn|forkserver]
//
// Python original (an interactive session, one process):
//   >>> a, b = Pipe()
//   >>> a.send([1, 'hello', None])
//   >>> b.recv()
//   [1, 'hello', None]
//   >>> b.send_bytes(b'thank you')
//   >>> a.recv_bytes()
//   b'thank you'
//   >>> arr1 = array.array('i', range(5))
//   >>> arr2 = array.array('i', [0] * 10)
//   >>> a.send_bytes(arr1)
//   >>> count = b.recv_bytes_into(arr2)
//   >>> assert count == len(arr1) * arr1.itemsize
//   >>> arr2
//   array('i', [0, 1, 2, 3, 4, 0, 0, 0, 0, 0])
#include <mproc/mproc.hpp>

#include <array>
#include <cstdio>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <tuple>

#include "start_method_arg.hpp"

using Item = std::tuple<int, std::string, std::optional<int>>;  // [1, 'hello', None]

// b's side of the session; it reports what it saw by its exit code.
void b_side(mproc::Connection<Item> b) {
    Item x = b.recv();
    std::printf("b.recv() -> [%d, '%s', %s]\n", std::get<0>(x), std::get<1>(x).c_str(),
                std::get<2>(x) ? "?" : "None");
    if (x != Item{1, "hello", std::nullopt}) std::exit(2);

    const char thanks[] = "thank you";
    b.send_bytes(std::as_bytes(std::span(thanks, std::strlen(thanks))));

    std::array<int, 10> arr2{};
    std::size_t count = b.recv_bytes_into(std::as_writable_bytes(std::span(arr2)));
    std::printf("count = %zu; arr2 = [", count);
    for (std::size_t i = 0; i < arr2.size(); ++i) std::printf("%s%d", i ? ", " : "", arr2[i]);
    std::printf("]\n");
    if (count != 5 * sizeof(int) || arr2 != std::array<int, 10>{0, 1, 2, 3, 4, 0, 0, 0, 0, 0}) std::exit(3);

    // A buffer too small: BufferTooShort says how long the message is, and
    // the message stays for the next receive.
    std::array<std::byte, 8> small{};
    try {
        b.recv_bytes_into(small);
        std::exit(4);
    } catch (const mproc::BufferTooShort& e) {
        std::printf("BufferTooShort: message of %zu bytes\n", e.size());
        if (e.size() != 5 * sizeof(int) || b.recv_bytes().size() != e.size()) std::exit(5);
    }
    std::fflush(stdout);
    b.send_bytes(std::as_bytes(std::span(arr2)));  // arr2 back, for the parent to check
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    start_method_from_args(argc, argv);
    auto [a, b] = mproc::Pipe<Item>();
    mproc::Process p(b_side, b);
    p.start();
    b.close();  // the child holds its own copy of b

    a.send({1, "hello", std::nullopt});
    std::vector<std::byte> got = a.recv_bytes();
    std::string thanks(reinterpret_cast<const char*>(got.data()), got.size());
    std::printf("a.recv_bytes() -> b'%s'\n", thanks.c_str());

    const std::array<int, 5> arr1{0, 1, 2, 3, 4};
    a.send_bytes(std::as_bytes(std::span(arr1)));
    a.send_bytes(std::as_bytes(std::span(arr1)));  // for the BufferTooShort part
    std::vector<std::byte> back = a.recv_bytes();
    p.join();

    std::array<int, 10> arr2{};
    const bool sized = back.size() == sizeof arr2;
    if (sized) std::memcpy(arr2.data(), back.data(), sizeof arr2);
    const bool ok = thanks == "thank you" && sized && arr2 == std::array<int, 10>{0, 1, 2, 3, 4, 0, 0, 0, 0, 0} &&
                    p.exitcode() == 0;
    std::printf("%s\n", ok ? "OK" : "MISMATCH");
    return ok ? 0 : 1;
}
