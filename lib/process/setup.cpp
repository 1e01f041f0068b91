// The child-setup pieces (see include/mproc/detail/process_setup.hpp) and
// their part of the spawn payload: one handle whose values are the number
// of pieces, then for each its name and what its save() wrote, in
// registration order; its refs are those of every piece, in the same order.
//
// The registry is a fixed array of atomic pointers, appended to without a
// lock: a forked child that starts children of its own reads it, and must
// not meet a mutex another thread of its parent held at the fork.
#include <array>
#include <atomic>
#include <cstring>

#include "mproc/detail/process_setup.hpp"
#include "mproc/errors.hpp"
#include "mproc/serialization.hpp"
#include "process/internal.hpp"

namespace mproc::detail {

namespace {

constexpr std::size_t kMaxPieces = 16;
constexpr std::size_t kMaxName = 64;

struct Pieces {
    std::array<std::atomic<const ChildSetup*>, kMaxPieces> slots{};
    std::atomic<std::size_t> count{0};
};

Pieces& pieces() {
    static Pieces p;  // constant-initialized: usable from any static initializer
    return p;
}

const ChildSetup* find_piece(std::string_view name) {
    Pieces& p = pieces();
    const std::size_t n = std::min(p.count.load(std::memory_order_acquire), kMaxPieces);
    for (std::size_t i = 0; i < n; ++i) {
        const ChildSetup* piece = p.slots[i].load(std::memory_order_acquire);
        if (piece && name == piece->name) return piece;
    }
    return nullptr;
}

// The handle that carries every piece.
struct SetupHandle {
    void mproc_export(HandleWriter& w) const {
        Pieces& p = pieces();
        const std::size_t n = std::min(p.count.load(std::memory_order_acquire), kMaxPieces);
        std::vector<const ChildSetup*> list;
        for (std::size_t i = 0; i < n; ++i)
            if (const ChildSetup* piece = p.slots[i].load(std::memory_order_acquire)) list.push_back(piece);
        w.value(list.size());
        for (const ChildSetup* piece : list) {
            w.text(piece->name);
            piece->save(w);
        }
    }
    static SetupHandle mproc_import(HandleReader& r) {
        const std::uint64_t n = r.value();
        if (n > kMaxPieces) throw SerializationError("the child-setup data names " + std::to_string(n) + " pieces");
        for (std::uint64_t i = 0; i < n; ++i) {
            const std::string name = r.text(kMaxName);
            const ChildSetup* piece = find_piece(name);
            if (!piece)
                throw SerializationError("the parent set up \"" + name +
                                         "\" for this child, which this executable does not register (register "
                                         "child-setup pieces at static initialization)");
            piece->load(r);
        }
        return {};
    }
};

}  // namespace

bool register_child_setup(const ChildSetup& piece) {
    if (!piece.name || std::strlen(piece.name) > kMaxName || !piece.save || !piece.load)
        throw ValueError("mproc: a child-setup piece needs a name (at most 64 bytes), save and load");
    Pieces& p = pieces();
    const std::size_t n = std::min(p.count.load(std::memory_order_acquire), kMaxPieces);
    for (std::size_t i = 0; i < n; ++i) {
        const ChildSetup* old = p.slots[i].load(std::memory_order_acquire);
        if (old && std::string_view(old->name) == piece.name) {
            p.slots[i].store(&piece, std::memory_order_release);
            return true;
        }
    }
    const std::size_t i = p.count.fetch_add(1, std::memory_order_acq_rel);
    if (i >= kMaxPieces) throw Error("mproc: more than 16 child-setup pieces registered");
    p.slots[i].store(&piece, std::memory_order_release);
    return true;
}

void run_child_setup_exits() noexcept {
    Pieces& p = pieces();
    const std::size_t n = std::min(p.count.load(std::memory_order_acquire), kMaxPieces);
    for (std::size_t i = 0; i < n; ++i) {
        const ChildSetup* piece = p.slots[i].load(std::memory_order_acquire);
        if (piece && piece->at_exit) piece->at_exit();
    }
}

std::vector<std::byte> save_child_setup() {
    VectorOutBuf out(64);
    dump_to(out, SetupHandle{});
    return out.take();
}

void load_child_setup(std::span<const std::byte> bytes) { (void)load_from<SetupHandle>(bytes); }

}  // namespace mproc::detail
