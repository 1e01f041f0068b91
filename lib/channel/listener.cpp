// Listener and Client. See include/mproc/connection.hpp.
//
// accept() keeps the clients that are still authenticating in a list of
// pending handshakes and drives them all from one poll(2): a client that
// stalls delays nobody, one that misbehaves fails alone, and each costs a
// socket and a fixed-size frame buffer (at most max_pending of them).
#include "mproc/connection.hpp"

#include <mutex>
#include <vector>

#include "channel/auth.hpp"
#include "channel/transport.hpp"
#include "os/os.hpp"
#include "os/socket.hpp"

namespace mproc {

namespace {

const os::Deadline& earlier(const os::Deadline& a, const os::Deadline& b) {
    if (a.is_never()) return b;
    if (b.is_never()) return a;
    return *a.remaining() <= *b.remaining() ? a : b;
}

std::shared_ptr<detail::ConnectionEnd> end_on(os::Fd fd) {
    return std::make_shared<detail::ConnectionEnd>(detail::make_stream(fd.release()));
}

std::optional<std::string> key_or_none(std::optional<std::string> k) {
    if (k && k->empty()) return std::nullopt;
    return k;
}

}  // namespace

struct Listener::Impl {
    struct Pending {
        os::Fd fd;
        std::string peer;
        detail::Handshake handshake;
        os::Deadline expires;
    };

    os::Fd fd;
    std::string address;
    std::optional<std::string> authkey;
    ListenerOptions options;
    std::optional<os::FileId> socket_file;  // the unix socket file this process made
    pid_t owner = 0;
    std::optional<std::string> last;
    std::vector<Pending> pending;
    std::mutex mu;

    void close() noexcept {
        pending.clear();
        fd.reset();
        if (socket_file && os::pid() == owner) os::remove_socket_file(address, *socket_file);
        socket_file.reset();
    }

    std::string who(const std::string& peer) const {
        return peer.empty() ? "a client of " + address : "client " + peer;
    }

    std::shared_ptr<detail::ConnectionEnd> accept(Timeout timeout);
};

Listener::Listener(const std::string& address, std::optional<std::string> authkey, ListenerOptions options)
    : impl_(std::make_unique<Impl>()) {
    if (options.max_pending == 0) throw ValueError("Listener: max_pending must be at least 1");
    auto [fd, bound] = os::listen_stream(address, options.backlog);
    impl_->fd = std::move(fd);
    impl_->address = std::move(bound);
    impl_->authkey = key_or_none(std::move(authkey));
    impl_->options = options;
    impl_->owner = os::pid();
    if (os::is_socket_path(address)) impl_->socket_file = os::path_file_id(address);
}

Listener::~Listener() {
    if (impl_) impl_->close();
}

Listener::Listener(Listener&&) noexcept = default;

Listener& Listener::operator=(Listener&& o) noexcept {
    if (this != &o) {
        if (impl_) impl_->close();
        impl_ = std::move(o.impl_);
    }
    return *this;
}

const std::string& Listener::address() const noexcept {
    static const std::string none;
    return impl_ ? impl_->address : none;
}

std::optional<std::string> Listener::last_accepted() const {
    if (!impl_) return std::nullopt;
    std::lock_guard<std::mutex> g(impl_->mu);
    return impl_->last;
}

void Listener::close() {
    if (!impl_) return;
    std::lock_guard<std::mutex> g(impl_->mu);
    impl_->close();
}

bool Listener::closed() const noexcept { return !impl_ || !impl_->fd; }

std::shared_ptr<detail::ConnectionEnd> Listener::accept_end(Timeout timeout) {
    if (!impl_) throw ValueError("Listener is closed");
    std::lock_guard<std::mutex> g(impl_->mu);
    return impl_->accept(timeout);
}

std::shared_ptr<detail::ConnectionEnd> Listener::Impl::accept(Timeout timeout) {
    if (!fd) throw ValueError("Listener is closed");
    const os::Deadline deadline = os::Deadline::after(timeout);
    for (;;) {
        // New clients, while there is room to authenticate them.
        while (pending.size() < options.max_pending) {
            std::string peer;
            os::Fd c = os::accept_stream(fd.get(), &peer);
            if (!c) break;
            last = peer;
            if (!authkey) return end_on(std::move(c));
            try {
                const int raw = c.get();
                pending.push_back(Pending{std::move(c), peer, detail::Handshake(raw, *authkey, detail::AuthRole::server),
                                          os::Deadline::after(options.auth_timeout)});
            } catch (const AuthenticationError& e) {
                throw AuthenticationError(std::string(e.what()) + " (" + who(peer) + ")");
            }
        }
        // Every handshake that can move on; the first to finish is returned,
        // the first to fail (or run out of time) is dropped and reported.
        for (std::size_t i = 0; i < pending.size(); ++i) {
            Pending& p = pending[i];
            bool done = false;
            std::string failure;
            try {
                done = p.handshake.advance();
            } catch (const AuthenticationError& e) {
                failure = e.what();
            }
            if (failure.empty() && !done && p.expires.expired())
                failure = "mproc authentication: no answer within " +
                          std::to_string(options.auth_timeout.count()) + " s";
            if (!done && failure.empty()) continue;
            os::Fd c = std::move(p.fd);
            const std::string peer = std::move(p.peer);
            pending.erase(pending.begin() + static_cast<std::ptrdiff_t>(i));
            last = peer;
            if (done) return end_on(std::move(c));
            throw AuthenticationError(failure + " (" + who(peer) + "; dropped)");
        }
        if (deadline.expired()) throw TimeoutError("Listener::accept(): timed out");
        // Sleep until the listener or a pending client has something, or
        // until the nearest of the deadline and the pending clients' limits.
        std::vector<int> fds;
        if (pending.size() < options.max_pending) fds.push_back(fd.get());
        const os::Deadline* wake = &deadline;
        for (const Pending& p : pending) {
            fds.push_back(p.fd.get());
            wake = &earlier(*wake, p.expires);
        }
        os::poll_readable(fds, *wake);
    }
}

namespace detail {

std::shared_ptr<ConnectionEnd> client_end(const std::string& address, const std::optional<std::string>& authkey,
                                          Timeout timeout) {
    const os::Deadline deadline = os::Deadline::after(timeout);
    os::Fd fd = os::connect_stream(address, deadline);
    if (authkey && !authkey->empty()) {
        try {
            authenticate(fd.get(), *authkey, AuthRole::client, deadline);
        } catch (const AuthenticationError& e) {
            throw AuthenticationError(std::string(e.what()) + " (Client(\"" + address + "\"))");
        }
    }
    return end_on(std::move(fd));
}

}  // namespace detail

}  // namespace mproc
