// Pipe / Connection across real (forked) processes: send, recv, poll, EOF
// on close and on kill -9 (also while blocked), wait() on several.
#include <catch2/catch.hpp>

#include <mproc/pipe.hpp>
#include <mproc/sync.hpp>

#include <stdexcept>
#include <thread>

#include <signal.h>
#include <unistd.h>

#include "support.hpp"

using namespace std::chrono_literals;
using mproc::Duration;
using mproc_test::fork_child;
using mproc_test::wait_child;

namespace {
void check(bool ok, const char* what) {
    if (!ok) throw std::runtime_error(what);
}
constexpr Duration kLong = 30s;
}  // namespace

TEST_CASE("Pipe: duplex send and recv between processes, poll", "[pipe]") {
    auto [parent, child] = mproc::Pipe<int>();
    REQUIRE_FALSE(parent.poll());
    REQUIRE_FALSE(parent.poll(10ms));
    pid_t pid = fork_child([&, child = child] {
        for (int i = 0; i < 10000; ++i) {
            int x = child.recv(kLong);
            child.send(x * 2, kLong);
        }
    });
    for (int i = 0; i < 10000; ++i) {
        parent.send(i);
        REQUIRE(parent.recv(kLong) == i * 2);
    }
    REQUIRE(wait_child(pid) == 0);
}

TEST_CASE("Pipe: two threads send on one end at once", "[pipe][threads]") {
    auto [r, w] = mproc::Pipe<int>(false);
    constexpr int kEach = 3000;  // past 256 sends: the periodic peer check runs in both
    pid_t pid = fork_child([&, r = r] {
        long sum = 0;
        for (int i = 0; i < 2 * kEach; ++i) sum += r.recv(kLong);
        check(sum == 2L * kEach * (kEach + 1) / 2, "wrong sum");
    });
    std::thread a([&, w = w] {
        for (int i = 1; i <= kEach; ++i) w.send(i);
    });
    for (int i = 1; i <= kEach; ++i) w.send(i);
    a.join();
    REQUIRE(wait_child(pid) == 0);
}

TEST_CASE("Pipe: messages sent before the peer closed arrive, then EOFError", "[pipe][eof]") {
    auto [r, w] = mproc::Pipe<long>(false);
    REQUIRE(r.readable());
    REQUIRE_FALSE(r.writable());
    REQUIRE(w.writable());
    REQUIRE_THROWS_AS(r.send(1), mproc::ValueError);
    REQUIRE_THROWS_AS(w.recv(), mproc::ValueError);
    pid_t pid = fork_child([&, r = r, w = w]() mutable {
        r.close();
        for (long i = 1; i <= 3; ++i) w.send(i);
        w.close();
    });
    w.close();  // the child holds the only writer now
    REQUIRE(wait_child(pid) == 0);
    REQUIRE(r.poll());
    REQUIRE(r.recv() == 1);
    REQUIRE(r.recv() == 2);
    REQUIRE(r.recv() == 3);
    REQUIRE(r.poll());  // EOF counts as ready
    REQUIRE_THROWS_AS(r.recv(), mproc::EOFError);
    REQUIRE_THROWS_AS(r.recv(), mproc::EOFError);
}

TEST_CASE("Pipe: a recv already blocked gets EOFError when the peer is killed -9", "[pipe][eof]") {
    auto [mine, theirs] = mproc::Pipe<int>();
    mproc::Event started, never;
    pid_t pid = fork_child([&, mine = mine, theirs = theirs]() mutable {
        mine.close();
        started.set();
        never.wait();  // holds `theirs` open until killed
    });
    theirs.close();
    REQUIRE(started.wait(kLong));
    std::thread killer([&] {
        // Kill once the parent is (very likely) blocked in recv; correctness
        // does not depend on it: EOF is reported either way.
        started.wait();
        ::kill(pid, SIGKILL);
    });
    REQUIRE_THROWS_AS(mine.recv(kLong), mproc::EOFError);
    killer.join();
    REQUIRE(wait_child(pid) == -SIGKILL);
    // A send to the dead end fails soon (within 256 sends), never silently forever.
    bool eof = false;
    for (int i = 0; i < 1000 && !eof; ++i) {
        try {
            mine.send(i, Duration(0));
        } catch (const mproc::EOFError&) {
            eof = true;
        }
    }
    REQUIRE(eof);
}

TEST_CASE("Pipe: send_bytes / recv_bytes, and a message larger than the ring", "[pipe]") {
    auto [a, b] = mproc::Pipe<int>(true, 4096);
    std::vector<std::byte> big(300000);
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::byte>(i % 251);
    pid_t pid = fork_child([&, b = b] {
        auto got = b.recv_bytes(kLong);
        check(got == big, "large message corrupted");
        b.send_bytes(std::span<const std::byte>(got.data(), 10));
    });
    a.send_bytes(big);
    auto back = a.recv_bytes(kLong);
    REQUIRE(back.size() == 10);
    REQUIRE(std::equal(back.begin(), back.end(), big.begin()));
    REQUIRE(wait_child(pid) == 0);
    REQUIRE_THROWS_AS(a.recv_bytes(10ms), mproc::TimeoutError);
}

TEST_CASE("Pipe: use after close is a ValueError", "[pipe]") {
    auto [a, b] = mproc::Pipe<int>();
    auto copy = a;
    a.close();
    REQUIRE(a.closed());
    REQUIRE(copy.closed());
    REQUIRE_THROWS_AS(copy.send(1), mproc::ValueError);
    REQUIRE_THROWS_AS(a.recv(), mproc::ValueError);
    REQUIRE_THROWS_AS(b.recv(Duration(0)), mproc::EOFError);
}

TEST_CASE("wait(): returns the connections that are ready", "[pipe][wait]") {
    std::vector<mproc::Connection<int>> readers, writers;
    for (int i = 0; i < 3; ++i) {
        auto [r, w] = mproc::Pipe<int>(false);
        readers.push_back(r);
        writers.push_back(w);
    }
    REQUIRE(mproc::wait(readers, 10ms).empty());
    mproc::Event go;
    pid_t pid = fork_child([&] {
        check(go.wait(kLong), "never told to go");
        writers[1].send(11);
    });
    go.set();
    auto ready = mproc::wait(readers, kLong);
    REQUIRE(ready.size() == 1);
    REQUIRE(ready[0].recv() == 11);
    REQUIRE(wait_child(pid) == 0);
    REQUIRE(mproc::wait(readers, Duration(0)).empty());
}

// ---- across start methods ---------------------------------------------------

#include <mproc/process.hpp>

namespace {
void pipe_echo(mproc::Connection<std::string> c) {
    for (;;) {
        std::string s;
        try {
            s = c.recv();
        } catch (const mproc::EOFError&) {
            return;
        }
        c.send(s + "!");
    }
}
void hold_forever(mproc::Connection<std::string> c, mproc::Event started) {
    started.set();
    mproc::Event().wait();  // until killed
    (void)c;
}
}  // namespace

TEST_CASE("Pipe ends cross into spawn and forkserver children", "[pipe][process]") {
    for (auto method : {mproc::StartMethod::spawn, mproc::StartMethod::forkserver}) {
        auto [mine, theirs] = mproc::Pipe<std::string>();
        mproc::Process p(pipe_echo, theirs);
        p.start_method(method).start();
        theirs.close();
        for (int i = 0; i < 100; ++i) {
            mine.send("hi" + std::to_string(i));
            REQUIRE(mine.recv(kLong) == "hi" + std::to_string(i) + "!");
        }
        mine.close();  // the child sees EOF and returns
        REQUIRE(p.join(kLong));
        REQUIRE(p.exitcode() == 0);
    }
}

TEST_CASE("Pipe: recv in the parent gets EOFError when a spawned child is killed -9", "[pipe][eof][process]") {
    auto [mine, theirs] = mproc::Pipe<std::string>();
    mproc::Event started;
    mproc::Process p(hold_forever, theirs, started);
    p.start_method(mproc::StartMethod::spawn).start();
    theirs.close();
    REQUIRE(started.wait(kLong));
    REQUIRE_FALSE(mine.poll());
    p.kill();
    REQUIRE_THROWS_AS(mine.recv(kLong), mproc::EOFError);
    REQUIRE(p.join(kLong));
    REQUIRE(p.exitcode() == -SIGKILL);
}
