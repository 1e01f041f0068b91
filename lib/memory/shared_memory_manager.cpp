// SharedMemoryManager. See include/mproc/shared_memory.hpp.
//
// Python's SharedMemoryManager runs a server process that remembers the
// segments and unlinks them at shutdown. Here the process's shared-memory
// tracker already does the part a server is needed for (unlinking after a
// crash), so the manager is only the list of names it made, kept in this
// process: shutdown() unlinks them, and if the process dies first, the
// tracker does.
#include "mproc/shared_memory.hpp"

#include <cerrno>
#include <cstdio>

#include "memory/boost_mapping.hpp"
#include "memory/shm_tracker_client.hpp"
#include "os/os.hpp"
#include "os/process.hpp"

namespace mproc {

struct SharedMemoryManager::State {
    mutable std::mutex mu;
    pid_t owner = os::pid();
    bool shut = false;
    std::vector<std::string> names;
};

namespace {

std::string random_name() {
    std::byte r[8];
    os::random_bytes(r);
    char hex[17];
    for (int i = 0; i < 8; ++i) std::snprintf(hex + 2 * i, 3, "%02x", static_cast<unsigned>(r[i]));
    return "mproc-smm-" + std::to_string(os::pid()) + "-" + hex;
}

}  // namespace

SharedMemoryManager::SharedMemoryManager() : st_(std::make_unique<State>()) {}
SharedMemoryManager::~SharedMemoryManager() { shutdown(); }
SharedMemoryManager::SharedMemoryManager(SharedMemoryManager&&) noexcept = default;

SharedMemoryManager& SharedMemoryManager::operator=(SharedMemoryManager&& o) noexcept {
    if (this != &o) {
        shutdown();
        st_ = std::move(o.st_);
    }
    return *this;
}

void SharedMemoryManager::start() {
    if (!st_ || st_->shut) throw ValueError("SharedMemoryManager.start(): this manager has been shut down");
}

mproc::SharedMemory SharedMemoryManager::SharedMemory(std::size_t size) {
    if (!st_) throw ValueError("SharedMemoryManager: this manager was moved from");
    std::lock_guard<std::mutex> g(st_->mu);
    if (st_->shut) throw ValueError("SharedMemoryManager: the manager has been shut down");
    for (int attempt = 0;; ++attempt) {
        std::string name = random_name();
        try {
            auto shm = mproc::SharedMemory::create(name, size, SharedMemoryOptions{.track = true});
            st_->names.push_back(std::move(name));
            return shm;
        } catch (const OSError& e) {
            // 64 random bits make a clash all but impossible; retry anyway.
            if (e.code() != EEXIST || attempt == 3) throw;
        }
    }
}

void SharedMemoryManager::shutdown() noexcept {
    if (!st_) return;
    std::lock_guard<std::mutex> g(st_->mu);
    if (st_->shut) return;
    st_->shut = true;
    if (st_->owner != os::pid()) return;  // a forked child's copy: the parent's to shut down
    for (const std::string& name : st_->names) {
        try {
            detail::boost_mapping::remove(name);
        } catch (...) {
            // Someone unlinked it already (its ShareableList's shm().unlink()).
        }
        detail::shm_tracker::forget(name);
    }
    st_->names.clear();
}

std::vector<std::string> SharedMemoryManager::names() const {
    if (!st_) return {};
    std::lock_guard<std::mutex> g(st_->mu);
    return st_->names;
}

}  // namespace mproc
