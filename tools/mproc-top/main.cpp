// mproc-top: every live mproc object on this machine that the caller may
// see — queues and pipes, pools, managers, named segments and the rest —
// with what is in them and which processes hold them.
//
//   mproc-top            one listing
//   mproc-top --watch    the listing again every second (Ctrl-C ends it)
//   mproc-top --json     one listing as JSON, for scripts
//   mproc-top --pid P    only what process P holds
//
// Objects are found through /proc/*/fd and /proc/*/maps and read from their
// own headers (see census.hpp), so only processes of the caller's user are
// seen, unless it runs as root.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "census.hpp"
#include "os/procfs.hpp"
#include "render.hpp"

namespace {

int usage(const char* argv0, int code) {
    std::fprintf(code == 0 ? stdout : stderr,
                 "usage: %s [--watch] [--json] [--pid PID]\n"
                 "  every live mproc object this user may see: queues, pipes, pools, managers,\n"
                 "  named segments; --watch refreshes every second, --json prints JSON.\n",
                 argv0);
    return code;
}

}  // namespace

int main(int argc, char** argv) {
    bool watch = false, json = false;
    pid_t only = 0;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--watch" || a == "-w") {
            watch = true;
        } else if (a == "--json" || a == "-j") {
            json = true;
        } else if ((a == "--pid" || a == "-p") && i + 1 < argc) {
            char* end = nullptr;
            const long v = std::strtol(argv[++i], &end, 10);
            if (*end != '\0' || v <= 0) return usage(argv[0], 2);
            only = static_cast<pid_t>(v);
        } else if (a == "--help" || a == "-h") {
            return usage(argv[0], 0);
        } else {
            return usage(argv[0], 2);
        }
    }
    for (;;) {
        const mproc::top::Census c = mproc::top::take_census(only);
        const std::string out = json ? mproc::top::to_json(c) : mproc::top::to_text(c);
        if (watch && !json) std::fputs("\x1b[H\x1b[2J", stdout);  // home, clear
        std::fputs(out.c_str(), stdout);
        std::fflush(stdout);
        if (!watch) return 0;
        mproc::os::sleep_for(mproc::Duration(1));
    }
}
