// The MPI runtime under mproc::mpi: see runtime.hpp.
#include "mpi/runtime.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <thread>

#include <boost/mpi/environment.hpp>
#include <boost/mpi/intercommunicator.hpp>

#include "mproc/errors.hpp"
#include "mproc/mpi.hpp"
#include "mproc/process.hpp"

namespace mproc::mpi {

namespace detail {

namespace {

namespace bm = boost::mpi;

struct Group {  // workers spawned together, kept for later executors
    bm::communicator comm;
    int size = 0;
    bool in_use = false;
};

struct Runtime {
    std::mutex mu;  // mpi_lock()
    Role role = Role::uninitialized;
    int rank = 0;
    std::unique_ptr<bm::environment> env;
    std::vector<std::string> args;  // argv[1..], for spawned workers

    std::mutex session_mu;
    std::vector<bool> open = std::vector<bool>(kMaxSession + 1, false);
    int next_session = 1;

    std::mutex groups_mu;
    std::vector<Group> groups;
};

Runtime& rt() {
    static Runtime* r = new Runtime;  // never destroyed: used from the exit handler
    return *r;
}

std::string mpi_error_text(int code) {
    char buf[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(code, buf, &len);
    return std::string(buf, static_cast<std::size_t>(std::max(len, 0)));
}

// Tells `peers` ranks of `comm` to exit and waits for each one's bye,
// receiving and dropping whatever else arrives meanwhile (stale results), so
// none is left blocked in a send.
void say_exit(const bm::communicator& comm, int first, int last) {
    Runtime& r = rt();
    {
        std::lock_guard<std::mutex> g(r.mu);
        for (int w = first; w < last; ++w) send_bytes(comm, w, tag_of(0, Kind::exit));
    }
    int left = last - first;
    Backoff b;
    while (left > 0) {
        bool got = false;
        {
            std::lock_guard<std::mutex> g(r.mu);
            if (auto st = comm.iprobe(bm::any_source, bm::any_tag)) {
                (void)receive(comm, *st);
                if (st->tag() == tag_of(0, Kind::bye)) --left;
                got = true;
            }
        }
        if (got) b.reset();
        else b.pause();
    }
}

// Rank 0's exit: spawned workers and SPMD worker ranks are told to exit;
// then MPI_Finalize.
void at_exit() {
    Runtime& r = rt();
    if (r.role != Role::main || !r.env) return;
    try {
        std::vector<Group> groups;
        {
            std::lock_guard<std::mutex> g(r.groups_mu);
            groups.swap(r.groups);
        }
        for (auto& gr : groups) {
            say_exit(gr.comm, 0, gr.size);
            disconnect(gr.comm);
        }
        bm::communicator world;
        if (world.size() > 1) say_exit(world, 1, world.size());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "mproc::mpi: at exit, telling the workers to stop failed: %s\n", e.what());
    }
    r.env.reset();  // MPI_Finalize
    r.role = Role::uninitialized;
}

}  // namespace

std::mutex& mpi_lock() { return rt().mu; }
Role role() noexcept { return rt().role; }

void require_main(const char* who) {
    if (rt().role != Role::main)
        throw Error(std::string(who) +
                    ": MPI is not initialised by mproc; call mproc::mpi::init(argc, argv) as the first "
                    "statement of main (worker ranks and spawned workers run their tasks there)");
}

int world_size() {
    std::lock_guard<std::mutex> g(mpi_lock());
    return bm::communicator().size();
}

int open_session() {
    Runtime& r = rt();
    std::lock_guard<std::mutex> g(r.session_mu);
    for (int i = 0; i < kMaxSession; ++i) {
        int s = r.next_session;
        r.next_session = s % kMaxSession + 1;
        if (!r.open[static_cast<std::size_t>(s)]) {
            r.open[static_cast<std::size_t>(s)] = true;
            return s;
        }
    }
    throw Error("mproc::mpi: too many MPI executors alive at once (at most " + std::to_string(kMaxSession) + ")");
}

void close_session(int session) {
    Runtime& r = rt();
    std::lock_guard<std::mutex> g(r.session_mu);
    r.open[static_cast<std::size_t>(session)] = false;
}

bool session_open(int session) {
    if (session <= 0 || session > kMaxSession) return false;
    Runtime& r = rt();
    std::lock_guard<std::mutex> g(r.session_mu);
    return r.open[static_cast<std::size_t>(session)];
}

std::vector<std::byte> receive(const bm::communicator& comm, const bm::status& st) {
    const int n = st.count<char>().value_or(0);
    std::vector<std::byte> buf(static_cast<std::size_t>(n));
    char dummy = 0;
    comm.recv(st.source(), st.tag(), n ? reinterpret_cast<char*>(buf.data()) : &dummy, n);
    return buf;
}

void send_bytes(const bm::communicator& comm, int dest, int tag, std::span<const std::byte> msg) {
    static const char nothing = 0;
    comm.send(dest, tag, msg.empty() ? &nothing : reinterpret_cast<const char*>(msg.data()),
              static_cast<int>(msg.size()));
}

void disconnect(bm::communicator& comm) {
    MPI_Comm c = comm;
    comm = bm::communicator();
    std::lock_guard<std::mutex> g(mpi_lock());
    if (c != MPI_COMM_NULL) MPI_Comm_disconnect(&c);
}

bm::communicator acquire_workers(int n) {
    Runtime& r = rt();
    {
        std::lock_guard<std::mutex> g(r.groups_mu);
        for (auto& gr : r.groups)
            if (!gr.in_use && gr.size == n) {
                gr.in_use = true;
                return gr.comm;
            }
    }
    bm::communicator c = spawn_workers(n);
    std::lock_guard<std::mutex> g(r.groups_mu);
    r.groups.push_back(Group{c, n, true});
    return c;
}

void release_workers(const bm::communicator& comm) {
    Runtime& r = rt();
    std::lock_guard<std::mutex> g(r.groups_mu);
    for (auto& gr : r.groups)
        if (static_cast<MPI_Comm>(gr.comm) == static_cast<MPI_Comm>(comm)) gr.in_use = false;
}

bm::communicator spawn_workers(int n) {
    Runtime& r = rt();
    std::string exe = std::filesystem::read_symlink("/proc/self/exe").string();
    std::vector<char*> argv;
    for (auto& a : r.args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::lock_guard<std::mutex> g(r.mu);
    MPI_Info info;
    MPI_Info_create(&info);
    // Let a small machine run more workers than it has cores (Open MPI
    // refuses by default, and a singleton has no --oversubscribe to pass).
    MPI_Info_set(info, "map_by", "slot:OVERSUBSCRIBE");
    MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN);
    MPI_Comm inter = MPI_COMM_NULL;
    std::vector<int> errs(static_cast<std::size_t>(n), MPI_SUCCESS);
    const int rc = MPI_Comm_spawn(exe.c_str(), argv.data(), n, info, 0, MPI_COMM_SELF, &inter, errs.data());
    MPI_Info_free(&info);
    if (rc != MPI_SUCCESS)
        throw Error("mproc::mpi: MPI_Comm_spawn of " + std::to_string(n) + " workers (" + exe +
                    ") failed: " + mpi_error_text(rc) +
                    ". Spawning from a process not started by mpirun is fragile on some MPI builds: run "
                    "the program as `mpirun -np 1 ./app`, or as `mpirun -np N ./app` to use N-1 ranks as "
                    "workers");
    for (int e : errs)
        if (e != MPI_SUCCESS) {
            MPI_Comm_disconnect(&inter);
            throw Error("mproc::mpi: a spawned worker failed to start: " + mpi_error_text(e));
        }
    MPI_Comm_set_errhandler(inter, MPI_ERRORS_RETURN);
    return bm::communicator(inter, bm::comm_attach);
}

void finish_worker() {
    Runtime& r = rt();
    r.env.reset();  // MPI_Finalize
    std::fflush(nullptr);
    std::exit(0);
}

void Backoff::reset() noexcept { idle_since_ = 0; }

std::chrono::nanoseconds Backoff::next() noexcept {
    using namespace std::chrono;
    constexpr std::uint64_t kMin = 50'000;  // shortest sleep (about the kernel's timer slack)
    const auto now = static_cast<std::uint64_t>(
        duration_cast<nanoseconds>(steady_clock::now().time_since_epoch()).count());
    if (idle_since_ == 0) idle_since_ = now;
    const std::uint64_t idle = now - idle_since_;
    if (idle < spin_ns_) return nanoseconds(0);
    // An eighth of the time idle so far: a message that arrives after a
    // pause is seen at most ~12% (and 1 ms) later than it could be, and a
    // long idle costs about a thousand wake-ups a second at most.
    return nanoseconds(std::clamp(idle / 8, kMin, std::max(kMin, max_ns_)));
}

void Backoff::pause() {
    const auto d = next();
    if (d.count() == 0) std::this_thread::yield();
    else std::this_thread::sleep_for(d);
}

}  // namespace detail

void init(int argc, char** argv) {
    // mproc::init runs its own part (a process spawned by mproc, not by MPI,
    // runs its target there), then mproc_mpi_on_init below.
    mproc::init(argc, argv);
    detail::start(argc, argv);
}

namespace detail {

void start(int argc, char** argv) {
    Runtime& r = rt();
    if (r.role != Role::uninitialized) return;
    r.args.clear();
    for (int i = 1; i < argc && argv && argv[i]; ++i) r.args.emplace_back(argv[i]);
    int c = argc;
    char** v = argv;
    r.env = std::make_unique<bm::environment>(c, v, bm::threading::multiple, /*abort_on_exception=*/true);
    const bm::threading::level got = bm::environment::thread_level();
    if (got < bm::threading::serialized) {
        r.env.reset();
        throw Error("mproc::mpi::init: the MPI library gives only thread level " +
                    std::string(got == bm::threading::single ? "MPI_THREAD_SINGLE" : "MPI_THREAD_FUNNELED") +
                    "; mproc's executors call MPI from their own threads and need at least "
                    "MPI_THREAD_SERIALIZED (rebuild or reconfigure the MPI library with thread support)");
    }
    bm::communicator world;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm parent = MPI_COMM_NULL;
    MPI_Comm_get_parent(&parent);
    if (parent != MPI_COMM_NULL) {
        r.role = Role::worker;
        r.rank = 1 + world.rank();
        MPI_Comm_set_errhandler(parent, MPI_ERRORS_RETURN);
        serve_as_worker(bm::communicator(parent, bm::comm_attach), true);
    }
    if (world.rank() != 0) {
        r.role = Role::worker;
        r.rank = world.rank();
        serve_as_worker(world, false);
    }
    r.role = Role::main;
    r.rank = 0;
    std::atexit(at_exit);
}

}  // namespace detail

int rank() noexcept { return detail::rt().rank; }

bool is_worker() noexcept { return detail::rt().role == detail::Role::worker; }

}  // namespace mproc::mpi

/// mproc::init's hook (lib/process/spawn.cpp): a program that links
/// mproc::mpi and calls only mproc::init still starts MPI there.
extern "C" void mproc_mpi_on_init(int argc, char** argv) { mproc::mpi::detail::start(argc, argv); }
