// mproc::init and the spawn start method.
//
// start() with spawn writes the payload (who the child is, a reference to
// its target's entry point, the serialized arguments: payload.cpp) into a
// memfd, then posix_spawns /proc/self/exe with the argv init() saved and
// MPROC_SPAWN=<memfd's fd> in the environment. The memfd and every fd the
// arguments' handles use are dup2'd onto themselves in the child, which
// keeps their numbers and clears close-on-exec there only. posix_spawn
// returns after the child's exec, so the child holds them all by then and
// the parent may drop its references.
//
// The child's init() sees MPROC_SPAWN, reads and closes the memfd, removes
// the variable (so programs the child execs are not mistaken for children),
// runs the target and exits; it never returns into main. MPROC_FORKSERVER
// likewise turns the process into the fork server (forkserver.cpp).
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "os/process.hpp"
#include "process/internal.hpp"

extern char** environ;

// Defined by the mproc::mpi component (lib/mpi/runtime.cpp) when a program
// links it: initialises MPI, and in a worker rank serves tasks there.
extern "C" __attribute__((weak)) void mproc_mpi_on_init(int argc, char** argv);

namespace mproc {
namespace detail {

[[noreturn]] void forkserver_main(int control_fd, pid_t parent) noexcept;

namespace {

constexpr std::string_view kSpawnVar = "MPROC_SPAWN";
constexpr std::string_view kServerVar = "MPROC_FORKSERVER";

// Set by init(), once, before any start(); never destroyed (a child may be
// spawned from an exit handler).
std::vector<std::string>* g_argv_strings = nullptr;
std::vector<char*>* g_argv = nullptr;

bool has_prefix(const char* entry, std::string_view var) {
    return std::strncmp(entry, var.data(), var.size()) == 0 && entry[var.size()] == '=';
}

// "<fd>" or "<fd>:<pid>"; -1 for anything else.
int number_from(const char*& value, char end_at) {
    char* end = nullptr;
    long v = std::strtol(value, &end, 10);
    if (end == value || *end != end_at || v < 0 || v > 1 << 30) return -1;
    value = end + (end_at ? 1 : 0);
    return static_cast<int>(v);
}

std::pair<int, pid_t> fd_and_parent(const char* value) {
    const char* p = value;
    int fd = number_from(p, std::strchr(p, ':') ? ':' : '\0');
    if (fd < 0 || p == value || p[-1] != ':') return {fd, 0};
    int parent = number_from(p, '\0');
    return {fd, parent > 0 ? parent : 0};
}

}  // namespace

const std::vector<char*>& saved_argv() {
    static const std::vector<char*> none;
    return g_argv ? *g_argv : none;
}

std::vector<char*> child_environment(std::string& var, std::string_view name, const std::string& value) {
    var.assign(name);
    var += '=';
    var += value;
    std::vector<char*> env;
    for (char** e = environ; e && *e; ++e)
        if (!has_prefix(*e, kSpawnVar) && !has_prefix(*e, kServerVar)) env.push_back(*e);
    env.push_back(var.data());
    env.push_back(nullptr);
    return env;
}

pid_t spawn_self(std::string_view var_name, const std::string& value, std::span<const int> inherit) {
    std::string var;
    std::vector<char*> env = child_environment(var, var_name, value);
    return os::spawn("/proc/self/exe", const_cast<char* const*>(saved_argv().data()), env.data(), inherit);
}

pid_t spawn_forkserver_process(int control_fd) {
    int inherit[] = {control_fd};
    // Started from the main thread, the server may also take a parent-death
    // signal: that thread's exit is the process's. From another thread it
    // would die with that thread, so it relies on its socket's end of
    // stream alone.
    std::string value = std::to_string(control_fd);
    if (os::tid() == os::pid()) {
        value += ':';  // two appends: GCC 12 -O3 warns falsely (-Wrestrict) on ":" + str
        value += std::to_string(os::pid());
    }
    return spawn_self(kServerVar, value, inherit);
}

void throw_not_initialized(StartMethod m) {
    throw Error(std::string("mproc: the ") + (m == StartMethod::spawn ? "spawn" : "forkserver") +
                " start method runs this program again as the child, and needs its main to begin "
                "with mproc::init(argc, argv); add that as the first line of main");
}

void start_spawn(ProcessState& st, const ChildInfo& info, const SpawnTarget& target,
                 const std::vector<int>& fds) {
    std::vector<std::byte> payload = encode_payload(info, target);
    os::Fd data = os::memfd("mproc-spawn", 0);
    os::write_all(data.get(), payload, "spawn payload");
    os::rewind(data.get(), "spawn payload");
    std::vector<int> inherit(fds);
    inherit.push_back(data.get());
    pid_t pid = spawn_self(kSpawnVar, std::to_string(data.get()), inherit);
    os::Fd pidfd;
    try {
        pidfd = os::pidfd_open(pid);
    } catch (...) {
        os::kill_and_reap(pid);
        throw;
    }
    std::lock_guard<std::mutex> g(st.mu);
    st.pid = pid;
    st.pidfd = std::move(pidfd);
}

}  // namespace detail

void init(int argc, char** argv) {
    using namespace detail;
    if (!g_argv) {
        g_argv_strings = new std::vector<std::string>;
        g_argv = new std::vector<char*>;
    }
    g_argv_strings->clear();
    g_argv->clear();
    for (int i = 0; i < argc && argv && argv[i]; ++i) g_argv_strings->emplace_back(argv[i]);
    if (g_argv_strings->empty()) g_argv_strings->emplace_back("/proc/self/exe");
    for (auto& s : *g_argv_strings) g_argv->push_back(s.data());
    g_argv->push_back(nullptr);

    const char* spawn = std::getenv(kSpawnVar.data());
    const char* server = std::getenv(kServerVar.data());
    if (!spawn && !server) {
        // mproc::mpi, when the program links it, takes its turn here (a
        // weak reference: the core library has no MPI dependency).
        if (mproc_mpi_on_init) mproc_mpi_on_init(argc, argv);
        return;
    }
    auto [fd, parent] = fd_and_parent(spawn ? spawn : server);
    os::unset_env(kSpawnVar.data());
    os::unset_env(kServerVar.data());
    if (fd < 0 || !os::fd_is_open(fd)) {
        std::fprintf(stderr, "mproc: %s names no open fd; was this program started by mproc?\n",
                     spawn ? kSpawnVar.data() : kServerVar.data());
        std::exit(1);
    }
    if (server) forkserver_main(fd, parent);
    std::vector<std::byte> payload;
    try {
        payload = os::read_all(fd, "spawn payload");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "mproc: a spawned child could not read its payload: %s\n", e.what());
        std::exit(1);
    }
    os::Fd(fd).reset();
    run_payload(payload, /*forked=*/false, 0);
}

}  // namespace mproc
