// The remote manager: a server process answering proxies over TCP, and the
// client side of the proxies of a connected Manager. See remote.hpp.
#include "manager/remote.hpp"

#include <algorithm>
#include <cstring>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <vector>

#include <poll.h>
#include <signal.h>

#include "manager/hmac.hpp"
#include "mproc/errors.hpp"
#include "mproc/pipe.hpp"
#include "mproc/process.hpp"
#include "os/os.hpp"
#include "os/process.hpp"
#include "os/socket.hpp"

namespace mproc::detail {

namespace {

enum class Op : std::uint8_t {
    create = 1, lookup, publish,
    dict_set = 10, dict_set_many, dict_get, dict_erase, dict_insert, dict_cas, dict_items,
    list_extend = 30, list_at, list_set, list_insert, list_pop, list_items, list_cas,
    value_set = 50, value_get, value_cas,
    size = 60, clear,
    queue_put = 70, queue_get, queue_task_done, queue_join, queue_maxsize,
};

enum class Status : std::uint8_t {
    ok = 0, absent = 1, conflict = 2,
    error = 10, key_error, index_error, value_error, serialization_error, timeout_error,
};

constexpr std::uint32_t kMaxFrame = std::uint32_t{1} << 30;
constexpr std::string_view kChallenge = "#CHALLENGE#";
constexpr std::string_view kWelcome = "#WELCOME#";
constexpr std::string_view kFailure = "#FAILURE#";
constexpr std::size_t kChallengeBytes = 32;

Bytes as_bytes(std::string_view s) { return Bytes(reinterpret_cast<const std::byte*>(s.data()), s.size()); }
std::string as_string(Bytes b) { return std::string(reinterpret_cast<const char*>(b.data()), b.size()); }

/// Builds one frame: [u32 length][body].
class FrameWriter {
public:
    FrameWriter() { reset(); }
    void reset() { buf_.assign(4, std::byte{0}); }
    template <class T>
    void put(const T& v) {
        const auto* p = reinterpret_cast<const std::byte*>(&v);
        buf_.insert(buf_.end(), p, p + sizeof v);
    }
    void raw(Bytes b) { buf_.insert(buf_.end(), b.begin(), b.end()); }
    void field(Bytes b) {
        if (b.size() > kMaxFrame) throw ValueError("mproc remote manager: an item over 1 GiB cannot be sent");
        put(static_cast<std::uint32_t>(b.size()));
        raw(b);
    }
    std::vector<std::byte>& buffer() { return buf_; }
    Bytes finish() {
        if (buf_.size() - 4 > kMaxFrame) throw ValueError("mproc remote manager: a message over 1 GiB cannot be sent");
        const auto n = static_cast<std::uint32_t>(buf_.size() - 4);
        std::memcpy(buf_.data(), &n, 4);
        return buf_;
    }

private:
    std::vector<std::byte> buf_;
};

/// Reads a frame's body; every read is bounds-checked.
class FrameReader {
public:
    explicit FrameReader(Bytes body) : rest_(body) {}
    template <class T>
    T get() {
        if (rest_.size() < sizeof(T)) truncated();
        T v;
        std::memcpy(&v, rest_.data(), sizeof v);
        rest_ = rest_.subspan(sizeof v);
        return v;
    }
    Bytes field() {
        const auto n = get<std::uint32_t>();
        if (rest_.size() < n) truncated();
        Bytes b = rest_.first(n);
        rest_ = rest_.subspan(n);
        return b;
    }
    Bytes rest() const { return rest_; }

private:
    [[noreturn]] static void truncated() {
        throw SerializationError("mproc remote manager: a truncated or malformed message");
    }
    Bytes rest_;
};

bool send_frame(int fd, Bytes body) {
    FrameWriter w;
    w.raw(body);
    return os::send_all(fd, w.finish());
}

/// One frame's body into `buf`; false if the peer closed first.
bool read_frame(int fd, std::vector<std::byte>& buf, const os::Deadline& deadline) {
    std::uint32_t n = 0;
    if (!os::recv_all(fd, std::as_writable_bytes(std::span<std::uint32_t, 1>(&n, 1)), deadline)) return false;
    if (n > kMaxFrame)
        throw SerializationError("mproc remote manager: a message claims " + std::to_string(n) +
                                 " bytes, over the 1 GiB limit");
    buf.resize(n);
    return os::recv_all(fd, buf, deadline);
}

Bytes key_bytes(const std::string& k) { return as_bytes(k); }

// ---- authentication (Python's deliver_challenge / answer_challenge) --------------

/// Asks the peer to prove it knows the authkey.
void deliver_challenge(int fd, const std::string& authkey, const os::Deadline& deadline) {
    std::byte msg[kChallengeBytes];
    os::random_bytes(msg);
    const Bytes prefix = as_bytes(kChallenge);
    std::vector<std::byte> body(prefix.begin(), prefix.end());
    body.insert(body.end(), msg, msg + kChallengeBytes);
    std::vector<std::byte> answer;
    if (!send_frame(fd, body) || !read_frame(fd, answer, deadline))
        throw AuthenticationError("mproc remote manager: the peer hung up during authentication");
    const Digest expected = hmac_sha256(as_bytes(authkey), Bytes(msg, kChallengeBytes));
    Digest got{};
    if (answer.size() == got.size()) std::memcpy(got.data(), answer.data(), got.size());
    if (answer.size() != got.size() || !digests_equal(got, expected)) {
        send_frame(fd, as_bytes(kFailure));
        throw AuthenticationError("mproc remote manager: digest received was wrong (the peer's authkey differs)");
    }
    if (!send_frame(fd, as_bytes(kWelcome)))
        throw AuthenticationError("mproc remote manager: the peer hung up during authentication");
}

/// Proves to the peer that this side knows the authkey.
void answer_challenge(int fd, const std::string& authkey, const os::Deadline& deadline) {
    std::vector<std::byte> msg;
    if (!read_frame(fd, msg, deadline))
        throw AuthenticationError("mproc remote manager: the peer hung up during authentication");
    const Bytes prefix = as_bytes(kChallenge);
    if (msg.size() < prefix.size() || std::memcmp(msg.data(), prefix.data(), prefix.size()) != 0)
        throw AuthenticationError("mproc remote manager: the peer did not send a challenge (not an mproc manager?)");
    const Digest d = hmac_sha256(as_bytes(authkey), Bytes(msg).subspan(prefix.size()));
    std::vector<std::byte> verdict;
    if (!send_frame(fd, d) || !read_frame(fd, verdict, deadline))
        throw AuthenticationError("mproc remote manager: the peer hung up during authentication");
    if (as_string(verdict) != kWelcome)
        throw AuthenticationError("mproc remote manager: the peer refused this authkey");
}

// ---- server ----------------------------------------------------------------------

struct Conflict {};
struct ClientGone {};

std::int64_t timeout_ns(Timeout t) {
    if (!t) return -1;
    const double ns = std::max(0.0, t->count()) * 1e9;
    return ns > 9e18 ? -1 : static_cast<std::int64_t>(ns);
}

/// Builds a reply: [u32 length][status u8][n u32][fields].
class ReplyWriter {
public:
    void reset() {
        w_.reset();
        w_.put(static_cast<std::uint8_t>(Status::ok));
        w_.put(std::uint32_t{0});
        n_ = 0;
    }
    void status(Status s) { w_.buffer()[4] = static_cast<std::byte>(s); }
    void field(Bytes b) {
        w_.field(b);
        ++n_;
    }
    template <class T>
    void value(const T& v) { field(std::as_bytes(std::span<const T, 1>(&v, 1))); }
    void error(Status s, const char* what) {
        reset();
        status(s);
        field(as_bytes(what));
    }
    Bytes finish() {
        std::memcpy(w_.buffer().data() + 5, &n_, 4);
        return w_.finish();
    }

private:
    FrameWriter w_;
    std::uint32_t n_ = 0;
};

bool same(Bytes a, Bytes b) { return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0); }

void handle(const SharedHeap& heap, FrameReader& in, ReplyWriter& out, int client) {
    const auto op = static_cast<Op>(in.get<std::uint8_t>());
    const auto off = in.get<std::uint64_t>();
    const auto kind = static_cast<ObjectKind>(in.get<std::uint32_t>());
    const auto tag = in.get<std::uint64_t>();
    const auto index = in.get<std::int64_t>();
    const auto n = in.get<std::uint32_t>();
    std::vector<Bytes> f;
    for (std::uint32_t i = 0; i < n; ++i) f.push_back(in.field());
    auto need = [&](std::size_t k) {
        if (f.size() < k) throw SerializationError("mproc remote manager: a request is missing fields");
    };
    auto obj = [&] { return SharedObject::attach(heap.segment(), off, kind, tag); };
    auto to_out = [&](Bytes b) { out.field(b); };
    BytesSink sink(to_out);
    auto cas = [&](bool expect_present, Bytes expected, Bytes next) {
        return [&, expect_present, expected, next](const Bytes* old) -> Bytes {
            const bool match = expect_present ? (old && same(*old, expected)) : old == nullptr;
            if (!match) {
                out.status(Status::conflict);
                if (old) out.field(*old);
                throw Conflict{};
            }
            return next;
        };
    };
    // A blocking queue call waits in slices, so a client that hangs up is
    // noticed (and its thread freed) instead of waiting forever.
    auto blocking = [&](auto attempt) {
        const os::Deadline deadline =
            index < 0 ? os::Deadline::never() : os::Deadline::after(Duration(static_cast<double>(index) * 1e-9));
        for (;;) {
            Timeout slice = Duration(0.2);
            if (!deadline.is_never()) slice = std::min(*slice, *deadline.remaining());
            if (attempt(slice)) return true;
            if (deadline.expired()) return false;
            if (os::peer_closed(client)) throw ClientGone{};
        }
    };
    switch (op) {
        case Op::create:
            out.value(SharedObject::create(heap, kind, tag, index > 0 ? static_cast<std::uint64_t>(index) : 0).offset());
            return;
        case Op::queue_put: {
            need(1);
            const SharedObject q = obj();
            if (!blocking([&](Timeout t) { return q.queue_put(f[0], t); })) out.status(Status::absent);
            return;
        }
        case Op::queue_get: {
            const SharedObject q = obj();
            if (!blocking([&](Timeout t) { return q.queue_get(sink, t); })) out.status(Status::absent);
            return;
        }
        case Op::queue_task_done:
            obj().queue_task_done();
            return;
        case Op::queue_join: {
            const SharedObject q = obj();
            if (!blocking([&](Timeout t) { return q.queue_join(t); })) out.status(Status::absent);
            return;
        }
        case Op::queue_maxsize:
            out.value(static_cast<std::uint64_t>(obj().queue_maxsize()));
            return;
        case Op::lookup:
            need(1);
            out.value(heap.lookup(as_string(f[0]), kind, tag).offset());
            return;
        case Op::publish:
            need(1);
            heap.publish(as_string(f[0]), obj());
            return;
        case Op::dict_set:
            need(2);
            obj().dict_set(f[0], f[1]);
            return;
        case Op::dict_set_many: {
            std::vector<Bytes> ks, vs;
            for (std::size_t i = 0; i + 1 < f.size(); i += 2) {
                ks.push_back(f[i]);
                vs.push_back(f[i + 1]);
            }
            obj().dict_set_many(ks, vs);
            return;
        }
        case Op::dict_get:
            need(1);
            if (!obj().dict_get(f[0], sink)) out.status(Status::absent);
            return;
        case Op::dict_erase:
            need(1);
            if (!obj().dict_erase(f[0], index ? &sink : nullptr)) out.status(Status::absent);
            return;
        case Op::dict_insert:
            need(2);
            if (!obj().dict_insert(f[0], f[1])) out.status(Status::absent);
            return;
        case Op::dict_cas: {
            need(3);
            auto rw = cas(index != 0, f[1], f[2]);
            try {
                obj().dict_rewrite(f[0], Rewriter(rw));
            } catch (const Conflict&) {
            }
            return;
        }
        case Op::dict_items: {
            auto pairs = [&](Bytes k, Bytes v) {
                out.field(k);
                out.field(v);
            };
            obj().dict_items(PairSink(pairs));
            return;
        }
        case Op::list_extend:
            obj().list_extend(f);
            return;
        case Op::list_at:
            obj().list_at(index, sink);
            return;
        case Op::list_set:
            need(1);
            obj().list_set(index, f[0]);
            return;
        case Op::list_insert:
            need(1);
            obj().list_insert(index, f[0]);
            return;
        case Op::list_pop:
            obj().list_pop(index, sink);
            return;
        case Op::list_items:
            obj().list_items(sink);
            return;
        case Op::list_cas: {
            need(2);
            auto rw = cas(true, f[0], f[1]);
            try {
                obj().list_rewrite(index, Rewriter(rw));
            } catch (const Conflict&) {
            }
            return;
        }
        case Op::value_set:
            need(1);
            obj().value_set(f[0]);
            return;
        case Op::value_get:
            obj().value_get(sink);
            return;
        case Op::value_cas: {
            need(2);
            auto rw = cas(index != 0, f[0], f[1]);
            try {
                obj().value_rewrite(Rewriter(rw));
            } catch (const Conflict&) {
            }
            return;
        }
        case Op::size:
            out.value(static_cast<std::uint64_t>(obj().size()));
            return;
        case Op::clear:
            obj().clear();
            return;
    }
    throw SerializationError("mproc remote manager: unknown operation " + std::to_string(static_cast<int>(op)));
}

void serve_connection(int raw_fd, SharedHeap heap, std::string authkey) {
    os::Fd fd(raw_fd);
    try {
        const auto deadline = os::Deadline::after(Duration(10));
        deliver_challenge(fd.get(), authkey, deadline);
        answer_challenge(fd.get(), authkey, deadline);
        std::vector<std::byte> in;
        ReplyWriter out;
        while (read_frame(fd.get(), in, os::Deadline::never())) {
            out.reset();
            try {
                FrameReader r(in);
                handle(heap, r, out, fd.get());
            } catch (const ClientGone&) {
                return;
            } catch (const KeyError& e) {
                out.error(Status::key_error, e.what());
            } catch (const IndexError& e) {
                out.error(Status::index_error, e.what());
            } catch (const ValueError& e) {
                out.error(Status::value_error, e.what());
            } catch (const SerializationError& e) {
                out.error(Status::serialization_error, e.what());
            } catch (const TimeoutError& e) {
                out.error(Status::timeout_error, e.what());
            } catch (const std::exception& e) {
                out.error(Status::error, e.what());
            }
            if (!os::send_all(fd.get(), out.finish())) return;
        }
    } catch (...) {
        // A client that fails authentication or sends garbage loses only
        // its own connection.
    }
}

}  // namespace

/// The server process: listens, reports its address, serves each client
/// on a thread, and exits when the manager's process does.
void manager_server_main(SharedHeap heap, std::string address, std::string authkey, long parent,
                         Connection<std::string> reply) {
    // terminate() must end the server whatever handler the program had;
    // Ctrl-C goes to the program, which shuts the server down (as Python's).
    ::signal(SIGTERM, SIG_DFL);
    ::signal(SIGINT, SIG_IGN);
    os::Fd parent_fd;
    try {
        parent_fd = os::pidfd_open(static_cast<pid_t>(parent));
    } catch (const std::exception&) {
        return;  // the manager is already gone
    }
    os::Fd listener;
    try {
        auto [fd, bound] = os::tcp_listen(address);
        listener = std::move(fd);
        reply.send(bound);
    } catch (const std::exception& e) {
        reply.send(std::string("!") + e.what());
        return;
    }
    for (;;) {
        pollfd ps[2] = {{listener.get(), POLLIN, 0}, {parent_fd.get(), POLLIN, 0}};
        if (::poll(ps, 2, -1) < 0) continue;
        if (ps[1].revents) std::_Exit(0);  // the manager's process ended
        if (ps[0].revents & POLLIN) {
            os::Fd c = os::tcp_accept(listener.get());
            if (c) std::thread(serve_connection, c.release(), heap, authkey).detach();
        }
    }
}

struct ManagerServer::Impl {
    Process proc;
    pid_t owner;
};

ManagerServer::ManagerServer(const SharedHeap& heap, const std::string& address, const std::string& authkey) {
    auto [ours, theirs] = Pipe<std::string>(false);
    impl_ = std::make_unique<Impl>(Impl{Process(manager_server_main, heap, address, authkey,
                                                static_cast<long>(os::pid()), theirs),
                                        os::pid()});
    impl_->proc.daemon(true).name("mproc-manager-server").start();
    std::string got;
    try {
        got = ours.recv(Duration(30));
    } catch (const std::exception& e) {
        stop();
        throw Error(std::string("mproc::Manager::serve: the server process did not start: ") + e.what());
    }
    if (!got.empty() && got[0] == '!') {
        stop();
        throw Error("mproc::Manager::serve(\"" + address + "\"): " + got.substr(1));
    }
    address_ = got;
}

ManagerServer::~ManagerServer() { stop(); }

void ManagerServer::stop() {
    if (!impl_) return;
    if (impl_->owner != os::pid()) {
        // A forked child's copy: the server belongs to the parent.
        (void)impl_.release();
        return;
    }
    Process& p = impl_->proc;
    if (p.is_alive()) {
        p.terminate();
        if (!p.join(Duration(5))) {
            p.kill();
            p.join();
        }
    } else {
        p.join(Duration(0));
    }
    impl_.reset();
}

// ---- client ------------------------------------------------------------------------

class RemoteLink {
public:
    RemoteLink(std::string address, std::string authkey, Duration timeout)
        : address_(std::move(address)), authkey_(std::move(authkey)), timeout_(timeout) {
        connect();
    }

    struct Reply {
        Status status = Status::ok;
        std::vector<std::byte> buf;
        std::vector<Bytes> fields;
    };

    /// Sends a request and returns the reply; server-side errors are
    /// re-thrown here as the same mproc error types.
    Reply call(FrameWriter& request) {
        Reply r;
        {
            std::lock_guard<std::mutex> g(mu_);
            // A forked child must not share its parent's connection.
            if (pid_ != os::pid()) connect();
            if (!os::send_all(fd_.get(), request.finish()) || !read_frame(fd_.get(), r.buf, os::Deadline::never()))
                throw EOFError("mproc: the remote manager at " + address_ +
                               " closed the connection (it was shut down, or its process died)");
        }
        FrameReader in(r.buf);
        r.status = static_cast<Status>(in.get<std::uint8_t>());
        const auto n = in.get<std::uint32_t>();
        for (std::uint32_t i = 0; i < n; ++i) r.fields.push_back(in.field());
        if (static_cast<int>(r.status) >= static_cast<int>(Status::error)) {
            const std::string what = r.fields.empty() ? "remote manager error" : as_string(r.fields[0]);
            switch (r.status) {
                case Status::key_error: throw KeyError(what);
                case Status::index_error: throw IndexError(what);
                case Status::value_error: throw ValueError(what);
                case Status::serialization_error: throw SerializationError(what);
                case Status::timeout_error: throw TimeoutError(what);
                default: throw Error(what);
            }
        }
        return r;
    }

private:
    void connect() {
        const auto deadline = os::Deadline::after(timeout_);
        os::Fd fd = os::tcp_connect(address_, deadline);
        answer_challenge(fd.get(), authkey_, deadline);
        deliver_challenge(fd.get(), authkey_, deadline);
        fd_ = std::move(fd);
        pid_ = os::pid();
    }

    std::mutex mu_;
    std::string address_;
    std::string authkey_;
    Duration timeout_;
    os::Fd fd_;
    pid_t pid_ = 0;
};

RemoteLinkPtr remote_connect(const std::string& address, const std::string& authkey, Duration timeout) {
    return std::make_shared<RemoteLink>(address, authkey, timeout);
}

namespace {

FrameWriter request(Op op, std::uint64_t off, ObjectKind kind, std::uint64_t tag, std::int64_t index,
                    std::span<const Bytes> fields) {
    FrameWriter w;
    w.put(static_cast<std::uint8_t>(op));
    w.put(off);
    w.put(static_cast<std::uint32_t>(kind));
    w.put(tag);
    w.put(index);
    w.put(static_cast<std::uint32_t>(fields.size()));
    for (Bytes b : fields) w.field(b);
    return w;
}

std::uint64_t u64_field(const RemoteLink::Reply& r) {
    std::uint64_t v = 0;
    if (r.fields.empty() || r.fields[0].size() != sizeof v)
        throw SerializationError("mproc remote manager: a malformed reply");
    std::memcpy(&v, r.fields[0].data(), sizeof v);
    return v;
}

const Bytes& first(const RemoteLink::Reply& r) {
    if (r.fields.empty()) throw SerializationError("mproc remote manager: a reply is missing its value");
    return r.fields[0];
}

}  // namespace

SharedObject RemoteOps::make(RemoteLinkPtr link, std::uint64_t off, ObjectKind kind, std::uint64_t tag) {
    SharedObject o(nullptr, off, kind, tag);
    o.link_ = std::move(link);
    return o;
}

SharedObject SharedObject::create(const RemoteLinkPtr& link, ObjectKind kind, std::uint64_t type_tag,
                                  std::uint64_t maxsize) {
    auto w = request(Op::create, 0, kind, type_tag, static_cast<std::int64_t>(maxsize), {});
    return RemoteOps::make(link, u64_field(link->call(w)), kind, type_tag);
}

SharedObject SharedObject::lookup(const RemoteLinkPtr& link, const std::string& name, ObjectKind kind,
                                  std::uint64_t type_tag) {
    const Bytes f[] = {key_bytes(name)};
    auto w = request(Op::lookup, 0, kind, type_tag, 0, f);
    return RemoteOps::make(link, u64_field(link->call(w)), kind, type_tag);
}

namespace {
struct Call {
    const SharedObject& o;
    RemoteLink& link;
    std::uint64_t off;
    ObjectKind kind;
    std::uint64_t tag;
    RemoteLink::Reply operator()(Op op, std::int64_t index, std::span<const Bytes> fields) const {
        auto w = request(op, off, kind, tag, index, fields);
        return link.call(w);
    }
    RemoteLink::Reply operator()(Op op, std::int64_t index, std::initializer_list<Bytes> fields) const {
        return (*this)(op, index, std::span<const Bytes>(fields.begin(), fields.size()));
    }
};
}  // namespace

#define MPROC_REMOTE_CALL(o) Call{o, *o.link_, o.off_, o.kind_, o.tag_}

void RemoteOps::dict_set(const SharedObject& o, Bytes key, Bytes value) {
    MPROC_REMOTE_CALL(o)(Op::dict_set, 0, {key, value});
}

void RemoteOps::dict_set_many(const SharedObject& o, std::span<const Bytes> keys, std::span<const Bytes> values) {
    std::vector<Bytes> f;
    for (std::size_t i = 0; i < keys.size(); ++i) {
        f.push_back(keys[i]);
        f.push_back(values[i]);
    }
    MPROC_REMOTE_CALL(o)(Op::dict_set_many, 0, f);
}

bool RemoteOps::dict_get(const SharedObject& o, Bytes key, BytesSink sink) {
    auto r = MPROC_REMOTE_CALL(o)(Op::dict_get, 0, {key});
    if (r.status == Status::absent) return false;
    sink(first(r));
    return true;
}

bool RemoteOps::dict_erase(const SharedObject& o, Bytes key, const BytesSink* sink) {
    auto r = MPROC_REMOTE_CALL(o)(Op::dict_erase, sink ? 1 : 0, {key});
    if (r.status == Status::absent) return false;
    if (sink) (*sink)(first(r));
    return true;
}

bool RemoteOps::dict_insert(const SharedObject& o, Bytes key, Bytes value) {
    return MPROC_REMOTE_CALL(o)(Op::dict_insert, 0, {key, value}).status == Status::ok;
}

namespace {
/// Compare-and-swap with retries: the server applies `next` only if the
/// value is still the one it was computed from.
template <class Get, class Cas>
void rewrite_loop(Get get, Cas cas, Rewriter rewrite) {
    std::optional<std::vector<std::byte>> cur = get();
    for (;;) {
        Bytes now;
        if (cur) now = *cur;
        const Bytes next = rewrite(cur ? &now : nullptr);
        RemoteLink::Reply r = cas(cur.has_value(), now, next);
        if (r.status != Status::conflict) return;
        if (r.fields.empty()) cur.reset();
        else cur.emplace(r.fields[0].begin(), r.fields[0].end());
    }
}
}  // namespace

void RemoteOps::dict_rewrite(const SharedObject& o, Bytes key, Rewriter rewrite) {
    const Call call = MPROC_REMOTE_CALL(o);
    rewrite_loop(
        [&]() -> std::optional<std::vector<std::byte>> {
            auto r = call(Op::dict_get, 0, {key});
            if (r.status == Status::absent) return std::nullopt;
            const Bytes& b = first(r);
            return std::vector<std::byte>(b.begin(), b.end());
        },
        [&](bool present, Bytes expected, Bytes next) { return call(Op::dict_cas, present ? 1 : 0, {key, expected, next}); },
        rewrite);
}

void RemoteOps::dict_items(const SharedObject& o, PairSink sink) {
    auto r = MPROC_REMOTE_CALL(o)(Op::dict_items, 0, {});
    for (std::size_t i = 0; i + 1 < r.fields.size(); i += 2) sink(r.fields[i], r.fields[i + 1]);
}

void RemoteOps::list_extend(const SharedObject& o, std::span<const Bytes> values) {
    MPROC_REMOTE_CALL(o)(Op::list_extend, 0, values);
}

void RemoteOps::list_at(const SharedObject& o, std::int64_t index, BytesSink sink) {
    sink(first(MPROC_REMOTE_CALL(o)(Op::list_at, index, {})));
}

void RemoteOps::list_set(const SharedObject& o, std::int64_t index, Bytes value) {
    MPROC_REMOTE_CALL(o)(Op::list_set, index, {value});
}

void RemoteOps::list_rewrite(const SharedObject& o, std::int64_t index, Rewriter rewrite) {
    const Call call = MPROC_REMOTE_CALL(o);
    rewrite_loop(
        [&]() -> std::optional<std::vector<std::byte>> {
            auto r = call(Op::list_at, index, {});
            const Bytes& b = first(r);
            return std::vector<std::byte>(b.begin(), b.end());
        },
        [&](bool, Bytes expected, Bytes next) { return call(Op::list_cas, index, {expected, next}); }, rewrite);
}

void RemoteOps::list_insert(const SharedObject& o, std::int64_t index, Bytes value) {
    MPROC_REMOTE_CALL(o)(Op::list_insert, index, {value});
}

void RemoteOps::list_pop(const SharedObject& o, std::int64_t index, BytesSink sink) {
    sink(first(MPROC_REMOTE_CALL(o)(Op::list_pop, index, {})));
}

void RemoteOps::list_items(const SharedObject& o, BytesSink sink) {
    auto r = MPROC_REMOTE_CALL(o)(Op::list_items, 0, {});
    for (Bytes b : r.fields) sink(b);
}

void RemoteOps::value_set(const SharedObject& o, Bytes value) {
    MPROC_REMOTE_CALL(o)(Op::value_set, 0, {value});
}

void RemoteOps::value_get(const SharedObject& o, BytesSink sink) {
    sink(first(MPROC_REMOTE_CALL(o)(Op::value_get, 0, {})));
}

void RemoteOps::value_rewrite(const SharedObject& o, Rewriter rewrite) {
    const Call call = MPROC_REMOTE_CALL(o);
    rewrite_loop(
        [&]() -> std::optional<std::vector<std::byte>> {
            auto r = call(Op::value_get, 0, {});
            const Bytes& b = first(r);
            return std::vector<std::byte>(b.begin(), b.end());
        },
        [&](bool present, Bytes expected, Bytes next) { return call(Op::value_cas, present ? 1 : 0, {expected, next}); },
        rewrite);
}

bool RemoteOps::queue_put(const SharedObject& o, Bytes value, Timeout timeout) {
    return MPROC_REMOTE_CALL(o)(Op::queue_put, timeout_ns(timeout), {value}).status == Status::ok;
}

bool RemoteOps::queue_get(const SharedObject& o, BytesSink sink, Timeout timeout) {
    auto r = MPROC_REMOTE_CALL(o)(Op::queue_get, timeout_ns(timeout), {});
    if (r.status == Status::absent) return false;
    sink(first(r));
    return true;
}

void RemoteOps::queue_task_done(const SharedObject& o) { MPROC_REMOTE_CALL(o)(Op::queue_task_done, 0, {}); }

bool RemoteOps::queue_join(const SharedObject& o, Timeout timeout) {
    return MPROC_REMOTE_CALL(o)(Op::queue_join, timeout_ns(timeout), {}).status == Status::ok;
}

std::size_t RemoteOps::queue_maxsize(const SharedObject& o) {
    return static_cast<std::size_t>(u64_field(MPROC_REMOTE_CALL(o)(Op::queue_maxsize, 0, {})));
}

std::size_t RemoteOps::size(const SharedObject& o) {
    return static_cast<std::size_t>(u64_field(MPROC_REMOTE_CALL(o)(Op::size, 0, {})));
}

void RemoteOps::clear(const SharedObject& o) { MPROC_REMOTE_CALL(o)(Op::clear, 0, {}); }

void RemoteOps::publish(const SharedObject& o, const std::string& name) {
    MPROC_REMOTE_CALL(o)(Op::publish, 0, {key_bytes(name)});
}

#undef MPROC_REMOTE_CALL

}  // namespace mproc::detail
