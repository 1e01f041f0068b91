// The main of every mproc test binary.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdlib>

#include <mproc/process.hpp>

#include "support.hpp"

int main(int argc, char** argv) {
    // First: a spawned child (or the fork server) re-running this binary
    // does its work here and never returns.
    mproc::init(argc, argv);
    unsigned seconds = 120;
    if (const char* s = std::getenv("MPROC_TEST_WATCHDOG")) seconds = static_cast<unsigned>(std::atoi(s));
    if (seconds > 0) mproc_test::arm_watchdog(seconds);
    return Catch::Session().run(argc, argv);
}
