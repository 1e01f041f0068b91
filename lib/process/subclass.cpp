// What a spawn or forkserver child runs for a Process: its target (sent by
// reference with its serialized arguments, process_spawn.hpp), nothing (a
// Process without target), or a Process subclass registered with
// MPROC_REGISTER_PROCESS — sent as its registered name and the bytes its
// serialize() wrote; the child default-constructs one, loads them and calls
// its run().
#include <mutex>
#include <unordered_map>

#include "os/os.hpp"
#include "os/process.hpp"
#include "process/internal.hpp"

namespace mproc::detail {

namespace {

struct ProcessClass {
    ProcessSaver save = nullptr;
    ProcessMaker make = nullptr;
};

struct Classes {
    std::mutex mu;
    std::unordered_map<std::string, ProcessClass> by_name;
};

Classes& classes() {
    static auto* c = [] {
        auto* cl = new Classes;  // never destroyed
        os::hold_across_fork(cl->mu, os::kForkRankLeaf);  // a forked child starts processes too
        return cl;
    }();
    return *c;
}
const bool g_classes_ready = (classes(), true);  // registered before main

ProcessClass find_class(const std::string& name) {
    Classes& c = classes();
    std::lock_guard<std::mutex> g(c.mu);
    auto it = c.by_name.find(name);
    return it == c.by_name.end() ? ProcessClass{} : it->second;
}

void run_nothing(std::span<const std::byte> args) {
    if (!args.empty()) throw_trailing_bytes(args.size(), "an empty Process's arguments");
}

// In the child: re-creates the registered subclass and runs it.
void run_registered_process(std::span<const std::byte> bytes) {
    InBuf in(bytes);
    auto name = load_from<std::string>(in);
    auto state = load_from<std::vector<std::byte>>(in);
    if (in.remaining() != 0) throw_trailing_bytes(in.remaining(), "a Process subclass's state");
    ProcessClass cls = find_class(name);
    if (!cls.make)
        throw SerializationError("mproc::Process: the subclass `" + name +
                                 "` is not registered in this process (MPROC_REGISTER_PROCESS)");
    std::unique_ptr<Process> p;
    {
        UnnumberedScope unnumbered;  // the object stands for this process: it takes no number
        p = cls.make(state);
    }
    {
        ProcessState& st = ProcessAccess::state(*p);
        std::lock_guard<std::mutex> g(st.mu);
        st.phase = ProcessState::Phase::started;
        st.pid = os::pid();
        st.parent = parent_process().value_or(0);
    }
    p->run();
}

}  // namespace

bool register_process_class(const std::string& name, ProcessSaver save, ProcessMaker make) noexcept {
    try {
        Classes& c = classes();
        std::lock_guard<std::mutex> g(c.mu);
        c.by_name[name] = ProcessClass{save, make};
        return true;
    } catch (...) {
        return false;
    }
}

SpawnTarget spawn_target_of(const Process& self, const ProcessState& st) {
    if (typeid(self) == typeid(Process)) {
        if (st.target) return st.target->spawn_target();
        return SpawnTarget{&run_nothing, {}};
    }
    const std::string name = type_name(typeid(self));
    ProcessClass cls = find_class(name);
    if (!cls.save)
        throw Error("mproc::Process: `" + name +
                    "` is a Process subclass, which a spawn or forkserver child must re-create: "
                    "give it a Boost.Serialization serialize() member that saves its fields and "
                    "put MPROC_REGISTER_PROCESS(" + name +
                    ") at namespace scope, or use StartMethod::fork");
    std::vector<std::byte> state = cls.save(self);
    VectorOutBuf out(64 + name.size() + state.size());
    dump_to(out, name);
    dump_to(out, state);
    return SpawnTarget{&run_registered_process, out.take()};
}

}  // namespace mproc::detail
