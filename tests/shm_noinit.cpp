// A program that never calls mproc::init and starts threads before it
// creates a tracked segment: the tracker must work there too.
//   shm_noinit NAME return   creates NAME, prints the tracker's pid, returns from main
//   shm_noinit NAME throw    the same, then dies of an uncaught exception (abort)
//   shm_noinit NAME join     starts a fork child first, then creates NAME and
//                            returns from main; the child attaches NAME only
//                            then, while exit joins it: it prints "attached"
#include <mproc/detail/shm_tracker.hpp>
#include <mproc/process.hpp>
#include <mproc/shared_memory.hpp>
#include <mproc/sync.hpp>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>

#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

// Never destroyed (and reachable, for LeakSanitizer), so only the exit
// handler joins it.
static mproc::Process* g_child = nullptr;

int main(int argc, char** argv) {
    if (argc != 3) return 2;
    const std::string name = argv[1], mode = argv[2];
    if (mode == "join") {
        static mproc::Event go;
        static mproc::Value<int> tracker(0);
        g_child = new mproc::Process([name] {
            go.wait();
            // Give a wrong exit order (the tracker's handler before the
            // join) time to unlink and end the tracker: if the tracker
            // exits now, the attach below fails.
            int fd = static_cast<int>(::syscall(SYS_pidfd_open, tracker.load(), 0));
            pollfd p{fd, POLLIN, 0};
            if (fd >= 0) ::poll(&p, 1, 1000);
            auto shm = mproc::SharedMemory::attach(name);  // throws if the name is gone
            std::printf("attached\n");
        });
        g_child->start();  // mproc's exit handler (join) is registered now, before the tracker's use
        auto shm = mproc::SharedMemory::create(name, 4096);
        tracker.store(mproc::detail::shm_tracker_pid());
        std::printf("%d\n", tracker.load());
        std::fflush(stdout);
        std::atexit([] { go.set(); });  // runs first at exit
        return 0;  // exit joins the child, then the tracker unlinks
    }
    std::thread busy([] {
        mproc::SharedMemory anonymous(4096);  // another thread at work meanwhile
    });
    auto shm = mproc::SharedMemory::create(argv[1], 4096);
    busy.join();
    std::printf("%d\n", mproc::detail::shm_tracker_pid());
    std::fflush(stdout);
    if (mode == "throw") throw std::runtime_error("uncaught on purpose");
    return 0;
}
