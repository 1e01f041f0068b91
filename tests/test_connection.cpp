// Listener / Client (multiprocessing.connection) across real processes:
// TCP, unix socket paths and abstract names; the authkey challenge both
// ways; typed values, raw bytes, recv_bytes_into, poll and timeouts; EOF on
// close and on kill -9 while blocked; hostile clients that must cost only
// their own connection (and no memory); wait() over Pipe ends and socket
// connections together; socket connections handed to fork and spawn
// children.
#include <catch2/catch.hpp>

#include <mproc/connection.hpp>
#include <mproc/pipe.hpp>
#include <mproc/process.hpp>
#include <mproc/sync.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_set>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "support.hpp"

using namespace std::chrono_literals;
using mproc::Duration;
using mproc::StartMethod;
using mproc_test::fork_child;
using mproc_test::wait_child;

namespace {

constexpr Duration kLong = 30s;

void check(bool ok, const char* what) {
    if (!ok) throw std::runtime_error(what);
}

/// Strings joined by append: GCC 12 at -O3 warns falsely (-Wrestrict) on
/// operator+ chains that start with a literal.
template <class... S>
std::string cat(const S&... parts) {
    std::string out;
    (out.append(parts), ...);
    return out;
}

std::string unique_name(const char* kind) {
    static std::atomic<int> n{0};
    return cat("mproc-test-", kind, "-", std::to_string(::getpid()), "-", std::to_string(n++));
}

/// The three kinds of address, each unique to this test run.
std::vector<std::string> addresses() {
    return {"localhost:0", cat("/tmp/", unique_name("sock"), ".sock"), cat("@", unique_name("abstract"))};
}

bool file_exists(const std::string& path) {
    struct stat st;
    return ::lstat(path.c_str(), &st) == 0;
}

/// Resets this process's peak resident memory (VmHWM) to what it uses now.
void reset_peak_resident() {
    std::ofstream f("/proc/self/clear_refs");
    f << "5";
}

/// This process's peak resident memory since the last reset, from
/// /proc/self/status: memory allocated and freed again still shows.
std::size_t peak_resident_bytes() {
    std::ifstream f("/proc/self/status");
    std::string key;
    std::size_t kb = 0;
    while (f >> key) {
        if (key == "VmHWM:") {
            f >> kb;
            return kb << 10;
        }
    }
    FAIL("no VmHWM in /proc/self/status");
    return 0;
}

std::size_t resident_bytes() {
    std::ifstream f("/proc/self/statm");
    std::size_t size = 0, resident = 0;
    f >> size >> resident;
    return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

/// A raw socket connected to a Listener's address, for clients that do not
/// speak the protocol.
int raw_connect(const std::string& address) {
    if (address.front() == '@' || address.find('/') != std::string::npos) {
        const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un sa{};
        sa.sun_family = AF_UNIX;
        std::memcpy(sa.sun_path, address.data(), address.size());
        socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.size());
        if (address.front() == '@') sa.sun_path[0] = '\0';
        else ++len;
        REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&sa), len) == 0);
        return fd;
    }
    const auto colon = address.rfind(':');
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1))));
    REQUIRE(::inet_pton(AF_INET, address.substr(0, colon).c_str(), &sa.sin_addr) == 1);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    return fd;
}

void raw_send(int fd, const std::vector<unsigned char>& bytes) {
    REQUIRE(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size()));
}

/// A frame header as Python writes it ("!i", big-endian).
std::vector<unsigned char> be32(std::uint32_t n) {
    return {static_cast<unsigned char>(n >> 24), static_cast<unsigned char>(n >> 16),
            static_cast<unsigned char>(n >> 8), static_cast<unsigned char>(n)};
}

std::vector<std::byte> pattern(std::size_t n, unsigned seed) {
    std::vector<std::byte> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((i * 131 + seed) % 251);
    return v;
}

using Record = std::tuple<double, std::optional<int>, std::string, std::vector<long>>;

// ---- children (functions, so that spawn can run them too) --------------------

/// Connects, sends a Record and 3 raw messages, echoes one reply back.
void client_main(std::string address, std::string key) {
    auto c = mproc::Client<Record>(address, key, kLong);
    c.send(Record{2.25, std::nullopt, "junk", {1, 2, 3}});
    const auto big = pattern(3 << 20, 7);
    c.send_bytes(big);
    const std::array<int, 2> arr{42, 1729};
    c.send_bytes(std::as_bytes(std::span(arr)));
    Record back = c.recv(kLong);
    check(std::get<2>(back) == "echo", "the server's reply is wrong");
    c.send(back);
}

/// Listens on `address`, tells the parent it is ready, serves one client:
/// replies to each int with its double, until EOF.
void server_main(std::string address, std::string key, mproc::Connection<std::string> ready) {
    mproc::Listener listener(address, key);
    ready.send(listener.address());
    auto c = listener.accept<int>(kLong);
    for (;;) {
        int x;
        try {
            x = c.recv(kLong);
        } catch (const mproc::EOFError&) {
            return;
        }
        c.send(2 * x);
    }
}

/// Echoes strings on an inherited socket connection until EOF.
void echo_main(mproc::Connection<std::string> c) {
    for (;;) {
        std::string s;
        try {
            s = c.recv(kLong);
        } catch (const mproc::EOFError&) {
            return;
        }
        c.send(cat(s, "!"));
    }
}

/// Expects its Client() to fail authentication; exit code 0 if it did.
void wrong_key_client(std::string address, std::string key) {
    try {
        auto c = mproc::Client<int>(address, key, kLong);
    } catch (const mproc::AuthenticationError&) {
        return;
    }
    throw std::runtime_error("Client() with the wrong authkey succeeded");
}

}  // namespace

TEST_CASE("Listener/Client over TCP, a unix path and an abstract name, client forked and spawned",
          "[connection]") {
    for (const std::string& where : addresses()) {
        for (auto method : {StartMethod::fork, StartMethod::spawn}) {
            CAPTURE(where, static_cast<int>(method));
            const std::string path = where.front() == '/' ? where : "";
            {
                mproc::Listener listener(where, "secret password");
                if (where.front() == '/' || where.front() == '@') REQUIRE(listener.address() == where);
                else REQUIRE(listener.address().rfind("127.0.0.1:", 0) == 0);
                if (!path.empty()) REQUIRE(file_exists(path));
                REQUIRE_FALSE(listener.last_accepted());
                mproc::Process p(client_main, listener.address(), std::string("secret password"));
                p.start_method(method).start();
                auto conn = listener.accept<Record>(kLong);
                REQUIRE(listener.last_accepted());
                if (path.empty() && where.front() != '@') REQUIRE(listener.last_accepted()->rfind("127.0.0.1:", 0) == 0);
                else REQUIRE(*listener.last_accepted() == "");
                const Record r = conn.recv(kLong);
                REQUIRE(r == Record{2.25, std::nullopt, "junk", {1, 2, 3}});
                REQUIRE(conn.recv_bytes(kLong) == pattern(3 << 20, 7));
                std::array<int, 5> arr{};
                REQUIRE(conn.recv_bytes_into(std::as_writable_bytes(std::span(arr)), kLong) == 8);
                REQUIRE(arr == std::array<int, 5>{42, 1729, 0, 0, 0});
                conn.send(Record{0, 1, "echo", {}});
                REQUIRE(std::get<2>(conn.recv(kLong)) == "echo");
                REQUIRE(p.join(kLong));
                REQUIRE(p.exitcode() == 0);
                REQUIRE_THROWS_AS(conn.recv(kLong), mproc::EOFError);  // the client exited
            }
            if (!path.empty()) REQUIRE_FALSE(file_exists(path));  // removed with the Listener
        }
    }
}

TEST_CASE("Listener in a spawned or forked child, Client in the parent", "[connection]") {
    for (const std::string& where : addresses()) {
        for (auto method : {StartMethod::fork, StartMethod::spawn}) {
            CAPTURE(where, static_cast<int>(method));
            auto [ready_r, ready_w] = mproc::Pipe<std::string>(false);
            mproc::Process p(server_main, where, std::string("k"), ready_w);
            p.start_method(method).start();
            const std::string address = ready_r.recv(kLong);
            auto c = mproc::Client<int>(address, "k", kLong);
            for (int i = 0; i < 1000; ++i) {
                c.send(i);
                REQUIRE(c.recv(kLong) == 2 * i);
            }
            c.close();
            REQUIRE(p.join(kLong));
            REQUIRE(p.exitcode() == 0);
            if (where.front() == '/') REQUIRE_FALSE(file_exists(where));  // the child's Listener removed it
        }
    }
}

TEST_CASE("A wrong authkey is AuthenticationError on both sides", "[connection][auth]") {
    for (const std::string& where : addresses()) {
        CAPTURE(where);
        mproc::Listener listener(where, "right");
        for (auto method : {StartMethod::fork, StartMethod::spawn}) {
            mproc::Process p(wrong_key_client, listener.address(), std::string("wrong"));
            p.start_method(method).start();
            REQUIRE_THROWS_AS(listener.accept<int>(kLong), mproc::AuthenticationError);
            REQUIRE(p.join(kLong));
            REQUIRE(p.exitcode() == 0);  // its Client() threw AuthenticationError too
        }
        // The listener is unharmed: the right key still gets in.
        pid_t pid = fork_child([&] {
            auto c = mproc::Client<int>(listener.address(), "right", kLong);
            c.send(5);
        });
        auto c = listener.accept<int>(kLong);
        REQUIRE(c.recv(kLong) == 5);
        REQUIRE(wait_child(pid) == 0);
    }
}

TEST_CASE("No authkey (nullopt or empty) means no challenge", "[connection][auth]") {
    for (std::optional<std::string> key : {std::optional<std::string>(), std::optional<std::string>("")}) {
        mproc::Listener listener(cat("@", unique_name("nokey")), key);
        pid_t pid = fork_child([&] {
            auto c = mproc::Client<std::string>(listener.address(), std::nullopt, kLong);
            c.send("plain");
            check(c.recv(kLong) == "back", "no reply");
        });
        auto c = listener.accept<std::string>(kLong);
        REQUIRE(c.recv(kLong) == "plain");
        c.send("back");
        REQUIRE(wait_child(pid) == 0);
    }
    // A raw client's first bytes are its first message: no challenge was sent.
    mproc::Listener listener("localhost:0");
    const int fd = raw_connect(listener.address());
    auto first = be32(3);
    first.insert(first.end(), {'a', 'b', 'c'});
    raw_send(fd, first);
    auto c = listener.accept<int>(kLong);
    const auto got = c.recv_bytes(kLong);
    REQUIRE(std::string(reinterpret_cast<const char*>(got.data()), got.size()) == "abc");
    ::close(fd);
}

TEST_CASE("Connection: big messages, recv_bytes_into, BufferTooShort keeps the message", "[connection]") {
    mproc::Listener listener("localhost:0", "k");
    const auto big = pattern(40 << 20, 3);  // 40 MiB each way
    pid_t pid = fork_child([&] {
        auto c = mproc::Client<std::vector<long>>(listener.address(), "k", kLong);
        auto got = c.recv_bytes(kLong);
        check(got == big, "40 MiB message corrupted");
        c.send_bytes(got);
        std::vector<long> v(1 << 20);
        for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<long>(i * i);
        c.send(v);
        c.send_bytes(std::as_bytes(std::span("0123456789", 10)));
        c.send_bytes({});  // an empty message is a message
    });
    auto c = listener.accept<std::vector<long>>(kLong);
    c.send_bytes(big);
    REQUIRE(c.recv_bytes(kLong) == big);
    const std::vector<long> v = c.recv(kLong);
    REQUIRE(v.size() == (1u << 20));
    REQUIRE(v[1000] == 1000 * 1000);
    std::array<char, 16> buf{};
    // Too small: the message stays, and the error says how big it is.
    try {
        c.recv_bytes_into(std::as_writable_bytes(std::span(buf).first(4)), kLong);
        FAIL("no BufferTooShort");
    } catch (const mproc::BufferTooShort& e) {
        REQUIRE(e.size() == 10);
    }
    // Python's offset: a subspan.
    REQUIRE(c.recv_bytes_into(std::as_writable_bytes(std::span(buf)).subspan(3), kLong) == 10);
    REQUIRE(std::string(buf.data(), 13) == std::string("\0\0\0" "0123456789", 13));
    REQUIRE(c.recv_bytes_into(std::as_writable_bytes(std::span(buf)), kLong) == 0);
    REQUIRE(wait_child(pid) == 0);
}

TEST_CASE("Connection: poll and timeouts on every blocking call", "[connection][timeout]") {
    mproc::Listener listener(cat("@", unique_name("poll")), "k");
    REQUIRE_THROWS_AS(listener.accept<int>(20ms), mproc::TimeoutError);
    REQUIRE_THROWS_AS(listener.accept<int>(Duration(0)), mproc::TimeoutError);
    // Client() times out when the listener never takes it: the kernel
    // completes the connection, but nobody answers the challenge.
    REQUIRE_THROWS_AS(mproc::Client<int>(listener.address(), "k", 100ms), mproc::TimeoutError);
    REQUIRE_THROWS_AS(listener.accept<int>(kLong), mproc::AuthenticationError);  // that client hung up

    mproc::Event go, finish;
    pid_t pid = fork_child([&] {
        auto c = mproc::Client<int>(listener.address(), "k", kLong);
        check(go.wait(kLong), "never told to go");
        c.send(7);
        check(c.recv(kLong) == 1, "no ack");
        // Don't read from now on: the parent's sends must time out.
        check(finish.wait(kLong), "never told to finish");
    });
    auto c = listener.accept<int>(kLong);
    REQUIRE_FALSE(c.poll());
    REQUIRE_FALSE(c.poll(20ms));
    REQUIRE_THROWS_AS(c.recv(20ms), mproc::TimeoutError);
    REQUIRE_THROWS_AS(c.recv_bytes(Duration(0)), mproc::TimeoutError);
    go.set();
    REQUIRE(c.poll(kLong));
    REQUIRE(c.poll());  // still there until received
    REQUIRE(c.recv(Duration(0)) == 7);
    c.send(1);
    // The peer does not read: sends fill the socket's buffers, then time out.
    const std::vector<std::byte> chunk(1 << 20);
    bool timed_out = false;
    for (int i = 0; i < 1000 && !timed_out; ++i) {
        try {
            c.send_bytes(chunk, 50ms);
        } catch (const mproc::TimeoutError&) {
            timed_out = true;
        }
    }
    REQUIRE(timed_out);
    finish.set();
    REQUIRE(wait_child(pid) == 0);
    REQUIRE(c.poll(kLong));  // EOF counts as ready
    REQUIRE_THROWS_AS(c.recv(kLong), mproc::EOFError);
}

TEST_CASE("Connection: EOFError when the peer closes, or is killed -9 while we are blocked", "[connection][eof]") {
    for (const std::string& where : addresses()) {
        CAPTURE(where);
        mproc::Listener listener(where, "k");
        // A clean close: what was sent arrives first.
        pid_t pid = fork_child([&] {
            auto c = mproc::Client<int>(listener.address(), "k", kLong);
            for (int i = 0; i < 3; ++i) c.send(i);
            c.close();
        });
        auto c = listener.accept<int>(kLong);
        REQUIRE(wait_child(pid) == 0);
        for (int i = 0; i < 3; ++i) REQUIRE(c.recv(kLong) == i);
        REQUIRE_THROWS_AS(c.recv(kLong), mproc::EOFError);
        REQUIRE_THROWS_AS(c.recv(kLong), mproc::EOFError);
        // A send to the dead end fails, never silently forever.
        bool eof = false;
        for (int i = 0; i < 1000 && !eof; ++i) {
            try {
                c.send(i, Duration(1));
            } catch (const mproc::EOFError&) {
                eof = true;
            }
        }
        REQUIRE(eof);

        // kill -9 while the parent is blocked in recv (server side), and
        // while a child is blocked in recv (client side).
        mproc::Event connected, never;
        pid = fork_child([&] {
            auto k = mproc::Client<int>(listener.address(), "k", kLong);
            connected.set();
            never.wait();
        });
        auto d = listener.accept<int>(kLong);
        REQUIRE(connected.wait(kLong));
        std::thread killer([&] { ::kill(pid, SIGKILL); });
        REQUIRE_THROWS_AS(d.recv(kLong), mproc::EOFError);
        killer.join();
        REQUIRE(wait_child(pid) == -SIGKILL);

        mproc::Event blocked;
        auto [ok_r, ok_w_] = mproc::Pipe<int>(false);
        auto ok_w = ok_w_;  // a plain variable: lambdas may capture it (C++20 bindings only from clang 16)
        pid_t server = fork_child([&] {
            auto e = listener.accept<int>(kLong);
            blocked.set();
            never.wait();
        });
        pid_t client = fork_child([&] {
            auto e = mproc::Client<int>(listener.address(), "k", kLong);
            try {
                e.recv(kLong);
            } catch (const mproc::EOFError&) {
                ok_w.send(1);
            }
        });
        REQUIRE(blocked.wait(kLong));
        ::kill(server, SIGKILL);
        REQUIRE(ok_r.recv(kLong) == 1);
        REQUIRE(wait_child(client) == 0);
        REQUIRE(wait_child(server) == -SIGKILL);
    }
}

TEST_CASE("Hostile clients before authentication cost only their connection, and no memory",
          "[connection][hostile]") {
    for (const std::string& where : addresses()) {
        CAPTURE(where);
        mproc::Listener listener(where, "k");
        reset_peak_resident();
        const std::size_t rss_before = resident_bytes();
        std::vector<int> raw;
        // 1. A frame that claims 1 GiB (and then some bytes of it).
        raw.push_back(raw_connect(listener.address()));
        auto huge = be32(1u << 30);
        huge.insert(huge.end(), 1000, 'x');
        raw_send(raw.back(), huge);
        // 2. The long form (-1, then 8 bytes) claiming 4 GiB.
        raw.push_back(raw_connect(listener.address()));
        raw_send(raw.back(), {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0, 0, 0, 0});
        // 3. A short digest in a well-formed frame.
        raw.push_back(raw_connect(listener.address()));
        auto shortd = be32(12);
        shortd.insert(shortd.end(), {'{', 's', 'h', 'a', '2', '5', '6', '}', 1, 2, 3, 4});
        raw_send(raw.back(), shortd);
        // 4. Garbage.
        raw.push_back(raw_connect(listener.address()));
        raw_send(raw.back(), {'G', 'E', 'T', ' ', '/', ' ', 'H', 'T', 'T', 'P', '/', '1', '.', '1', '\r', '\n'});
        // 5. Hangs up in the middle of a frame.
        raw.push_back(raw_connect(listener.address()));
        auto half = be32(40);
        half.insert(half.end(), {'{', 's', 'h', 'a'});
        raw_send(raw.back(), half);
        ::shutdown(raw.back(), SHUT_WR);
        // 6. A slow-loris: connected, silent, still there at the end.
        const int slow = raw_connect(listener.address());

        // A good client after them all is still served, while the slow one
        // is pending (its limit is 10 s; this accept would time out first
        // if accept() waited for it).
        pid_t pid = fork_child([&] {
            auto c = mproc::Client<std::string>(listener.address(), "k", kLong);
            c.send("good");
        });
        int failures = 0;
        std::optional<mproc::Connection<std::string>> good;
        while (!good || failures < 5) {
            try {
                good = listener.accept<std::string>(5s);
            } catch (const mproc::AuthenticationError& e) {
                ++failures;
                INFO(e.what());
            }
        }
        REQUIRE(failures == 5);
        REQUIRE(good->recv(kLong) == "good");
        REQUIRE(wait_child(pid) == 0);
        // Nothing was allocated on any client's word (not even for a moment).
        REQUIRE(peak_resident_bytes() < rss_before + (64u << 20));
        for (int fd : raw) ::close(fd);
        ::close(slow);
    }
}

TEST_CASE("A client that stalls in the challenge is dropped after auth_timeout", "[connection][hostile]") {
    mproc::Listener listener("localhost:0", "k", mproc::ListenerOptions{.auth_timeout = 300ms});
    const int slow = raw_connect(listener.address());
    const auto start = std::chrono::steady_clock::now();
    REQUIRE_THROWS_AS(listener.accept<int>(kLong), mproc::AuthenticationError);
    REQUIRE(std::chrono::steady_clock::now() - start >= 250ms);
    // Dropped: the server closed its end (after sending the challenge).
    char buf[256];
    ssize_t n;
    while ((n = ::recv(slow, buf, sizeof buf, 0)) > 0) {
    }
    REQUIRE(n == 0);
    ::close(slow);
}

TEST_CASE("After authentication, a huge length prefix allocates only what arrives", "[connection][hostile]") {
    mproc::Listener listener(cat("@", unique_name("huge")));  // no key: the first bytes are a message
    const int fd = raw_connect(listener.address());
    auto c = listener.accept<int>(kLong);
    reset_peak_resident();
    const std::size_t rss_before = resident_bytes();
    // The long form: -1, then 4 GiB; then 100 bytes of it.
    std::vector<unsigned char> h{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0, 0, 0, 0};
    h.insert(h.end(), 100, 'y');
    raw_send(fd, h);
    REQUIRE_FALSE(c.poll(50ms));
    REQUIRE_THROWS_AS(c.recv(50ms), mproc::TimeoutError);
    REQUIRE(peak_resident_bytes() < rss_before + (16u << 20));
    // Meanwhile another client is served.
    pid_t pid = fork_child([&] { mproc::Client<int>(listener.address(), std::nullopt, kLong).send(3); });
    auto d = listener.accept<int>(kLong);
    std::vector<mproc::Connection<int>> both{c, d};
    auto ready = mproc::wait(both, kLong);
    REQUIRE(ready.size() == 1);
    REQUIRE(ready[0] == d);
    REQUIRE(d.recv(kLong) == 3);
    REQUIRE(wait_child(pid) == 0);
    // The hostile one hangs up mid-message: EOFError, and a clear one.
    ::close(fd);
    try {
        c.recv(kLong);
        FAIL("no EOFError");
    } catch (const mproc::EOFError& e) {
        REQUIRE(std::string(e.what()).find("middle of a message") != std::string::npos);
    }
}

TEST_CASE("A message that arrives in pieces: a recv that times out half-way loses nothing", "[connection][timeout]") {
    mproc::Listener listener("localhost:0");
    const int fd = raw_connect(listener.address());
    auto c = listener.accept<std::int64_t>(kLong);
    const std::int64_t value = 0x0102030405060708;
    std::vector<unsigned char> frame = be32(sizeof value);
    const auto* p = reinterpret_cast<const unsigned char*>(&value);
    frame.insert(frame.end(), p, p + sizeof value);
    raw_send(fd, {frame.begin(), frame.begin() + 2});  // half the header
    REQUIRE_THROWS_AS(c.recv(20ms), mproc::TimeoutError);
    raw_send(fd, {frame.begin() + 2, frame.begin() + 7});  // the header and a bit
    REQUIRE_FALSE(c.poll(20ms));
    REQUIRE_THROWS_AS(c.recv(Duration(0)), mproc::TimeoutError);
    raw_send(fd, {frame.begin() + 7, frame.end()});
    REQUIRE(c.poll(kLong));
    REQUIRE(c.recv(Duration(0)) == value);
    ::close(fd);
    REQUIRE_THROWS_AS(c.recv(kLong), mproc::EOFError);
}

TEST_CASE("recv_bytes_into on a Pipe end: the same rules, also for a message larger than the ring",
          "[connection][pipe]") {
    auto [a, b] = mproc::Pipe<int>(true, 4096);
    for (std::size_t n : {std::size_t{10}, std::size_t{100000}}) {
        const auto msg = pattern(n, 5);
        a.send_bytes(msg);
        std::vector<std::byte> small(n / 2);
        try {
            b.recv_bytes_into(small, kLong);
            FAIL("no BufferTooShort");
        } catch (const mproc::BufferTooShort& e) {
            REQUIRE(e.size() == n);
        }
        std::vector<std::byte> exact(n);
        REQUIRE(b.recv_bytes_into(exact, kLong) == n);  // still there
        REQUIRE(exact == msg);
    }
    REQUIRE_FALSE(b.poll());
}

TEST_CASE("A message that cannot be decoded is a SerializationError, and is consumed", "[connection]") {
    mproc::Listener listener(cat("@", unique_name("bad")));
    pid_t pid = fork_child([&] {
        auto c = mproc::Client<int>(listener.address(), std::nullopt, kLong);
        c.send_bytes(std::as_bytes(std::span("abc", 3)));
        c.send(9);
    });
    auto c = listener.accept<int>(kLong);
    REQUIRE_THROWS_AS(c.recv(kLong), mproc::SerializationError);
    REQUIRE(c.recv(kLong) == 9);
    REQUIRE(wait_child(pid) == 0);
}

TEST_CASE("wait() over Pipe ends and Listener connections together; finished ones removed by ==",
          "[connection][wait]") {
    mproc::Listener listener("localhost:0", "k");
    std::vector<mproc::Connection<std::pair<int, int>>> readers;
    std::vector<pid_t> pids;
    for (int i = 0; i < 3; ++i) {  // three Pipe writers
        auto [r, w] = mproc::Pipe<std::pair<int, int>>(false);
        readers.push_back(r);
        pids.push_back(fork_child([&, i, w = w] {
            for (int k = 0; k < 10; ++k) w.send({i, k});
        }));
        w.close();
    }
    for (int i = 3; i < 6; ++i) {  // three socket clients
        pids.push_back(fork_child([&, i] {
            auto c = mproc::Client<std::pair<int, int>>(listener.address(), "k", kLong);
            for (int k = 0; k < 10; ++k) c.send({i, k});
        }));
        readers.push_back(listener.accept<std::pair<int, int>>(kLong));
    }
    // Handles hash and compare by end: a copy finds its original.
    std::unordered_set<mproc::Connection<std::pair<int, int>>> set(readers.begin(), readers.end());
    REQUIRE(set.size() == 6);
    REQUIRE(set.count(readers[4]) == 1);
    REQUIRE_FALSE(readers[0] == readers[1]);

    std::map<int, int> next;  // per sender, the next k expected
    while (!readers.empty()) {
        for (auto& r : mproc::wait(readers, kLong)) {
            try {
                auto [i, k] = r.recv(kLong);
                REQUIRE(next[i] == k);  // in order, none lost
                ++next[i];
            } catch (const mproc::EOFError&) {
                std::erase(readers, r);  // Python's readers.remove(r)
            }
        }
    }
    REQUIRE(next.size() == 6);
    for (auto [i, n] : next) REQUIRE(n == 10);
    for (pid_t p : pids) REQUIRE(wait_child(p) == 0);
}

TEST_CASE("A socket Connection passed to a fork, spawn or forkserver child works there",
          "[connection][process]") {
    for (auto method : {StartMethod::fork, StartMethod::spawn, StartMethod::forkserver}) {
        CAPTURE(static_cast<int>(method));
        mproc::Listener listener(cat("@", unique_name("pass")), "k");
        // Client() and accept() each need the other side: one in a thread.
        std::optional<mproc::Connection<std::string>> accepted;
        std::thread server([&] { accepted = listener.accept<std::string>(kLong); });
        auto mine = mproc::Client<std::string>(listener.address(), "k", kLong);
        server.join();
        // A forked child also inherits `mine`, and must close it, or it
        // would never see EOF (as with a Pipe's ends); spawn and forkserver
        // children get only what they are passed.
        mproc::Process p = method == StartMethod::fork
                               ? mproc::Process([c = *accepted, mine] { mine.close(); echo_main(c); })
                               : mproc::Process(echo_main, *accepted);
        p.start_method(method).start();
        accepted->close();  // the child holds the only other copy now
        for (int i = 0; i < 100; ++i) {
            mine.send(cat("x", std::to_string(i)));
            REQUIRE(mine.recv(kLong) == cat("x", std::to_string(i), "!"));
        }
        mine.close();  // the child sees EOF and returns
        REQUIRE(p.join(kLong));
        REQUIRE(p.exitcode() == 0);
    }
}
