// The worker side of a pool: take a chunk, record it in this worker's slot,
// run it, send the outcomes back, clear the slot.
//
// The slot is written while the task message is still reserved (not yet
// consumed): a worker killed before it consumes the message leaves the
// message for another worker, and one killed after leaves its slot naming
// the chunk, so the parent always learns which chunk died with it. (In the
// first case the parent fails the chunk and later ignores its result.)
#include <atomic>
#include <cstring>
#include <string>
#include <unordered_map>

#include "mproc/detail/pool_core.hpp"
#include "pool/messages.hpp"

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
    call.ref = &in;
    r.fn = r.entry(call);
    return r;
}

}  // namespace

void pool_worker_loop(const PoolChannel& tasks, const PoolChannel& results,
                      const Array<std::uint64_t>& slots, std::uint32_t index,
                      std::uint64_t maxtasks, const std::function<void()>& init) {
    init();
    std::atomic_ref<std::uint64_t> slot(slots.data()[index]);
    std::unordered_map<std::string, Resolved> cache;
    std::string last_key;
    Resolved last{};
    std::vector<std::byte> items;
    std::uint64_t done = 0;
    for (;;) {
        TaskHeader h;
        std::string key;
        {
            ReadReservation r;
            tasks.core().begin_get(r, std::nullopt);
            auto b = r.bytes();
            if (b.size() < sizeof h) {
                r.commit();
                continue;
            }
            std::memcpy(&h, b.data(), sizeof h);
            if (h.chunk == 0) {
                r.commit();
                return;
            }
            if (b.size() < sizeof h + h.ref_size) {
                r.commit();
                continue;
            }
            slot.store(h.chunk, std::memory_order_seq_cst);
            key.assign(reinterpret_cast<const char*>(b.data() + sizeof h), h.ref_size);
            items.assign(b.begin() + static_cast<std::ptrdiff_t>(sizeof h + h.ref_size), b.end());
            r.commit();
        }
        std::vector<std::byte> msg;
        try {
            VectorOutBuf out(64 + items.size());
            ResultHeader rh{h.chunk, ResultKind::outcomes, 0};
            out.write(&rh, sizeof rh);
            if (key != last_key) {
                auto it = cache.find(key);
                if (it == cache.end()) it = cache.emplace(key, resolve(std::as_bytes(std::span(key)))).first;
                last = it->second;
                last_key = key;
            }
            TaskCall call;
            call.fn = last.fn;
            call.items = items;
            call.count = h.count;
            call.out = &out;
            last.entry(call);
            msg = out.take();
        } catch (...) {
            VectorOutBuf out(256);
            ResultHeader rh{h.chunk, ResultKind::chunk_error, 0};
            out.write(&rh, sizeof rh);
            encode_exception(out, std::current_exception());
            msg = out.take();
        }
        results.core().put(msg, std::nullopt);
        slot.store(0, std::memory_order_seq_cst);
        if (maxtasks != 0 && ++done >= maxtasks) return;
    }
}

}  // namespace mproc::detail
