// libFuzzer target for the remote manager's wire: whatever a client or a
// server sends, the other side answers with an error or ends the
// connection — never a crash, an out-of-bounds access, undefined behaviour
// or an allocation the bytes did not pay for. The server side runs on a
// real manager heap, emptied for each input as if new (so every input
// replays alone): mgr::reset_heap zeroes only the bytes the last input
// allocated and rewrites the header, so the reset costs what the input
// used, not the heap's size. The heap is held to 1 MiB, so no input's work
// can grow past that.
//
// The first byte picks the mode:
//   0  requests: the rest is [u16 length][request body] ..., each run by the
//      server's dispatch (server::serve_request) and its reply decoded;
//   1  a raw stream: the rest goes through a socket into the server's frame
//      reader (mwire::FrameStream), each frame it yields dispatched;
//   2  the server's handshake, the rest being what a client sends;
//   3  the client's handshake, the rest being what a server sends.
// Waits are capped at zero (DecodeScratch::max_wait), so a Queue get, a
// Lock acquire or a Barrier wait returns at once instead of blocking. Locks
// an input leaves held are released before the heap is emptied for the
// next (glibc keeps held robust mutexes in a list it walks later: memory
// reused under a held one would be corrupted by that walk).
//
// Build and run: ./build.sh fuzz SECONDS, or
//   mkdir -p corpus && MPROC_FUZZ_SEEDS=corpus build/fuzz/fuzz/fuzz_manager_wire corpus
// MPROC_FUZZ_SEEDS=<dir> writes valid request streams there first, as seeds.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "manager/heap.hpp"
#include "manager/object.hpp"
#include "manager/server.hpp"
#include "manager/wire.hpp"
#include "mproc/manager.hpp"
#include "os/socket.hpp"

namespace {

namespace mwire = mproc::detail::mwire;
namespace mop = mproc::detail::mop;
using mproc::detail::SharedHeap;

const SharedHeap& heap() {
    static const SharedHeap h = SharedHeap::create(std::size_t{16} << 20);
    return h;
}

mwire::DecodeScratch& scratch() {
    static mwire::DecodeScratch s = [] {
        mwire::DecodeScratch d;
        d.max_wait = mproc::Duration(0);
        return d;
    }();
    return s;
}

/// Lets go of every Lock and RLock this thread holds in the heap.
void release_locks() {
    namespace mgr = mproc::detail::mgr;
    const mgr::Heap h(*heap().segment());
    mgr::for_each_object(h, [&](mgr::ObjectHeader* o) {
        if (o->kind != mop::Kind::lock && o->kind != mop::Kind::rlock) return;
        const mgr::Target t{h, o, heap().segment()};
        const auto m = mproc::detail::MutexHandle::attach(heap().segment(), t.state<mgr::LockState>().mutex);
        if (m.held_by_me()) m.release_all();
    });
}

/// The heap as a fresh one for the next input.
void fresh_heap() {
    release_locks();
    mproc::detail::mgr::reset_heap(heap(), std::uint64_t{1} << 20);
}

/// Dispatches one request and reads its reply as a client would.
void serve_one(mwire::Bytes body) {
    static bool quiet_failed = false;  // a connection's, carried between requests
    std::vector<std::byte> out;
    const bool was_failed = quiet_failed;
    mproc::detail::server::serve_request(heap(), body, out, scratch(), quiet_failed);
    // A quiet request that succeeds, or fails after another, has no reply.
    if (out.empty()) {
        if (body.empty() || (static_cast<std::uint8_t>(body[0]) & mwire::kQuiet) == 0) std::abort();
        return;
    }
    // The reply must be one well-formed frame: status, then result or error.
    if (out.size() < 5) std::abort();
    std::uint32_t n;
    std::memcpy(&n, out.data(), 4);
    if (n != out.size() - 4) std::abort();
    mwire::FrameReader r(mwire::Bytes(out).subspan(4));
    const auto status = r.get<std::uint8_t>();
    if (status == mwire::kQuietFailed && was_failed) std::abort();  // one per run
    if (status == 1 || status == mwire::kQuietFailed) {
        try {
            mwire::throw_error(r);
        } catch (const std::exception&) {
            // The exception codec re-creates the server's error as its own
            // type: an mproc error, or a standard one (std::bad_alloc, ...).
        }
    } else if (status != 0) {
        std::abort();
    }
}

void requests(const std::uint8_t* p, std::size_t n) {
    while (n >= 2) {
        std::size_t len = p[0] | (std::size_t{p[1]} << 8);
        p += 2;
        n -= 2;
        len = std::min(len, n);
        serve_one(mwire::Bytes(reinterpret_cast<const std::byte*>(p), len));
        p += len;
        n -= len;
    }
}

/// A socket pair whose far end has already sent `bytes` and shut down.
struct Fed {
    mproc::os::Fd near, far;
    Fed(const std::uint8_t* p, std::size_t n) {
        std::tie(near, far) = mproc::os::socket_pair(mproc::os::SocketKind::stream);
        mproc::os::send_all(far.get(), std::span(reinterpret_cast<const std::byte*>(p), n));
        mproc::os::shutdown_write(far.get());
    }
};

void stream(const std::uint8_t* p, std::size_t n) {
    Fed fed(p, n);
    mwire::FrameStream in(std::uint32_t{1} << 20);
    try {
        while (auto frame = in.next(fed.near.get(), mproc::os::Deadline::after(mproc::Duration(1)))) serve_one(*frame);
    } catch (const mproc::Error&) {
    }
}

void handshake(bool server, const std::uint8_t* p, std::size_t n) {
    Fed fed(p, n);
    try {
        const auto deadline = mproc::os::Deadline::after(mproc::Duration(1));
        if (server) mwire::server_handshake(fed.near.get(), "fuzz", deadline);
        else mwire::client_handshake(fed.near.get(), "fuzz", deadline);
    } catch (const mproc::Error&) {
    }
}

// ---- seeds -------------------------------------------------------------------------

template <class O, class... A>
void add(std::vector<std::byte>& out, std::uint64_t obj, A... args) {
    typename O::Args packed(args...);
    std::vector<std::byte> frame;
    mwire::FrameBuilder f(frame);
    mwire::encode_request<O>(f, mop::ObjectId{obj}, packed);
    f.finish();
    const std::size_t len = frame.size() - 4;
    out.push_back(static_cast<std::byte>(len & 0xff));
    out.push_back(static_cast<std::byte>(len >> 8));
    out.insert(out.end(), frame.begin() + 4, frame.end());
}

void write_seeds(const std::string& dir) {
    auto none = [](mwire::Bytes) {};
    const mop::Sink sink(none);
    const std::byte k[] = {std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4}};
    const mwire::Bytes kb(k), list[] = {kb, kb};
    const std::uint64_t order[] = {1, 0};
    std::vector<std::vector<std::byte>> seeds(5);
    auto& dict = seeds[0];
    add<mop::op::create>(dict, 0, mop::Kind::dict, std::uint64_t{7});
    add<mop::op::dict_set>(dict, 1, kb, kb);
    add<mop::op::dict_get>(dict, 1, kb, sink);
    add<mop::op::dict_update>(dict, 1, mwire::BytesList(list), mwire::BytesList(list));
    add<mop::op::dict_items>(dict, 1, sink);
    add<mop::op::dict_cas>(dict, 1, kb, true, kb, kb, sink);
    add<mop::op::dict_popitem>(dict, 1, sink);
    add<mop::op::publish>(dict, 0, kb, mop::ObjectId{1});
    add<mop::op::lookup>(dict, 0, kb, mop::Kind::dict, std::uint64_t{7});
    auto& lst = seeds[1];
    add<mop::op::create>(lst, 0, mop::Kind::list, std::uint64_t{7});
    add<mop::op::list_extend>(lst, 2, mwire::BytesList(list));
    add<mop::op::list_insert>(lst, 2, std::int64_t{1}, kb);
    add<mop::op::list_reorder>(lst, 2, std::uint64_t{2}, mwire::U64List(order));
    add<mop::op::list_index>(lst, 2, kb, std::int64_t{0}, std::int64_t{-1});
    add<mop::op::list_remove>(lst, 2, kb);
    add<mop::op::list_reverse>(lst, 2);
    add<mop::op::list_pop>(lst, 2, std::int64_t{-1}, sink);
    auto& q = seeds[2];
    add<mop::op::create_queue>(q, 0, std::uint64_t{7}, std::uint64_t{2});
    add<mop::op::queue_put>(q, 3, kb, mproc::Timeout(mproc::Duration(0)));
    add<mop::op::queue_get>(q, 3, sink, mproc::Timeout());
    add<mop::op::queue_task_done>(q, 3);
    add<mop::op::queue_join>(q, 3, mproc::Timeout());
    auto& sync = seeds[3];
    add<mop::op::create_lock>(sync, 0, true);
    add<mop::op::lock_acquire>(sync, 4, mproc::Timeout());
    add<mop::op::create_condition>(sync, 0, mop::ObjectId{4});
    add<mop::op::cond_wait>(sync, 5, mproc::Timeout());
    add<mop::op::cond_notify>(sync, 5, std::uint64_t{1});
    add<mop::op::lock_release>(sync, 4);
    add<mop::op::create_barrier>(sync, 0, std::uint64_t{2});
    add<mop::op::barrier_wait>(sync, 6, mproc::Timeout());
    add<mop::op::barrier_reset>(sync, 6);
    add<mop::op::create_semaphore>(sync, 0, std::uint64_t{1}, std::uint64_t{1});
    add<mop::op::sem_release>(sync, 7, std::uint64_t{1});
    add<mop::op::create_event>(sync, 0);
    add<mop::op::event_wait>(sync, 8, mproc::Timeout());
    seeds[4] = seeds[0];  // the same requests as one raw stream of frames
    for (std::size_t i = 0; i < 4; ++i) {
        std::ofstream f(dir + "/seed-" + std::to_string(i), std::ios::binary);
        f.put(0);
        f.write(reinterpret_cast<const char*>(seeds[i].data()), static_cast<std::streamsize>(seeds[i].size()));
    }
    std::ofstream raw(dir + "/seed-stream", std::ios::binary);
    raw.put(1);
    for (std::size_t at = 0; at + 2 <= seeds[4].size();) {
        const std::size_t len = static_cast<std::size_t>(seeds[4][at]) | static_cast<std::size_t>(seeds[4][at + 1]) << 8;
        const std::uint32_t n = static_cast<std::uint32_t>(len);
        raw.write(reinterpret_cast<const char*>(&n), 4);
        raw.write(reinterpret_cast<const char*>(seeds[4].data() + at + 2), static_cast<std::streamsize>(len));
        at += 2 + len;
    }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    if (const char* dir = std::getenv("MPROC_FUZZ_SEEDS")) write_seeds(dir);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    fresh_heap();
    switch (data[0] % 4) {
        case 0: requests(data + 1, size - 1); break;
        case 1: stream(data + 1, size - 1); break;
        case 2: handshake(true, data + 1, size - 1); break;
        case 3: handshake(false, data + 1, size - 1); break;
    }
    return 0;
}
