// The examples' shared command line: `--start-method fork|spawn|forkserver`
// sets the process-wide start method (Python's set_start_method), so one
// example runs under each method. Returns the method in force.
#pragma once

#include <mproc/process.hpp>

#include <cstring>

inline mproc::StartMethod start_method_from_args(int argc, char** argv) {
    for (int i = 1; i + 1 < argc; ++i) {
        if (std::strcmp(argv[i], "--start-method") != 0) continue;
        const char* m = argv[i + 1];
        mproc::set_start_method(std::strcmp(m, "spawn") == 0        ? mproc::StartMethod::spawn
                                : std::strcmp(m, "forkserver") == 0 ? mproc::StartMethod::forkserver
                                                                    : mproc::StartMethod::fork);
    }
    return mproc::get_start_method();
}
