// Helpers for the tests of mproc::Process: one TEST_CASE per start method,
// the method's name, and whether a pid is gone (exited and reaped).
#pragma once

#include <cerrno>

#include <signal.h>

#include <catch2/catch.hpp>

#include <mproc/process.hpp>

namespace mproc_test {

inline const char* method_name(mproc::StartMethod m) {
    switch (m) {
        case mproc::StartMethod::fork: return "fork";
        case mproc::StartMethod::spawn: return "spawn";
        case mproc::StartMethod::forkserver: return "forkserver";
    }
    return "?";
}

/// True once no process has this pid: exited *and* reaped (a zombie still counts).
inline bool gone(int pid) { return ::kill(pid, 0) != 0 && errno == ESRCH; }

}  // namespace mproc_test

/// One TEST_CASE per start method, so that ctest reports each:
///   PER_METHOD("name", "[tags]", fn) { ... uses `method` ... }
#define PER_METHOD(name, tags, fn)                                                        \
    static void fn(mproc::StartMethod);                                                   \
    TEST_CASE(name " [fork]", tags "[fork]") { fn(mproc::StartMethod::fork); }            \
    TEST_CASE(name " [spawn]", tags "[spawn]") { fn(mproc::StartMethod::spawn); }         \
    TEST_CASE(name " [forkserver]", tags "[forkserver]") { fn(mproc::StartMethod::forkserver); } \
    static void fn(mproc::StartMethod method)
