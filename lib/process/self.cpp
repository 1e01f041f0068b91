// Who this process is (current_process, parent_process, the authkey, the
// names new Processes get) and the steps every child takes: becoming the
// child its parent described, running its target with an escaping exception
// reported, and exiting. See include/mproc/process.hpp.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#if defined(__GLIBCXX__)
#include <ext/stdio_sync_filebuf.h>
#endif

#include <signal.h>

#include "mproc/detail/exception_codec.hpp"
#include "os/process.hpp"
#include "process/internal.hpp"

namespace mproc {
namespace detail {

namespace {

struct Self {
    std::mutex mu;
    std::string name = "MainProcess";
    std::vector<int> identity;
    bool daemon = false;
    std::optional<pid_t> parent;
    std::string authkey;
    std::atomic<int> counter{0};
    int exception_fd = -1;  // a child's: where run_guarded writes an escaping exception
};
// Replaced in a forked child (ForkSlots); never destroyed, as exit
// handlers use them. Function-local, so that a Process made by a static
// initializer finds them.
ForkSlots<Self>& self_slots() {
    static auto* s = new ForkSlots<Self>;
    return *s;
}
Self* self_slot() { return &self_slots().get(); }

thread_local int t_unnumbered = 0;

std::string authkey_of_self() {
    Self& s = *self_slot();
    std::lock_guard<std::mutex> g(s.mu);
    if (s.authkey.empty()) {
        std::byte key[32];
        os::random_bytes(key);
        s.authkey.assign(reinterpret_cast<const char*>(key), sizeof key);
    }
    return s.authkey;
}

void on_forked_child_exit(int status, void*) {
    // std::exit in a forked child: the parent's atexit handlers and static
    // destructors belong to the parent's copy; skip them, as Python's
    // os._exit after the target does.
    exit_function();
    flush_std_streams();
    os::exit_now(status);
}

// Streams synced with stdio (the default) have no buffer of their own:
// flushing them is an fflush, done below only where there is something
// to write.
template <class Stream>
void flush_own_buffer(Stream& s) {
#if defined(__GLIBCXX__)
    if (dynamic_cast<__gnu_cxx::stdio_sync_filebuf<typename Stream::char_type>*>(s.rdbuf())) return;
#endif
    s.flush();
}

// Leaves the record of the exception being handled where the parent reads
// it after reaping this child (Process::exception()).
void record_exception(const std::exception_ptr& e) noexcept {
    int fd;
    {
        Self& self = *self_slot();
        std::lock_guard<std::mutex> g(self.mu);
        fd = self.exception_fd;
    }
    if (fd < 0) return;
    try {
        std::vector<std::byte> bytes = exception_bytes(e);
        os::write_all(fd, bytes, "the child's exception record");
    } catch (...) {
        // The parent then sees exit code 1 and no exception.
    }
}

}  // namespace

UnnumberedScope::UnnumberedScope() noexcept { ++t_unnumbered; }
UnnumberedScope::~UnnumberedScope() { --t_unnumbered; }

void name_new_process(ProcessState& st) {
    Self& s = *self_slot();
    {
        std::lock_guard<std::mutex> g(s.mu);
        st.identity = s.identity;
    }
    if (t_unnumbered > 0) {
        st.name = current_process().name();
        return;
    }
    st.identity.push_back(++s.counter);
    st.name = "Process-";
    for (std::size_t i = 0; i < st.identity.size(); ++i) {
        if (i) st.name += ':';
        st.name += std::to_string(st.identity[i]);
    }
}

ChildInfo child_info_for(const ProcessState& st) {
    ChildInfo info;
    info.name = st.name;
    info.identity = st.identity;
    info.daemon = st.daemon;
    info.parent = os::pid();
    info.authkey = authkey_of_self();
    info.exception_fd = st.exception_fd ? st.exception_fd.get() : -1;
    return info;
}

bool self_is_daemon() {
    Self& s = *self_slot();
    std::lock_guard<std::mutex> g(s.mu);
    return s.daemon;
}

// ---- the child side -----------------------------------------------------------

void flush_std_streams() noexcept {
    try {
        flush_own_buffer(std::cout);
        flush_own_buffer(std::clog);
        flush_own_buffer(std::cerr);
        flush_own_buffer(std::wcout);
        flush_own_buffer(std::wclog);
        flush_own_buffer(std::wcerr);
    } catch (...) {
    }
    os::flush_stdout_stderr();
}

void become_child(ChildInfo info, bool forked, pid_t parent) {
    if (info.daemon) {
        // The parent's death kills a daemon; if it died before this line,
        // the signal will never come, so go now.
        os::set_parent_death_signal(SIGKILL);
        if (os::parent_pid() != parent) os::raise_signal(SIGKILL);
    }
    if (forked) {
        // The parent's copies may have been locked by another thread at
        // the fork: start afresh rather than touch their mutexes.
        self_slots().renew();
        forget_parent_children();
    }
    {
        Self& self = *self_slot();
        std::lock_guard<std::mutex> g(self.mu);
        self.name = std::move(info.name);  // moved, not copied: no malloc in a fresh fork
        self.identity = std::move(info.identity);
        self.daemon = info.daemon;
        self.parent = info.parent;
        self.authkey = std::move(info.authkey);
        self.counter = 0;
        self.exception_fd = info.exception_fd;
    }
    if (forked) {
        forkserver_forget();
        os::call_on_exit(on_forked_child_exit, nullptr);
    }
}

int run_guarded(const std::function<void()>& fn) noexcept {
    try {
        fn();
        return 0;
    } catch (...) {
        const std::exception_ptr e = std::current_exception();
        const ExceptionText text = describe_exception(e);
        const std::string name = current_process().name();
        std::fprintf(stderr, "Process %s: %s: %s\n", name.c_str(), text.type.c_str(), text.what.c_str());
        record_exception(e);
    }
    return 1;
}

void finish_child(int code, bool forked) noexcept {
    exit_function();
    flush_std_streams();
    if (forked) os::exit_now(code);
    std::exit(code);
}

}  // namespace detail

// ---- this process --------------------------------------------------------------

CurrentProcess current_process() { return {}; }

std::string CurrentProcess::name() const {
    auto& s = *detail::self_slot();
    std::lock_guard<std::mutex> g(s.mu);
    return s.name;
}

void CurrentProcess::name(std::string name) {
    auto& s = *detail::self_slot();
    std::lock_guard<std::mutex> g(s.mu);
    s.name = std::move(name);
}

int CurrentProcess::pid() const { return os::pid(); }

bool CurrentProcess::daemon() const { return detail::self_is_daemon(); }

std::string CurrentProcess::authkey() const { return detail::authkey_of_self(); }

std::optional<int> parent_process() {
    auto& s = *detail::self_slot();
    std::lock_guard<std::mutex> g(s.mu);
    if (!s.parent) return std::nullopt;
    return *s.parent;
}

}  // namespace mproc
