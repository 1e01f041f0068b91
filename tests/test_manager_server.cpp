// A served manager against hostile and careless clients, spoken to in raw
// frames (lib/manager/wire.hpp): a 1 GiB length prefix before and after
// authenticating, a request for the wrong kind of object or for no object,
// malformed requests, ~1,100 connections at once, idle unauthenticated
// connections, and a client that hangs up while its request waits. Each
// costs only its own connection; the server's memory is read from /proc.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "manager/object.hpp"
#include "manager/wire.hpp"
#include "mproc/manager.hpp"
#include "mproc/process.hpp"
#include "os/socket.hpp"

using namespace std::chrono_literals;
namespace mwire = mproc::detail::mwire;
namespace mop = mproc::detail::mop;

namespace {

constexpr auto kLong = mproc::Duration(60);
const std::string kKey = "hostile";

/// The server's resident memory, in bytes.
std::size_t rss_of(long pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(in, line);)
        if (line.rfind("VmRSS:", 0) == 0) return std::stoul(line.substr(6)) * 1024;
    FAIL("no VmRSS for " << pid);
    return 0;
}

int port_of(const std::string& address) { return std::stoi(address.substr(address.rfind(':') + 1)); }

/// A plain TCP connection to the server, nothing said yet.
int raw_connect(int port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<std::uint16_t>(port));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    return fd;
}

/// A raw connection that has authenticated.
struct Raw {
    int fd;
    mwire::FrameStream in{mwire::kMaxFrame};
    explicit Raw(int port) : fd(raw_connect(port)) {
        mwire::client_handshake(fd, kKey, mproc::os::Deadline::after(kLong));
    }
    ~Raw() { ::close(fd); }
    void send(const std::vector<std::byte>& frame) const { REQUIRE(mproc::os::send_all(fd, frame)); }
    /// The next reply: its status byte and the rest.
    std::pair<int, std::vector<std::byte>> reply() {
        const auto body = in.next(fd, mproc::os::Deadline::after(kLong));
        REQUIRE(body.has_value());
        REQUIRE(!body->empty());
        return {static_cast<int>((*body)[0]), std::vector<std::byte>(body->begin() + 1, body->end())};
    }
    /// Sends a request for row O and returns its reply.
    template <class O, class... A>
    std::pair<int, std::vector<std::byte>> call(mop::ObjectId obj, A... args) {
        typename O::Args packed(args...);
        std::vector<std::byte> frame;
        mwire::FrameBuilder f(frame);
        mwire::encode_request<O>(f, obj, packed);
        f.finish();
        send(frame);
        return reply();
    }
};

std::vector<std::byte> frame_of(std::vector<std::byte> body) {
    std::vector<std::byte> frame;
    mwire::FrameBuilder f(frame);
    // reserve + memcpy, not vector::insert: GCC 12 at -O3 reports a false
    // -Warray-bounds inside libstdc++'s range insert here.
    const std::size_t at = f.reserve(body.size());
    if (!body.empty()) std::memcpy(frame.data() + at, body.data(), body.size());
    f.finish();
    return frame;
}

/// The error an error reply carries, re-thrown and caught as `E`.
template <class E>
bool is_error(const std::pair<int, std::vector<std::byte>>& r) {
    if (r.first != 1) return false;
    mwire::FrameReader in(r.second);
    try {
        mwire::throw_error(in);
    } catch (const E&) {
        return true;
    } catch (...) {
    }
    return false;
}

mop::Bytes bytes_of(const std::string& s) { return mop::Bytes(reinterpret_cast<const std::byte*>(s.data()), s.size()); }

/// True once the peer has closed `fd` (read returns 0), within `timeout`.
bool closed_within(int fd, std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    char buf[512];
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
        if (left.count() <= 0) return false;
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) return true;
    }
}

}  // namespace

TEST_CASE("Manager server: a 1 GiB length prefix before authenticating allocates nothing",
          "[manager][remote][hostile]") {
    mproc::Manager mgr;
    auto d = mgr.dict<int, int>();
    d.set(1, 1);
    mgr.publish("d", d);
    const int port = port_of(mgr.serve("127.0.0.1:0", kKey));
    const long server = mgr.server_pid();
    REQUIRE(server > 0);
    const std::size_t before = rss_of(server);
    std::vector<int> fds;
    for (int i = 0; i < 3; ++i) {
        const int fd = raw_connect(port);
        // The answer to the challenge: a frame claiming 1 GiB, and 1 KiB of it.
        std::vector<std::byte> junk(4 + 1024, std::byte{0x5a});
        const std::uint32_t n = std::uint32_t{1} << 30;
        std::memcpy(junk.data(), &n, 4);
        REQUIRE(mproc::os::send_all(fd, junk));
        fds.push_back(fd);
    }
    for (int fd : fds) {
        REQUIRE(closed_within(fd, 30s));  // refused: the connection ends
        ::close(fd);
    }
    const std::size_t after = rss_of(server);
    INFO("server RSS " << before / 1024 << " KiB -> " << after / 1024 << " KiB");
    REQUIRE(after < before + (8u << 20));
    auto remote = mproc::Manager::connect("127.0.0.1:" + std::to_string(port), kKey);
    REQUIRE(remote.lookup<mproc::DictProxy<int, int>>("d").at(1) == 1);
}

TEST_CASE("Manager server: junk instead of an answer to the challenge costs only that connection",
          "[manager][remote][hostile]") {
    mproc::Manager mgr;
    auto d = mgr.dict<int, int>();
    d.set(1, 1);
    mgr.publish("d", d);
    const std::string address = mgr.serve("127.0.0.1:0", kKey);
    for (int attempt = 0; attempt < 3; ++attempt) {
        const int fd = raw_connect(port_of(address));
        // A frame claiming 4 GiB, a short digest, or nothing before hanging up.
        const unsigned char junk[][8] = {{0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4}, {4, 0, 0, 0, 1, 2, 3, 4}, {}};
        if (attempt < 2) REQUIRE(::send(fd, junk[attempt], 8, MSG_NOSIGNAL) == 8);
        if (attempt < 2) REQUIRE(closed_within(fd, 30s));  // refused, never hung
        ::close(fd);
    }
    auto remote = mproc::Manager::connect(address, kKey);
    REQUIRE(remote.lookup<mproc::DictProxy<int, int>>("d").at(1) == 1);
}

TEST_CASE("Manager server: after authenticating, a frame's buffer grows only as its bytes arrive",
          "[manager][remote][hostile]") {
    mproc::Manager mgr;
    const int port = port_of(mgr.serve("127.0.0.1:0", kKey));
    const long server = mgr.server_pid();
    const std::size_t before = rss_of(server);
    {
        Raw raw(port);
        std::vector<std::byte> prefix(4);
        const std::uint32_t n = std::uint32_t{1} << 30;
        std::memcpy(prefix.data(), &n, 4);
        raw.send(prefix);
        // 16 MiB of the promised 1 GiB: the server holds about that much.
        const std::vector<std::byte> chunk(1 << 20, std::byte{1});
        for (int i = 0; i < 16; ++i) raw.send(chunk);
        const std::size_t during = rss_of(server);
        INFO("server RSS " << before / 1024 << " KiB -> " << during / 1024 << " KiB with 16 MiB of a 1 GiB frame");
#if defined(__SANITIZE_THREAD__)
        // TSan's shadow memory adds about 4 bytes of RSS per byte touched;
        // 1 GiB allocated up front would still be far past this bound.
        constexpr std::size_t kBound = std::size_t{256} << 20;
#else
        constexpr std::size_t kBound = std::size_t{64} << 20;
#endif
        REQUIRE(during < before + kBound);
    }
    // It is still serving.
    auto remote = mproc::Manager::connect("127.0.0.1:" + std::to_string(port), kKey);
    auto l = remote.list<int>();
    l.append(1);
    REQUIRE(l.size() == 1);
}

TEST_CASE("Manager server: a wrong kind, an unknown object or a malformed request is an error reply",
          "[manager][remote][hostile]") {
    mproc::Manager mgr;
    auto d = mgr.dict<int, int>();
    d.set(1, 10);
    mgr.publish("d", d);
    mgr.publish("lock", mgr.Lock());
    const int port = port_of(mgr.serve("127.0.0.1:0", kKey));
    Raw raw(port);
    const auto found = raw.call<mop::op::lookup>(mop::ObjectId{0}, bytes_of("d"), mop::Kind::dict,
                                                 mproc::detail::proxy_type_tag<int, int>());
    REQUIRE(found.first == 0);
    mop::ObjectId dict_id;
    std::memcpy(&dict_id, found.second.data(), sizeof dict_id);
    const int key = 1;
    const mop::Bytes kb(reinterpret_cast<const std::byte*>(&key), sizeof key);
    // A list operation on the dict (this killed the server with SIGSEGV).
    auto none = [](mop::Bytes) {};
    REQUIRE(is_error<mproc::ValueError>(raw.call<mop::op::list_get>(dict_id, std::int64_t{0}, mop::Sink(none))));
    REQUIRE(is_error<mproc::ValueError>(raw.call<mop::op::list_extend>(dict_id, mop::BytesList(&kb, 1))));
    REQUIRE(is_error<mproc::ValueError>(raw.call<mop::op::queue_get>(dict_id, mop::Sink(none), mproc::Timeout())));
    REQUIRE(is_error<mproc::ValueError>(raw.call<mop::op::lock_release>(dict_id)));
    // Objects that do not exist, and the manager itself as a dict.
    for (std::uint64_t id : {std::uint64_t{999999}, std::uint64_t{1} << 40, ~std::uint64_t{0}})
        REQUIRE(is_error<mproc::ValueError>(raw.call<mop::op::dict_get>(mop::ObjectId{id}, kb, mop::Sink(none))));
    REQUIRE(is_error<mproc::ValueError>(raw.call<mop::op::dict_get>(mop::ObjectId{0}, kb, mop::Sink(none))));
    // Malformed frames: empty, an unknown operation, cut short, too long,
    // a list claiming more items than the frame holds, a bad flag.
    const auto id_bytes = [&](mop::ObjectId id) {
        std::vector<std::byte> b(9);
        b[0] = static_cast<std::byte>(mop::OpId::dict_get);
        std::memcpy(b.data() + 1, &id, 8);
        return b;
    };
    raw.send(frame_of({}));
    REQUIRE(is_error<mproc::SerializationError>(raw.reply()));
    raw.send(frame_of({std::byte{255}, std::byte{0}, std::byte{0}, std::byte{0}, std::byte{0}, std::byte{0},
                       std::byte{0}, std::byte{0}, std::byte{0}}));
    REQUIRE(is_error<mproc::SerializationError>(raw.reply()));
    raw.send(frame_of(id_bytes(dict_id)));  // dict_get without its key
    REQUIRE(is_error<mproc::SerializationError>(raw.reply()));
    auto cut = id_bytes(dict_id);
    cut.insert(cut.end(), {std::byte{200}, std::byte{0}, std::byte{0}, std::byte{0}, std::byte{1}});  // a 200-byte key, 1 byte of it
    raw.send(frame_of(cut));
    REQUIRE(is_error<mproc::SerializationError>(raw.reply()));
    auto extra = id_bytes(dict_id);
    extra.insert(extra.end(), {std::byte{4}, std::byte{0}, std::byte{0}, std::byte{0}});
    extra.insert(extra.end(), kb.begin(), kb.end());
    extra.push_back(std::byte{0});  // one byte past the arguments
    raw.send(frame_of(extra));
    REQUIRE(is_error<mproc::SerializationError>(raw.reply()));
    std::vector<std::byte> many(9);
    many[0] = static_cast<std::byte>(mop::OpId::dict_update);
    std::memcpy(many.data() + 1, &dict_id, 8);
    many.insert(many.end(), {std::byte{0xff}, std::byte{0xff}, std::byte{0xff}, std::byte{0x0f}});
    raw.send(frame_of(many));
    REQUIRE(is_error<mproc::SerializationError>(raw.reply()));
    std::vector<std::byte> flag(9);
    flag[0] = static_cast<std::byte>(mop::OpId::create_lock);
    flag.push_back(std::byte{7});
    raw.send(frame_of(flag));
    REQUIRE(is_error<mproc::SerializationError>(raw.reply()));
    // A sort order that is not a permutation, and list_reorder on the dict.
    const std::uint64_t order[] = {0, 0};
    REQUIRE(is_error<mproc::ValueError>(raw.call<mop::op::list_reorder>(dict_id, std::uint64_t{0}, mop::U64List(order))));
    // The same connection is still served, and so is everyone else.
    std::optional<int> v;
    auto take = [&](mop::Bytes b) { v = mproc::detail::decode_item<int>(b); };
    REQUIRE(raw.call<mop::op::dict_get>(dict_id, kb, mop::Sink(take)).first == 0);
    auto remote = mproc::Manager::connect("127.0.0.1:" + std::to_string(port), kKey);
    REQUIRE(remote.lookup<mproc::DictProxy<int, int>>("d").at(1) == 10);
}

TEST_CASE("Manager server: ~1,100 connections at once; authenticated clients keep being served",
          "[manager][remote][hostile]") {
    rlimit lim{};
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &lim) == 0);
    if (lim.rlim_cur < 1400) {
        lim.rlim_cur = std::min<rlim_t>(lim.rlim_max, 1400);
        ::setrlimit(RLIMIT_NOFILE, &lim);
    }
    if (lim.rlim_cur < 1400) {
        SUCCEED("not enough fds for the test");
        return;
    }
    mproc::Manager mgr;
    auto d = mgr.dict<int, int>();
    mgr.publish("d", d);
    const std::string address = mgr.serve("127.0.0.1:0", kKey);
    const int port = port_of(address);
    auto early = mproc::Manager::connect(address, kKey);
    auto ed = early.lookup<mproc::DictProxy<int, int>>("d");
    std::vector<int> fds;
    for (int i = 0; i < 1100; ++i) {
        fds.push_back(raw_connect(port));
        if (i % 100 == 0) ed[i] += 1;  // served all along
    }
    // A client arriving now gets in (the oldest idle connection makes room).
    auto late = mproc::Manager::connect(address, kKey);
    late.lookup<mproc::DictProxy<int, int>>("d")[7] = 7;
    REQUIRE(d.size() == 12);
    REQUIRE(ed.at(7) == 7);
    for (int fd : fds) ::close(fd);
}

TEST_CASE("Manager server: past its connection limit a client is refused, and says so",
          "[manager][remote][hostile]") {
    mproc::Manager mgr;
    const std::string address = mgr.serve("127.0.0.1:0", kKey, mproc::ServeOptions{.max_connections = 3});
    std::vector<mproc::Manager> clients;
    for (int i = 0; i < 3; ++i) clients.push_back(mproc::Manager::connect(address, kKey));
    for (auto& c : clients) REQUIRE(c.Value<int>(1).get() == 1);
    try {
        (void)mproc::Manager::connect(address, kKey);
        FAIL("a fourth connection was accepted");
    } catch (const mproc::OSError& e) {
        REQUIRE(e.code() == ECONNREFUSED);
        REQUIRE(std::string(e.what()).find("connection limit") != std::string::npos);
    }
    clients.pop_back();  // its connection closes; the server lets another in
    for (auto until = std::chrono::steady_clock::now() + 30s;;) {
        try {
            auto again = mproc::Manager::connect(address, kKey);
            REQUIRE(again.Value<int>(2).get() == 2);
            break;
        } catch (const mproc::OSError&) {
            REQUIRE(std::chrono::steady_clock::now() < until);
            std::this_thread::yield();
        }
    }
}

TEST_CASE("Manager server: an idle unauthenticated connection is closed after the handshake timeout",
          "[manager][remote][hostile]") {
    mproc::Manager mgr;
    const std::string address =
        mgr.serve("127.0.0.1:0", kKey, mproc::ServeOptions{.handshake_timeout = mproc::Duration(0.3)});
    auto client = mproc::Manager::connect(address, kKey);
    auto l = client.list<int>();
    const int fd = raw_connect(port_of(address));
    const auto t0 = std::chrono::steady_clock::now();
    REQUIRE(closed_within(fd, 30s));
    REQUIRE(std::chrono::steady_clock::now() - t0 >= 250ms);
    ::close(fd);
    l.append(1);  // the authenticated one, idle as long, is still served
    REQUIRE(l.size() == 1);
}

TEST_CASE("Manager server: a client that hangs up while its get() waits takes no item with it",
          "[manager][remote][queue][process]") {
    mproc::Manager mgr;
    auto q = mgr.Queue<int>();
    mgr.publish("q", q);
    const std::string address = mgr.serve("127.0.0.1:0", kKey);
    // Where the queue's waiters register, found through its handle.
    mproc::detail::HandleWriter w;
    q.mproc_export(w);
    mproc::detail::HandleReader r(w.refs, w.values);
    auto [seg, at] = r.segment(sizeof(mproc::detail::mgr::ObjectHeader));
    const auto* header = reinterpret_cast<const mproc::detail::mgr::ObjectHeader*>(at);
    mproc::Process p(
        [](std::string address) {
            auto m = mproc::Manager::connect(address, kKey);
            (void)m.lookup<mproc::QueueProxy<int>>("q").get();  // the server waits for this client
        },
        address);
    p.start_method(mproc::StartMethod::spawn).start();
    for (auto until = std::chrono::steady_clock::now() + 60s; !header->change.has_sleepers();) {
        REQUIRE(std::chrono::steady_clock::now() < until);
        std::this_thread::yield();
    }
    ::kill(static_cast<pid_t>(*p.pid()), SIGKILL);
    REQUIRE(p.join(kLong));
    // Its server thread's wait is cancelled (which wakes it, clearing the
    // sleeper bit): the item stays for us.
    for (auto until = std::chrono::steady_clock::now() + 60s; header->change.has_sleepers();) {
        REQUIRE(std::chrono::steady_clock::now() < until);
        std::this_thread::yield();
    }
    q.put(7);
    REQUIRE(q.get(mproc::Duration(10)) == 7);
}

TEST_CASE("Manager server: shutdown ends a remote get() blocked on the server with EOFError",
          "[manager][remote][shutdown]") {
    auto mgr = std::make_unique<mproc::Manager>();
    mgr->publish("q", mgr->Queue<int>());
    auto remote = mproc::Manager::connect(mgr->serve("127.0.0.1:0", kKey), kKey);
    auto q = remote.lookup<mproc::QueueProxy<int>>("q");
    std::atomic<int> outcome{0};
    std::atomic<bool> connected{false};
    std::thread t([&] {
        try {
            (void)q.qsize();  // this thread's own connection is up
            connected = true;
            (void)q.get();
            outcome = 1;
        } catch (const mproc::EOFError&) {
            outcome = 2;
        }
    });
    while (!connected) std::this_thread::yield();
    mgr->shutdown();
    t.join();
    REQUIRE(outcome == 2);
}

TEST_CASE("Manager heap reset (the wire fuzzer's fresh heap per input): as new, zeroed, within the reserve asked",
          "[manager][fuzz]") {
    namespace mgr = mproc::detail::mgr;
    const auto used = mproc::detail::SharedHeap::create(std::size_t{16} << 20);
    const mgr::Heap h(*used.segment());
    // Dirty it: objects, and blocks full of bytes that a fresh heap never has.
    for (int i = 0; i < 20; ++i) mgr::enter(h, mgr::make_object(h, mgr::Kind::dict, 7, sizeof(mgr::DictState)));
    for (int i = 0; i < 50; ++i) std::memset(h.at(h.alloc(3000)), 0xab, 3000);
    const std::uint64_t dirty_end = h.header().bump.load();
    mgr::reset_heap(used, std::uint64_t{1} << 20);

    const auto fresh = mproc::detail::SharedHeap::create(std::size_t{16} << 20);
    REQUIRE(used.max_bytes() == std::size_t{1} << 20);
    REQUIRE(used.used_bytes() == fresh.used_bytes());
    REQUIRE(h.header().next_id.load() == 1);
    REQUIRE(mgr::find_object(h, mop::ObjectId{1}) == 0);
    // Past the header, byte for byte what a new heap holds (its root object).
    REQUIRE(std::memcmp(used.segment()->data() + mgr::kHeapStart, fresh.segment()->data() + mgr::kHeapStart,
                        dirty_end - mgr::kHeapStart) == 0);
    REQUIRE_THROWS_AS(h.alloc(std::size_t{2} << 20), mproc::Error);
    REQUIRE_NOTHROW(h.alloc(1000));
}
