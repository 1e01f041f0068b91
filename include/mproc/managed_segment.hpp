// mproc::ManagedSegment: Boost.Interprocess managed memory (named objects,
// allocators for boost::interprocess containers) inside an mproc segment, so
// code written for boost::interprocess::managed_shared_memory keeps its
// containers while the memory becomes an mproc handle:
//
//   mproc::ManagedSegment seg(1 << 20);            // anonymous: nothing in /dev/shm, never leaks
//   using Vec = boost::interprocess::vector<int, mproc::ManagedSegment::allocator<int>>;
//   Vec* v = seg.construct<Vec>("numbers")(seg.get_allocator<int>());
//   mproc::Process p(worker, seg);                 // fork or spawn: worker calls seg.find<Vec>("numbers")
//
// An anonymous ManagedSegment is a memfd like every mproc object: children
// share it (forked, or spawned with it as a Process argument), and the kernel
// frees it when the last process that maps it exits, kill -9 included.
// ManagedSegment(SharedMemory::create(name, size)) puts the heap in a named
// segment that unrelated processes open with ManagedSegment::attach(
// SharedMemory::attach(name)). Every process may map it at another address:
// Boost's managed memory and containers use offset_ptr, so that works.
//
// Thread and process safety: allocation, construct/find/destroy by name take
// the heap's lock, which is mproc's robust process-shared mutex (Boost's own
// managed_external_buffer takes none, and its interprocess_mutex stays
// locked forever when its holder is killed; see the README). The objects you
// construct are yours to synchronize (an mproc::Lock beside them, say).
// Blocking: only on that lock, for as long as one allocation takes.
//
// Peer death: if a process dies while it holds the heap's lock (killed in the
// middle of an allocation), the heap may be half-updated; every later
// operation that takes the lock throws mproc::Error saying so, rather than
// corrupting memory. The objects already built stay readable.
//
// This header includes Boost.Interprocess (its templates need it);
// <mproc/mproc.hpp> does not include this one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>

#include <boost/interprocess/allocators/allocator.hpp>
#include <boost/interprocess/creation_tags.hpp>
#include <boost/interprocess/indexes/iset_index.hpp>
#include <boost/interprocess/managed_external_buffer.hpp>
#include <boost/interprocess/mem_algo/rbtree_best_fit.hpp>

#include "mproc/shared_memory.hpp"

namespace mproc {

namespace detail {

/// The lock Boost's heap algorithm and segment manager take: a robust
/// process-shared mutex in the heap's header, which after its holder's
/// death refuses (mproc::Error) instead of handing over a torn heap.
class HeapMutex {
public:
    HeapMutex() : HeapMutex(false) {}
    HeapMutex(const HeapMutex&) = delete;
    HeapMutex& operator=(const HeapMutex&) = delete;
    void lock();
    bool try_lock();
    void unlock();

protected:
    explicit HeapMutex(bool recursive);

private:
    alignas(16) unsigned char state_[64];
};

class HeapRecursiveMutex : public HeapMutex {
public:
    HeapRecursiveMutex() : HeapMutex(true) {}
};

/// Boost.Interprocess's MutexFamily concept, on HeapMutex.
struct HeapMutexFamily {
    using mutex_type = HeapMutex;
    using recursive_mutex_type = HeapRecursiveMutex;
};

}  // namespace detail

class ManagedSegment {
public:
    /// Boost's managed external buffer with the robust lock.
    using managed_memory = boost::interprocess::basic_managed_external_buffer<
        char, boost::interprocess::rbtree_best_fit<detail::HeapMutexFamily>, boost::interprocess::iset_index>;
    using segment_manager = managed_memory::segment_manager;
    /// The allocator for boost::interprocess containers in this segment.
    template <class T>
    using allocator = boost::interprocess::allocator<T, segment_manager>;

    /// A new anonymous segment of `size` bytes (the heap's own bookkeeping
    /// takes a few hundred of them).
    explicit ManagedSegment(std::size_t size);
    /// A new heap in `shm` (what it held before is overwritten).
    explicit ManagedSegment(SharedMemory shm);
    /// The heap another process made in `shm`. SerializationError if `shm`
    /// holds none.
    static ManagedSegment attach(SharedMemory shm);

    /// boost::interprocess's construct / find_or_construct / find / destroy
    /// by name: seg.construct<T>("name")(args...) returns a T*
    /// (boost::interprocess::bad_alloc when full, ... already_exists if the
    /// name is taken: use find_or_construct).
    template <class T>
    auto construct(const char* name) const {
        return m_->template construct<T>(name);
    }
    template <class T>
    auto find_or_construct(const char* name) const {
        return m_->template find_or_construct<T>(name);
    }
    /// {pointer, element count}; {nullptr, 0} if no object has that name.
    template <class T>
    std::pair<T*, std::size_t> find(const char* name) const {
        auto r = m_->template find<T>(name);
        return {r.first, static_cast<std::size_t>(r.second)};
    }
    template <class T>
    bool destroy(const char* name) const {
        return m_->template destroy<T>(name);
    }
    template <class T>
    void destroy_ptr(T* p) const {
        m_->destroy_ptr(p);
    }
    template <class T>
    allocator<T> get_allocator() const {
        return allocator<T>(m_->get_segment_manager());
    }
    segment_manager* get_segment_manager() const { return m_->get_segment_manager(); }

    std::size_t size() const noexcept { return static_cast<std::size_t>(m_->get_size()); }
    std::size_t get_free_memory() const { return static_cast<std::size_t>(m_->get_free_memory()); }
    std::size_t get_num_named_objects() const { return static_cast<std::size_t>(m_->get_num_named_objects()); }
    /// Boost's heap consistency check.
    bool check_sanity() const { return m_->check_sanity(); }
    /// Boost's object itself, for what this class does not forward.
    managed_memory& managed() const noexcept { return *m_; }
    /// The segment (its name() for named ones).
    const SharedMemory& shm() const noexcept { return shm_; }

    void mproc_export(detail::HandleWriter& w) const { shm_.mproc_export(w); }
    static ManagedSegment mproc_import(detail::HandleReader& r) { return attach(SharedMemory::mproc_import(r)); }

private:
    ManagedSegment(SharedMemory shm, bool create);
    SharedMemory shm_;
    std::shared_ptr<managed_memory> m_;
};

}  // namespace mproc
