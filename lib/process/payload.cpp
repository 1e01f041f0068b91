// The spawn payload: what a spawn or forkserver child receives, in three
// serialized parts (serialization.hpp's codecs, one after the other):
//   1. who the child is: (name, identity, daemon, parent pid, authkey, the
//      fd of its exception memfd);
//   2. the child-setup pieces' data (setup.cpp), as bytes;
//   3. its target: (entry, args) — `entry` a function pointer sent by
//      reference (module + offset, see function_ref.hpp) to the
//      spawn_entry<F, Args...> instantiation that decodes `args`.
// Part 1 is decoded first, so that an error in parts 2 and 3 (a function
// that does not resolve in this build, say) is reported as the named
// child's failure: "Process <name>: mproc::SerializationError: ...", exit
// code 1. Part 2 is applied before the target is decoded: a target's
// arguments may already use what the pieces set up (the log).
#include <cstdio>
#include <tuple>

#include "mproc/serialization.hpp"
#include "process/internal.hpp"

namespace mproc::detail {

namespace {
using InfoTuple = std::tuple<std::string, std::vector<int>, bool, std::int32_t, std::string, std::int32_t>;
}

std::vector<std::byte> encode_payload(const ChildInfo& info, const SpawnTarget& target) {
    VectorOutBuf out(256 + info.setup.size() + target.args.size());
    dump_to(out, InfoTuple{info.name, info.identity, info.daemon, info.parent, info.authkey,
                              info.exception_fd});
    dump_to(out, info.setup);
    dump_to(out, target.entry);
    dump_to(out, target.args);
    return out.take();
}

void run_payload(std::span<const std::byte> bytes, bool forked, pid_t parent) noexcept {
    InBuf in(bytes);
    ChildInfo info;
    try {
        auto t = load_from<InfoTuple>(in);
        info.name = std::move(std::get<0>(t));
        info.identity = std::move(std::get<1>(t));
        info.daemon = std::get<2>(t);
        info.parent = std::get<3>(t);
        info.authkey = std::move(std::get<4>(t));
        info.exception_fd = std::get<5>(t);
        if (info.exception_fd >= 0) os::set_inheritable(info.exception_fd, false);
        become_child(info, forked, parent ? parent : info.parent);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "mproc: a %s child could not start: %s\n", forked ? "forkserver" : "spawned",
                     e.what());
        finish_child(1, forked);
    }
    int code = run_guarded([&] {
        load_child_setup(load_from<std::vector<std::byte>>(in));
        SpawnEntry entry = load_from<SpawnEntry>(in);
        std::vector<std::byte> args = load_from<std::vector<std::byte>>(in);
        if (in.remaining() != 0) throw_trailing_bytes(in.remaining(), "the spawn payload");
        entry(args);
    });
    finish_child(code, forked);
}

}  // namespace mproc::detail
