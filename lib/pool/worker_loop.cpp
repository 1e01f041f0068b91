// The one worker loop (see worker_transport.hpp): every transport's worker
// runs it. Take a task message, claim its chunk, decode the items straight
// from the message (still in the transport's buffer: the ring), release the
// message, run the items, send the outcomes, unclaim.
//
// Claiming before releasing is what makes a worker's death attributable:
// one killed before it claims leaves the message for another worker, one
// killed after leaves its claim naming the chunk.
#include <cstring>
#include <string>
#include <unordered_map>

#include "mproc/detail/pool_task.hpp"
#include "pool/messages.hpp"
#include "pool/worker_transport.hpp"

namespace mproc::detail {

namespace {

struct Resolved {
    TaskEntry entry = nullptr;
    AnyFunction fn = nullptr;
};

Resolved resolve(std::span<const std::byte> ref) {
    InBuf in(ref);
    Resolved r;
    r.entry = load_from<TaskEntry>(in);
    TaskCall call;
    call.op = TaskCall::Op::resolve;
    call.ref = &in;
    r.fn = r.entry(call);
    return r;
}

/// The function references this worker has seen (one per task type).
class RefCache {
public:
    const Resolved& get(std::span<const std::byte> ref) {
        if (ref.size() == last_key_.size() && std::memcmp(ref.data(), last_key_.data(), ref.size()) == 0)
            return last_;
        std::string key(reinterpret_cast<const char*>(ref.data()), ref.size());
        auto it = cache_.find(key);
        if (it == cache_.end()) it = cache_.emplace(key, resolve(ref)).first;
        last_ = it->second;
        last_key_ = std::move(key);
        return last_;
    }

private:
    std::unordered_map<std::string, Resolved> cache_;
    std::string last_key_;
    Resolved last_{};
};

void send_error(WorkerEndpoint& ep, std::uint64_t chunk, std::exception_ptr e) {
    VectorOutBuf out(256);
    ResultHeader rh{chunk, ResultKind::chunk_error};
    out.write(&rh, sizeof rh);
    encode_exception(out, e);
    ep.send_result(out.take());
}

}  // namespace

void run_worker_loop(WorkerEndpoint& ep, std::uint64_t maxtasks) {
    RefCache refs;
    std::uint64_t done = 0;
    for (;;) {
        std::span<const std::byte> b = ep.receive_task();
        if (b.empty()) return;
        TaskHeader h;
        if (b.size() < sizeof h) {
            ep.release_task();
            continue;
        }
        std::memcpy(&h, b.data(), sizeof h);
        if (h.chunk == 0) {
            ep.release_task();
            return;
        }
        ep.claim(h.chunk);
        if (b.size() < sizeof h + h.ref_size) {
            ep.release_task();
            send_error(ep, h.chunk, std::make_exception_ptr(SerializationError("mproc pool: a task message is truncated")));
            ep.unclaim();
            continue;
        }
        TaskCall call;
        Resolved task;
        std::exception_ptr error;
        try {
            task = refs.get(b.subspan(sizeof h, h.ref_size));
            call.op = TaskCall::Op::decode;
            call.items = b.subspan(sizeof h + h.ref_size);
            call.count = h.count;
            task.entry(call);
        } catch (...) {
            error = std::current_exception();
        }
        ep.release_task();  // the items are decoded: the message may go
        if (!error) {
            try {
                VectorOutBuf out(64 + 16 * std::size_t{h.count});
                ResultHeader rh{h.chunk, ResultKind::outcomes};
                out.write(&rh, sizeof rh);
                call.op = TaskCall::Op::run;
                call.fn = task.fn;
                call.out = &out;
                task.entry(call);
                call.decoded.reset();
                ep.send_result(out.take());
            } catch (...) {
                error = std::current_exception();
            }
        }
        if (error) send_error(ep, h.chunk, error);
        ep.unclaim();
        if (maxtasks != 0 && ++done >= maxtasks) return;
    }
}

}  // namespace mproc::detail
