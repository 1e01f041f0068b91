// A user's program: a child process increments a shared counter under its
// lock and the parent reads the result.
#include <mproc/mproc.hpp>

#include <cstdio>

#include <sys/wait.h>
#include <unistd.h>

int main() {
    mproc::Value<long> counter(0);
    pid_t pid = ::fork();
    if (pid == 0) {
        for (int i = 0; i < 1000; ++i) {
            auto guard = counter.get_lock();
            counter.value() += 1;
        }
        ::_exit(0);
    }
    for (int i = 0; i < 1000; ++i) {
        auto guard = counter.get_lock();
        counter.value() += 1;
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    std::printf("consumer: counter = %ld\n", counter.load());
    return counter.load() == 2000 ? 0 : 1;
}
