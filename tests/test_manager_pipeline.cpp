// A connected manager's pipelined stores (ConnectOptions::pipeline_stores):
// quiet requests (lib/manager/wire.hpp) that the server answers only when
// they fail, and then only the first failure of a run. Over the wire by a
// raw client, through proxies in this process, and from fork, spawn and
// forkserver children.
#include <catch2/catch.hpp>

#include <cstring>
#include <string>
#include <vector>

#include "manager/wire.hpp"
#include "mproc/manager.hpp"
#include "mproc/process.hpp"
#include "os/socket.hpp"

namespace mwire = mproc::detail::mwire;
namespace mop = mproc::detail::mop;

namespace {

constexpr auto kLong = mproc::Duration(60);
const std::string kKey = "pipeline";

/// An authenticated connection speaking frames.
struct Wire {
    mproc::os::Fd fd;
    mwire::FrameStream in{mwire::kMaxFrame};
    explicit Wire(const std::string& address)
        : fd(mproc::os::connect_stream(address, mproc::os::Deadline::after(kLong))) {
        mwire::client_handshake(fd.get(), kKey, mproc::os::Deadline::after(kLong));
    }
    /// Sends row O's request, quiet or not.
    template <class O, class... A>
    void send(bool quiet, mop::ObjectId obj, A... args) {
        typename O::Args packed(args...);
        std::vector<std::byte> frame;
        mwire::FrameBuilder f(frame);
        mwire::encode_request<O>(f, obj, packed);
        f.finish();
        if (quiet) frame[4] |= std::byte{mwire::kQuiet};
        REQUIRE(mproc::os::send_all(fd.get(), frame));
    }
    /// The next reply's status byte and body.
    std::pair<int, std::vector<std::byte>> reply() {
        const auto body = in.next(fd.get(), mproc::os::Deadline::after(kLong));
        REQUIRE(body.has_value());
        REQUIRE(!body->empty());
        return {static_cast<int>((*body)[0]), std::vector<std::byte>(body->begin() + 1, body->end())};
    }
};

template <class E>
bool carries(const std::vector<std::byte>& body) {
    mwire::FrameReader r(body);
    try {
        mwire::throw_error(r);
    } catch (const E&) {
        return true;
    } catch (...) {
    }
    return false;
}

mop::Bytes bytes_of(const std::string& s) { return mop::Bytes(reinterpret_cast<const std::byte*>(s.data()), s.size()); }

/// A child's work: `n` pipelined sets, then one operation that waits.
void pipelined_writer(std::string address, int n) {
    auto m = mproc::Manager::connect(address, kKey, mproc::ConnectOptions{.pipeline_stores = true});
    auto d = m.lookup<mproc::DictProxy<int, int>>("d");
    for (int i = 0; i < n; ++i) d.set(i, i * 3);
    if (d.size() != static_cast<std::size_t>(n)) throw std::runtime_error("a pipelined store went missing");
}

}  // namespace

TEST_CASE("Pipelined stores on the wire: no reply on success, the first failure of a run only",
          "[manager][remote][pipeline][hostile]") {
    mproc::Manager mgr;
    auto d = mgr.dict<int, int>();
    mgr.publish("d", d);
    const std::string address = mgr.serve("127.0.0.1:0", kKey);
    Wire w(address);
    w.send<mop::op::lookup>(false, mop::ObjectId{0}, bytes_of("d"), mop::Kind::dict,
                            mproc::detail::proxy_type_tag<int, int>());
    auto found = w.reply();
    REQUIRE(found.first == 0);
    mop::ObjectId id;
    std::memcpy(&id, found.second.data(), sizeof id);
    const int key = 7, value = 70;
    const mop::Bytes kb(reinterpret_cast<const std::byte*>(&key), sizeof key);
    const mop::Bytes vb(reinterpret_cast<const std::byte*>(&value), sizeof value);  // an int's stored form
    auto none = [](mop::Bytes) {};

    // A quiet store that succeeds has no reply: the next reply is the get's.
    w.send<mop::op::dict_set>(true, id, kb, vb);
    w.send<mop::op::dict_get>(false, id, kb, mop::Sink(none));
    auto r = w.reply();
    REQUIRE(r.first == 0);
    REQUIRE(d.at(7) == 70);

    // The flag on an operation that is not a store is an unknown
    // operation: answered, as any malformed request.
    w.send<mop::op::dict_get>(true, id, kb, mop::Sink(none));
    r = w.reply();
    REQUIRE(r.first == 1);
    REQUIRE(carries<mproc::SerializationError>(r.second));

    // A run of failing quiet stores (on objects that do not exist, of the
    // wrong kind): only the first answers (status 2), then the next
    // request's reply.
    w.send<mop::op::dict_set>(true, mop::ObjectId{999999}, kb, vb);
    w.send<mop::op::dict_set>(true, mop::ObjectId{0}, kb, vb);
    const int many[] = {1, 2};
    const mop::Bytes mb[] = {mop::Bytes(reinterpret_cast<const std::byte*>(&many[0]), 4),
                             mop::Bytes(reinterpret_cast<const std::byte*>(&many[1]), 4)};
    w.send<mop::op::list_extend>(true, id, mop::BytesList(mb, 2));
    w.send<mop::op::dict_get>(false, id, kb, mop::Sink(none));
    r = w.reply();
    REQUIRE(r.first == mwire::kQuietFailed);
    REQUIRE(carries<mproc::ValueError>(r.second));
    r = w.reply();
    REQUIRE(r.first == 0);
    REQUIRE(r.second.size() > 1);
    REQUIRE(r.second[0] == std::byte{1});  // found (its value follows)
    // The answered request ended the run: the next failure answers again.
    w.send<mop::op::dict_set>(true, mop::ObjectId{999999}, kb, vb);
    w.send<mop::op::dict_size>(false, id);
    r = w.reply();
    REQUIRE(r.first == mwire::kQuietFailed);
    REQUIRE(carries<mproc::ValueError>(r.second));
    r = w.reply();
    REQUIRE(r.first == 0);
    // And a plain client is still served.
    auto remote = mproc::Manager::connect(address, kKey);
    REQUIRE(remote.lookup<mproc::DictProxy<int, int>>("d").at(7) == 70);
}

TEST_CASE("Pipelined stores: 20,000 failures in a row cost one error, and neither end blocks",
          "[manager][remote][pipeline]") {
    mproc::Manager mgr(mproc::ManagerOptions{.max_bytes = 1u << 20});
    auto d = mgr.dict<int, std::string>();
    mgr.publish("d", d);
    const std::string value(1000, 'v');
    int filled = 0;
    try {
        for (;; ++filled) d.set(filled, value);
    } catch (const mproc::Error& e) {
        REQUIRE(std::string(e.what()).find("out of memory") != std::string::npos);
    }
    REQUIRE(filled > 100);
    const std::string address = mgr.serve("127.0.0.1:0", kKey);
    auto remote = mproc::Manager::connect(address, kKey, mproc::ConnectOptions{.pipeline_stores = true});
    auto rd = remote.lookup<mproc::DictProxy<int, std::string>>("d");
    // Each fails in the server; none is waited for. Were each answered,
    // the replies would fill the socket while this thread only writes.
    for (int i = 0; i < 20'000; ++i) rd.set(filled + 1 + i, value);
    try {
        (void)rd.size();
        FAIL("the stores' error was lost");
    } catch (const mproc::Error& e) {
        REQUIRE(std::string(e.what()).find("out of memory") != std::string::npos);
    }
    // Reported once; the connection goes on, and what fit is all there.
    REQUIRE(rd.size() == static_cast<std::size_t>(filled));
    rd.set(0, "first");  // replacing a value of the same size fits
    REQUIRE(rd.at(0) == "first");
}

TEST_CASE("Pipelined stores from fork, spawn and forkserver children all arrive, in order",
          "[manager][remote][pipeline][process]") {
    for (auto method : {mproc::StartMethod::fork, mproc::StartMethod::spawn, mproc::StartMethod::forkserver}) {
        mproc::Manager mgr;
        auto d = mgr.dict<int, int>();
        mgr.publish("d", d);
        const std::string address = mgr.serve("127.0.0.1:0", kKey);
        mproc::Process p(pipelined_writer, address, 5000);
        p.start_method(method).start();
        REQUIRE(p.join(kLong));
        REQUIRE(p.exitcode() == 0);
        REQUIRE(d.size() == 5000);
        REQUIRE(d.at(4999) == 4999 * 3);
    }
}
