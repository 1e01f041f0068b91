// The local backend: operations on a heap this process maps, each row of
// the operation table dispatched to its implementation (ops_impl.hpp); and
// the handles that carry local proxies to other processes.
#include <string>

#include "manager/kinds.hpp"
#include "manager/ops_impl.hpp"
#include "mproc/detail/manager_core.hpp"
#include "mproc/errors.hpp"

namespace mproc::detail {

namespace {

using mgr::Target;

using LocalThunk = void (*)(const Target&, void* args, void* result);

template <class O>
void local_thunk(const Target& t, void* args, void* result) {
    mgr::run_local<O>(t, *static_cast<typename O::Args*>(args), result);
}

constexpr LocalThunk kLocal[] = {
#define MPROC_MANAGER_OP_LOCAL(name, kinds, signature) &local_thunk<mop::op::name>,
    MPROC_MANAGER_OPS(MPROC_MANAGER_OP_LOCAL)
#undef MPROC_MANAGER_OP_LOCAL
};


class LocalBackend final : public Backend {
public:
    explicit LocalBackend(SegmentPtr seg) : seg_(std::move(seg)) {}

    void invoke(mop::OpId id, const ManagedObject& obj, void* args, void* result) const override {
        const auto i = static_cast<std::size_t>(id);
        if ((mop::kind_bit(obj.kind()) & mop::op_kinds(id)) == 0)
            throw ValueError(std::string("mproc::Manager: ") + mop::op_name(id) + " is not an operation of a " +
                             mop::kind_name(obj.kind()));
        kLocal[i](target(obj), args, result);
    }

    void modify(const ManagedObject& obj, const ModifySlot& slot, Rewriter rewrite) const override {
        const Target t = target(obj);
        switch (obj.kind()) {
            case mop::Kind::dict:
                return mgr::dict_rewrite(t, slot.key, rewrite);
            case mop::Kind::list:
                return mgr::list_rewrite(t, slot.index, rewrite);
            case mop::Kind::value:
                return mgr::value_rewrite(t, rewrite);
            default:
                throw ValueError(std::string("mproc::Manager: a ") + mop::kind_name(obj.kind()) + " has no modify()");
        }
    }

    void reorder(const ManagedObject& obj, Reorderer order) const override {
        if (obj.kind() != mop::Kind::list) throw ValueError("mproc::Manager: only lists are sorted");
        mgr::list_reorder_here(target(obj), order);
    }

    std::uint64_t bind(mop::ObjectId id, mop::Kind kind, std::uint64_t type_tag) const override {
        const mgr::Heap heap(*seg_);
        const std::uint64_t off = mgr::find_object(heap, id);
        if (off == 0) throw SerializationError("a manager proxy names an object its manager does not have");
        const auto* o = heap.at<mgr::ObjectHeader>(off);
        if (o->kind != kind || o->type_tag != type_tag)
            throw SerializationError(std::string("a manager proxy for a ") + mop::kind_name(kind) +
                                     " refers to a " + mop::kind_name(o->kind) +
                                     " (or to another element type than it was created with)");
        return off;
    }

    void export_handle(const ManagedObject& obj, HandleWriter& w) const override {
        w.segment(seg_, seg_->data() + obj.offset());
    }

private:
    Target target(const ManagedObject& obj) const noexcept {
        const mgr::Heap heap(*seg_);
        return Target{heap, heap.at<mgr::ObjectHeader>(obj.offset()), seg_};
    }

    SegmentPtr seg_;
};

/// `seg` checked to hold a manager heap.
const SegmentPtr& checked_heap(const SegmentPtr& seg) {
    if (seg->size() < mgr::kHeapStart || reinterpret_cast<const mgr::HeapHeader*>(seg->data())->magic != mgr::kHeapMagic)
        throw SerializationError("a manager handle does not point into a manager's heap");
    return seg;
}

}  // namespace

BackendPtr local_backend(const SharedHeap& heap) { return std::make_shared<LocalBackend>(heap.segment()); }

ManagedObject ManagedObject::import(HandleReader& r, mop::Kind kind, std::uint64_t type_tag) {
    auto [seg, p] = r.segment(sizeof(mgr::ObjectHeader));
    checked_heap(seg);
    const std::uint64_t off = seg->offset_of(p);
    const auto* o = reinterpret_cast<const mgr::ObjectHeader*>(p);
    if (off % 8 != 0 || o->magic != mgr::kObjectMagic || mgr::find_object(mgr::Heap(*seg), mop::ObjectId{o->id}) != off)
        throw SerializationError("a manager proxy handle does not point at a manager object");
    return ManagedObject(std::make_shared<LocalBackend>(std::move(seg)), mop::ObjectId{o->id}, kind, type_tag);
}

void SharedHeap::mproc_export(HandleWriter& w) const { w.segment(seg_, seg_->data()); }

SharedHeap SharedHeap::mproc_import(HandleReader& r) {
    auto [seg, p] = r.segment(mgr::kHeapStart);
    if (p != seg->data()) throw SerializationError("a manager heap handle does not point at a manager heap");
    checked_heap(seg);
    return SharedHeap(std::move(seg));
}

}  // namespace mproc::detail
