// A program whose main does not call mproc::init: starting a spawn or
// forkserver child must fail with an Error that says what to add. Prints
// "<method>: <message>" per method; exits 0 if both failed that way.
#include <mproc/process.hpp>

#include <cstdio>
#include <string>

static void noop() {}

int main() {
    int failures = 0;
    for (auto m : {mproc::StartMethod::spawn, mproc::StartMethod::forkserver}) {
        const char* name = m == mproc::StartMethod::spawn ? "spawn" : "forkserver";
        mproc::Process p(noop);
        p.start_method(m);
        try {
            p.start();
            std::printf("%s: started without init\n", name);
            p.join();
            ++failures;
        } catch (const mproc::Error& e) {
            std::printf("%s: %s\n", name, e.what());
            if (std::string(e.what()).find("mproc::init(argc, argv)") == std::string::npos) ++failures;
        }
    }
    return failures == 0 ? 0 : 1;
}
