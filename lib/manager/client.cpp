// The remote backend: a connected Manager's proxies send each operation as
// one request and read one reply (wire.hpp), the stub for every row of the
// operation table generated from its signature.
//
// Connections: one per thread of each process, as Python's proxies keep
// one per thread. The server runs each connection's operations in a thread
// of its own, so a Lock acquired here is owned by this thread (and
// released for it when this thread, or process, goes away), and a thread
// blocked in a Queue get() does not hold up the others. A forked child
// opens its own connections (it never writes into its parent's).
#include <atomic>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "manager/wire.hpp"
#include "mproc/detail/manager_core.hpp"
#include "mproc/errors.hpp"
#include "os/socket.hpp"

namespace mproc::detail {

namespace {

/// One connection to the server, used by one thread.
struct Link {
    os::Fd fd;
    mwire::FrameStream in{mwire::kMaxFrame};
    std::vector<std::byte> out;
};

class RemoteBackend;

using RemoteThunk = void (*)(const RemoteBackend&, const ManagedObject&, void* args, void* result);

class RemoteBackend final : public Backend, public std::enable_shared_from_this<RemoteBackend> {
public:
    RemoteBackend(std::string address, std::string authkey, const ConnectOptions& options)
        : address_(std::move(address)), authkey_(std::move(authkey)), options_(options), serial_(next_serial()) {
        link();  // connect now: a wrong address or key fails here
    }

    void invoke(mop::OpId id, const ManagedObject& obj, void* args, void* result) const override;
    void modify(const ManagedObject& obj, const ModifySlot& slot, Rewriter rewrite) const override;
    void reorder(const ManagedObject& obj, Reorderer order) const override;
    std::uint64_t bind(mop::ObjectId, mop::Kind, std::uint64_t) const override { return 0; }
    void export_handle(const ManagedObject&, HandleWriter&) const override {
        throw ValueError("mproc::Manager: a proxy of a connected Manager cannot be passed to another process; "
                         "connect to the manager from that process instead");
    }

    /// Sends the request `link.out` holds and returns the reply's body
    /// after its status byte (errors re-thrown here). A failed quiet store
    /// sent before it answers first: its error is thrown instead.
    mwire::FrameReader call(Link& link) const;
    /// Sends the store `link.out` holds as a quiet request: no reply
    /// unless it fails (pipeline_stores).
    void send_store(Link& link) const;
    bool pipelines() const noexcept { return options_.pipeline_stores; }
    /// This thread's connection (made on first use).
    Link& link() const;
    void forget(pid_t tid) const;

private:
    static std::uint64_t next_serial() {
        static std::atomic<std::uint64_t> n{0};
        return ++n;
    }
    [[noreturn]] void gone() const {
        throw EOFError("mproc: the remote manager at " + address_ +
                       " closed the connection (it was shut down, or its process died)");
    }

    std::string address_;
    std::string authkey_;
    ConnectOptions options_;
    std::uint64_t serial_;
    mutable std::mutex mu_;
    mutable pid_t pid_ = 0;  // the process the links belong to
    mutable std::unordered_map<pid_t, std::unique_ptr<Link>> links_;
};

/// Per thread: the last backend used (skips the map on the hot path), and
/// every backend that holds a link for this thread, told when it exits.
struct ThreadLinks {
    std::uint64_t serial = 0;
    pid_t pid = 0;
    Link* link = nullptr;
    std::vector<std::weak_ptr<const RemoteBackend>> users;
    ~ThreadLinks() {
        for (auto& w : users)
            if (auto b = w.lock()) b->forget(os::tid());
    }
};
thread_local ThreadLinks t_links;

Link& RemoteBackend::link() const {
    if (t_links.serial == serial_ && t_links.pid == os::pid()) return *t_links.link;
    const pid_t tid = os::tid();
    Link* l = nullptr;
    {
        std::lock_guard<std::mutex> g(mu_);
        if (pid_ != os::pid()) {
            // A forked child: its parent's links are not its own. Their fds
            // are copies; closing them here leaves the parent's open.
            links_.clear();
            pid_ = os::pid();
        }
        if (auto it = links_.find(tid); it != links_.end()) l = it->second.get();
    }
    if (!l) {
        auto made = std::make_unique<Link>();
        const auto deadline = os::Deadline::after(options_.timeout);
        made->fd = os::connect_stream(address_, deadline);
        mwire::client_handshake(made->fd.get(), authkey_, deadline);
        l = made.get();
        std::lock_guard<std::mutex> g(mu_);
        links_[tid] = std::move(made);
        try {
            t_links.users.push_back(weak_from_this());
        } catch (const std::bad_weak_ptr&) {
        }
    }
    t_links.serial = serial_;
    t_links.pid = os::pid();
    t_links.link = l;
    return *l;
}

void RemoteBackend::forget(pid_t tid) const {
    std::lock_guard<std::mutex> g(mu_);
    if (pid_ == os::pid()) links_.erase(tid);
}

mwire::FrameReader RemoteBackend::call(Link& l) const {
    if (!os::send_all(l.fd.get(), l.out)) gone();
    // Replies come in order: a failed quiet store's first (the first
    // failure of those sent since the last reply; see wire.hpp), whose
    // error is this call's, then this request's.
    std::exception_ptr store_error;
    for (;;) {
        std::optional<Bytes> reply = l.in.next(l.fd.get(), os::Deadline::never());
        if (!reply) gone();
        mwire::FrameReader r(*reply);
        const auto status = r.get<std::uint8_t>();
        if (status == mwire::kQuietFailed) {
            if (store_error) mwire::FrameReader::malformed("reports two failed stores in one run");
            try {
                mwire::throw_error(r);
            } catch (...) {
                store_error = std::current_exception();
            }
            continue;
        }
        if (store_error) std::rethrow_exception(store_error);
        if (status != 0) mwire::throw_error(r);
        return r;
    }
}

void RemoteBackend::send_store(Link& l) const {
    l.out[4] = static_cast<std::byte>(static_cast<std::uint8_t>(l.out[4]) | mwire::kQuiet);
    if (!os::send_all(l.fd.get(), l.out)) gone();
}

/// Row O's client stub: encode the arguments, decode the result, hand
/// every field of the reply to the row's Sink.
template <class O>
void remote_thunk(const RemoteBackend& be, const ManagedObject& obj, void* a, void* result) {
    auto& args = *static_cast<typename O::Args*>(a);
    Link& l = be.link();
    l.out.clear();
    mwire::FrameBuilder f(l.out);
    mwire::encode_request<O>(f, obj.id(), args);
    f.finish();
    if constexpr (mwire::may_be_quiet(O::id)) {
        if (be.pipelines()) return be.send_store(l);
    }
    mwire::FrameReader r = be.call(l);
    using R = typename O::Result;
    if constexpr (!std::is_void_v<R>) {
        mwire::DecodeScratch none;
        *static_cast<R*>(result) = mwire::Codec<R>::decode(r, none);
    }
    const mop::Sink* sink = nullptr;
    std::apply(
        [&](const auto&... x) {
            (
                [&](const auto& v) {
                    if constexpr (std::is_same_v<std::remove_cvref_t<decltype(v)>, mop::Sink>) sink = &v;
                }(x),
                ...);
        },
        args);
    while (!r.empty()) {
        const Bytes field = r.bytes();
        if (!sink) mwire::FrameReader::malformed("carries values its operation does not return");
        (*sink)(field);
    }
}

constexpr RemoteThunk kRemote[] = {
#define MPROC_MANAGER_OP_REMOTE(name, kinds, signature) &remote_thunk<mop::op::name>,
    MPROC_MANAGER_OPS(MPROC_MANAGER_OP_REMOTE)
#undef MPROC_MANAGER_OP_REMOTE
};

void RemoteBackend::invoke(mop::OpId id, const ManagedObject& obj, void* args, void* result) const {
    kRemote[static_cast<std::size_t>(id)](*this, obj, args, result);
}

/// The value a Sink yields, copied out of the reply.
struct Copy {
    std::optional<std::vector<std::byte>>& out;
    void operator()(Bytes b) const { out.emplace(b.begin(), b.end()); }
};

// modify() over the wire: read the value, compute the new one here, and
// store it only if the value is still the one it was computed from
// (compare-and-swap); on a conflict, start again from the value now there.
void RemoteBackend::modify(const ManagedObject& obj, const ModifySlot& slot, Rewriter rewrite) const {
    std::optional<std::vector<std::byte>> cur;
    Copy copy{cur};
    const mop::Sink into(copy);
    switch (obj.kind()) {
        case mop::Kind::dict:
            detail::invoke<mop::op::dict_get>(obj, slot.key, into);
            break;
        case mop::Kind::list:
            detail::invoke<mop::op::list_get>(obj, slot.index, into);
            break;
        case mop::Kind::value:
            detail::invoke<mop::op::value_get>(obj, into);
            break;
        default:
            throw ValueError(std::string("mproc::Manager: a ") + mop::kind_name(obj.kind()) + " has no modify()");
    }
    for (;;) {
        const std::vector<std::byte> was = cur.value_or(std::vector<std::byte>{});
        const bool present = cur.has_value();
        const Bytes now(was);
        const Bytes next = rewrite(present ? &now : nullptr);
        cur.reset();
        bool swapped = false;
        switch (obj.kind()) {
            case mop::Kind::dict:
                swapped = detail::invoke<mop::op::dict_cas>(obj, slot.key, present, now, next, into);
                break;
            case mop::Kind::list:
                swapped = detail::invoke<mop::op::list_cas>(obj, slot.index, now, next, into);
                break;
            default:
                swapped = detail::invoke<mop::op::value_cas>(obj, present, now, next, into);
                break;
        }
        if (swapped) return;
    }
}

// sort() over the wire: a snapshot and its version, the order computed
// here, applied by the server only to that version.
void RemoteBackend::reorder(const ManagedObject& obj, Reorderer order) const {
    for (;;) {
        std::vector<std::vector<std::byte>> items;
        auto keep = [&](Bytes b) { items.emplace_back(b.begin(), b.end()); };
        const std::uint64_t version = detail::invoke<mop::op::list_items>(obj, mop::Sink(keep));
        std::vector<Bytes> views(items.begin(), items.end());
        std::vector<std::uint64_t> perm;
        order(views, perm);
        if (detail::invoke<mop::op::list_reorder>(obj, version, mop::U64List(perm))) return;
    }
}

}  // namespace

BackendPtr remote_backend(const std::string& address, const std::string& authkey, const ConnectOptions& options) {
    return std::make_shared<RemoteBackend>(address, authkey, options);
}

}  // namespace mproc::detail
