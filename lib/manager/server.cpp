// The remote manager's server process: accepts clients, authenticates
// them, and serves each connection on a thread of its own by running the
// local implementation of every request (the dispatch for each row of the
// operation table is generated from its signature).
//
// Hostile clients cost only their own connection:
//   - before a client has proven its key, it is a few hundred bytes of
//     handshake state in the watcher thread (the channel layer's non-blocking
//     Handshake: frames of at most 256 bytes), no thread; after, a frame's
//     buffer grows only as its bytes arrive (wire.hpp);
//   - every request is decoded with bounds checks and names its object by
//     id: the id is resolved through the heap's directory and the object's
//     kind checked against the operation's row before anything is touched;
//     any failure is an error reply to that client;
//   - at most ServeLimits::max_connections connections (capped below the
//     process's fd limit): past it a client is told so and closed; at most
//     max_authenticating still proving their key (the oldest is dropped for
//     a newcomer), each closed when its handshake_timeout passes;
//   - a client that hangs up while its thread waits (a Queue get, an Event
//     wait, ...) has that wait cancelled at once (the watcher sees the
//     hang-up), so it takes nothing nobody will receive. A thread blocked
//     acquiring a Lock for a vanished client (the kernel's wait, which
//     nothing but the holder can end) gets it when it is released, and
//     lets it go as it ends: the next holder is told its owner died.
#include "manager/server.hpp"

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "channel/auth.hpp"
#include "manager/ops_impl.hpp"
#include "mproc/errors.hpp"
#include "mproc/pipe.hpp"
#include "mproc/process.hpp"
#include "os/os.hpp"
#include "os/process.hpp"
#include "os/socket.hpp"

namespace mproc::detail {

namespace server {

namespace {

using mgr::Target;
using mwire::DecodeScratch;
using mwire::FrameBuilder;
using mwire::FrameReader;

template <class T>
T decode_arg(FrameReader& in, DecodeScratch& s, const mop::Sink& sink) {
    if constexpr (mwire::Codec<T>::sent) return mwire::Codec<T>::decode(in, s);
    else return sink;
}

template <class Tuple>
struct ArgsDecoder;
template <class... A>
struct ArgsDecoder<std::tuple<A...>> {
    static std::tuple<A...> decode(FrameReader& in, DecodeScratch& s, const mop::Sink& sink) {
        return std::tuple<A...>{decode_arg<A>(in, s, sink)...};  // braces: left to right
    }
};

template <class R>
void put_result(FrameBuilder& f, std::size_t at, const R& v) {
    if constexpr (std::is_same_v<R, bool>) f.patch(at, static_cast<std::uint8_t>(v));
    else f.patch(at, v);
}
template <class R>
constexpr std::size_t result_size = std::is_same_v<R, bool> ? 1 : sizeof(R);

/// Row O's dispatch: decode its arguments (its Sink adds reply fields),
/// run its local implementation, encode its result.
template <class O>
void serve_thunk(const Target& t, FrameReader& in, FrameBuilder& out, DecodeScratch& s) {
    using R = typename O::Result;
    auto add_field = [&](mwire::Bytes b) { out.bytes(b); };
    const mop::Sink sink(add_field);
    typename O::Args args = ArgsDecoder<typename O::Args>::decode(in, s, sink);
    in.expect_end();
    std::size_t at = 0;
    if constexpr (!std::is_void_v<R>) at = out.reserve(result_size<R>);
    R* none = nullptr;
    if constexpr (std::is_void_v<R>) {
        mgr::run_local<O>(t, args, none);
    } else {
        R result{};
        mgr::run_local<O>(t, args, &result);
        put_result(out, at, result);
    }
}

using ServeThunk = void (*)(const Target&, FrameReader&, FrameBuilder&, DecodeScratch&);

constexpr ServeThunk kServe[] = {
#define MPROC_MANAGER_OP_SERVE(name, kinds, signature) &serve_thunk<mop::op::name>,
    MPROC_MANAGER_OPS(MPROC_MANAGER_OP_SERVE)
#undef MPROC_MANAGER_OP_SERVE
};


void error_reply(FrameBuilder& f, std::uint8_t status) {
    f.restart();
    f.put(status);
    mwire::encode_current_error(f);
}

}  // namespace

void serve_request(const SharedHeap& heap, mwire::Bytes body, std::vector<std::byte>& out, DecodeScratch& scratch,
                   bool& quiet_failed) {
    const std::size_t start = out.size();
    bool quiet = false;
    FrameBuilder f(out);
    f.put(std::uint8_t{0});
    try {
        FrameReader in(body);
        auto op = in.get<std::uint8_t>();
        // Only a store may be quiet; any other op byte is answered (an
        // unknown operation, with the flag or without).
        const auto unflagged = static_cast<std::uint8_t>(op & ~mwire::kQuiet);
        if ((op & mwire::kQuiet) && unflagged < mop::kOpCount && mwire::may_be_quiet(static_cast<mop::OpId>(unflagged))) {
            quiet = true;
            op = unflagged;
        }
        if (op >= mop::kOpCount) FrameReader::malformed("names an unknown operation");
        const auto id = in.get<mop::ObjectId>();
        const mgr::Heap h(*heap.segment());
        const Target t{h, mgr::object_of(h, id, mop::op_kinds(static_cast<mop::OpId>(op))), heap.segment()};
        scratch.reset();
        kServe[op](t, in, f, scratch);
    } catch (const mgr::WaitCancelled&) {
        out.resize(start);
        throw;
    } catch (...) {
        error_reply(f, quiet ? mwire::kQuietFailed : std::uint8_t{1});
    }
    if (quiet) {
        // Answered only by its failure, and only by the first of a run, so
        // a client sending nothing but quiet requests has at most one
        // frame waiting for it (it and this thread never both block
        // writing).
        const bool failed = out[start + 4] == std::byte{mwire::kQuietFailed};
        if (!failed || quiet_failed) {
            out.resize(start);
            return;
        }
        quiet_failed = true;
    } else {
        quiet_failed = false;
    }
    try {
        f.finish();
    } catch (...) {  // a reply over the frame limit
        error_reply(f, quiet ? mwire::kQuietFailed : std::uint8_t{1});
        f.finish();
    }
}

namespace {

/// An authenticated client connection, served by a thread of its own.
struct Conn {
    os::Fd fd;
    bool hangup_seen = false;  // the watcher's own
    mgr::WaitContext wait;
};

/// A connection still proving its key: the watcher drives its handshake
/// (non-blocking), so it costs no thread and a few hundred bytes.
struct Pending {
    os::Fd fd;
    std::unique_ptr<Handshake> handshake;
    os::Deadline deadline;
};

class Server {
public:
    Server(SharedHeap heap, std::string authkey, ServeLimits limits)
        : heap_(std::move(heap)), authkey_(std::move(authkey)), limits_(limits) {
        const std::size_t fds = os::raise_fd_limit();
        // Room for the listener, the heap, the wake pair and what a thread
        // might open; the rest is for clients.
        limits_.max_connections = std::max<std::size_t>(1, std::min(limits_.max_connections, fds > 80 ? fds - 64 : 16));
        limits_.max_authenticating = std::max<std::size_t>(1, limits_.max_authenticating);
        std::tie(wake_r_, wake_w_) = os::socket_pair(os::SocketKind::stream);
        spare_ = os::open_devnull();
    }

    /// Watches the listener, the manager's process, the connections still
    /// authenticating (until their deadlines), and every authenticated one
    /// for hang-ups; never returns.
    [[noreturn]] void run(int listener, int parent) {
        for (;;) {
            std::vector<os::PollWant> wants{{listener, false}, {parent, false}, {wake_r_.get(), false}};
            os::Deadline next = os::Deadline::never();
            for (const Pending& p : pending_) {
                wants.push_back({p.fd.get(), false});
                if (next.is_never() || p.deadline.remaining() < next.remaining()) next = p.deadline;
            }
            std::vector<std::shared_ptr<Conn>> watched;
            {
                std::lock_guard<std::mutex> g(mu_);
                for (const auto& c : conns_)
                    if (!c->hangup_seen) {
                        wants.push_back({c->fd.get(), true});
                        watched.push_back(c);
                    }
            }
            const std::size_t first_conn = 3 + pending_.size();
            std::vector<bool> done(pending_.size());
            for (std::size_t i : os::poll_wants(wants, next)) {
                if (i == 0) {
                    accept_one(listener);
                } else if (i == 1) {
                    std::_Exit(0);  // the manager's process ended
                } else if (i == 2) {
                    (void)os::wait_and_drain(wake_r_.get(), os::Deadline::after(Duration(0)));
                } else if (i < first_conn) {
                    done[i - 3] = step(pending_[i - 3]);
                } else {
                    Conn& c = *watched[i - first_conn];
                    c.hangup_seen = true;
                    c.wait.cancel();  // its wait, if any, ends now
                }
            }
            // Authenticated, failed, or out of time: off the pending list.
            std::size_t k = 0;
            for (std::size_t i = 0; i < pending_.size(); ++i) {
                if (i < done.size() && done[i]) continue;
                if (pending_[i].fd && pending_[i].deadline.expired()) continue;  // idle too long: closed
                if (k != i) pending_[k] = std::move(pending_[i]);
                ++k;
            }
            pending_.resize(k);
        }
    }

private:
    void accept_one(int listener) {
        int err = 0;
        os::Fd fd = os::accept_stream(listener, nullptr, &err);
        if (!fd) {
            if (err == EMFILE || err == ENFILE) {
                // Out of fds: use the spare to take the connection off the
                // backlog and close it, rather than see it ready forever.
                spare_.reset();
                os::Fd dropped = os::accept_stream(listener, nullptr, &err);
                if (dropped) mwire::send_busy(dropped.get());
                dropped.reset();
                try {
                    spare_ = os::open_devnull();
                } catch (const std::exception&) {
                }
            }
            return;
        }
        std::size_t served;
        {
            std::lock_guard<std::mutex> g(mu_);
            served = conns_.size();
        }
        if (served + pending_.size() >= limits_.max_connections) {
            mwire::send_busy(fd.get());
            return;  // closed as it goes out of scope
        }
        if (pending_.size() >= limits_.max_authenticating) pending_.erase(pending_.begin());  // the oldest makes room
        try {
            auto hs = std::make_unique<Handshake>(fd.get(), authkey_, AuthRole::server);  // sends the challenge
            pending_.push_back(Pending{std::move(fd), std::move(hs), os::Deadline::after(limits_.handshake_timeout)});
        } catch (const std::exception&) {
            // The peer is gone already.
        }
    }

    /// Takes the steps of p's handshake that have arrived; true when it is
    /// over (then p's fd has moved on to a serving thread, or is closed).
    bool step(Pending& p) {
        try {
            if (!p.handshake->advance()) return false;
        } catch (const std::exception&) {
            return true;  // a wrong key, garbage, or a hang-up: closed
        }
        auto c = std::make_shared<Conn>();
        c->fd = std::move(p.fd);
        {
            std::lock_guard<std::mutex> g(mu_);
            conns_.push_back(c);
        }
        try {
            std::thread([this, c] { serve(c); }).detach();
        } catch (const std::exception&) {
            remove(c);
        }
        return true;
    }

    void serve(const std::shared_ptr<Conn>& c) {
        mgr::WaitContext::install(&c->wait);
        const int fd = c->fd.get();
        try {
            mwire::FrameStream in(mwire::kMaxFrame);
            std::vector<std::byte> out;
            DecodeScratch scratch;
            bool quiet_failed = false;
            for (;;) {
                const std::optional<mwire::Bytes> request = in.next(fd, os::Deadline::never());
                if (!request) break;
                serve_request(heap_, *request, out, scratch, quiet_failed);
                // Requests that arrived together are answered with one write.
                if (!out.empty() && (!in.has_frame() || out.size() >= (std::size_t{1} << 20))) {
                    if (!os::send_all(fd, out)) break;
                    out.clear();
                }
            }
        } catch (...) {
            // An oversized frame, a vanished client: this connection ends;
            // nothing else does.
        }
        // Ending this thread releases any Lock it holds for the client; the
        // next acquirer learns that its owner died.
        remove(c);
    }

    void remove(const std::shared_ptr<Conn>& c) {
        {
            std::lock_guard<std::mutex> g(mu_);
            conns_.erase(std::remove(conns_.begin(), conns_.end(), c), conns_.end());
        }
        changed();
    }

    void changed() noexcept { os::send_wake(wake_w_.get()); }

    SharedHeap heap_;
    std::string authkey_;
    ServeLimits limits_;
    std::vector<Pending> pending_;  // the watcher's own, in arrival order
    std::mutex mu_;
    std::vector<std::shared_ptr<Conn>> conns_;
    os::Fd wake_r_, wake_w_;
    os::Fd spare_;
};

}  // namespace
}  // namespace server

/// The server process: listens, reports its address, and serves until the
/// manager's process ends (or it is terminated).
void manager_server_main(SharedHeap heap, std::string address, std::string authkey, long parent,
                         ServeLimits limits, Connection<std::string> reply) {
    // terminate() must end the server whatever handler the program had;
    // Ctrl-C goes to the program, which shuts the server down (as Python's).
    os::ignore_signal(SIGTERM, false);
    os::ignore_signal(SIGINT, true);
    os::ignore_signal(SIGPIPE, true);
    os::Fd parent_fd;
    try {
        parent_fd = os::pidfd_open(static_cast<pid_t>(parent));
    } catch (const std::exception&) {
        return;  // the manager is already gone
    }
    os::Fd listener;
    try {
        auto [fd, bound] = os::listen_stream(address, 4096);  // room for bursts of clients
        listener = std::move(fd);
        reply.send(bound);
    } catch (const std::exception& e) {
        reply.send(std::string("!") + e.what());
        return;
    }
    static server::Server* srv = new server::Server(std::move(heap), std::move(authkey), limits);  // lives until _Exit
    srv->run(listener.get(), parent_fd.get());
}

struct ManagerServer::Impl {
    Process proc;
    pid_t owner;
    /// A unix socket path's file, removed when the server stops (the server
    /// process ends by a signal and cannot).
    std::optional<os::FileId> socket_file{};
};

ManagerServer::ManagerServer(const SharedHeap& heap, const std::string& address, const std::string& authkey,
                             const ServeLimits& limits) {
    auto [ours, theirs] = Pipe<std::string>(false);
    impl_ = std::make_unique<Impl>(Impl{Process(manager_server_main, heap, address, authkey,
                                                static_cast<long>(os::pid()), limits, theirs),
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
    if (os::is_socket_path(got)) impl_->socket_file = os::path_file_id(got);
}

ManagerServer::~ManagerServer() { stop(); }

long ManagerServer::pid() const noexcept {
    return impl_ ? static_cast<long>(impl_->proc.pid().value_or(0)) : 0;
}

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
    if (impl_->socket_file) os::remove_socket_file(address_, *impl_->socket_file);
    impl_.reset();
}

}  // namespace mproc::detail
