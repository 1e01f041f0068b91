// The loaded ELF objects. See modules.hpp.
//
// dl_iterate_phdr holds the dynamic loader's lock while it runs. A fork()
// from another thread at that moment (a pool's watcher thread starting a
// replacement worker while the main thread encodes a task's function
// reference) gives the child that lock held by a thread that does not exist
// there, and the child's first function lookup deadlocks. So mproc's walks
// run under a mutex of ours that every fork() takes first (pthread_atfork):
// a fork waits for a walk in progress, and no walk starts during a fork.
#include "os/modules.hpp"

#include <pthread.h>

#include <cstddef>
#include <mutex>

namespace mproc::os {

namespace {
struct Visitor {
    bool (*visit)(const dl_phdr_info&, void*);
    void* ctx;
};
int trampoline(dl_phdr_info* info, std::size_t, void* data) {
    auto& v = *static_cast<Visitor*>(data);
    return v.visit(*info, v.ctx) ? 1 : 0;
}

std::mutex& walk_mutex() {
    static std::mutex m;
    return m;
}

void lock_walks() noexcept { walk_mutex().lock(); }
void unlock_walks() noexcept { walk_mutex().unlock(); }

// Registered before the first walk; a fork before it cannot meet a walk.
void guard_forks() {
    static const bool registered = [] {
        ::pthread_atfork(lock_walks, unlock_walks, unlock_walks);
        return true;
    }();
    (void)registered;
}
}  // namespace

void for_each_module(bool (*visit)(const dl_phdr_info& module, void* ctx), void* ctx) {
    guard_forks();
    Visitor v{visit, ctx};
    std::lock_guard<std::mutex> g(walk_mutex());
    ::dl_iterate_phdr(trampoline, &v);
}

}  // namespace mproc::os
