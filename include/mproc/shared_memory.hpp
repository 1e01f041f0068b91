// mproc shared memory: raw segments (SharedMemory), typed shared values
// (Value<T>, Array<T>), memory-mapped files (MappedFile), and Python's
// shared_memory extras: ShareableList<T> and SharedMemoryManager.
//
// SharedMemory(size) is anonymous: nothing appears in /dev/shm, children
// (forked, or spawned with it as an argument) share it, and the kernel frees
// it when the last process using it exits, kill -9 included.
// SharedMemory::create("name", size) makes /dev/shm/name (mode 0600), which
// unrelated processes can attach() to. It is tracked (Python 3.13's
// track=True): when the creating process exits — normally, by an uncaught
// exception, by kill -9 — a tracker process unlinks the name, unless unlink()
// came first. {.track = false} makes a name that lives until someone
// unlink()s it, as before Python 3.13. Only the creator tracks: attach()
// never does, nor does a child that received the handle. The first tracked
// create starts the tracker (one small helper process per creator, which
// exits with it); anonymous segments never need one. Named segments and
// files are made and mapped by Boost.Interprocess (shared_memory_object,
// file_mapping, mapped_region); its headers stay out of this one.
//
// Every type here is a handle: copies share the same memory, and a copy can
// be passed to a child process as a Process argument. The bytes themselves
// are not synchronized: use Value/Array's get_lock() (an RLock in the same
// segment) or your own Lock for read-modify-write. Every call may be made
// from any thread. Nothing here blocks except get_lock(), MappedFile::flush()
// and a tracked create (one round trip to the tracker, which answers after
// one open(); a tracker that does not answer in 10 s — someone stopped it —
// is a TimeoutError). A peer process's death never affects these objects:
// the memory stays mapped, and only a tracked name's creator dying removes
// the name.
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <mutex>
#include <new>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "mproc/detail/segment.hpp"
#include "mproc/sync.hpp"

namespace mproc {

struct SharedMemoryOptions {
    /// Python 3.13's track: unlink the name when this process exits, however
    /// it exits, unless unlink() came first.
    bool track = true;
};

/// multiprocessing.shared_memory.SharedMemory.
class SharedMemory {
public:
    /// An anonymous segment of `size` zeroed bytes.
    explicit SharedMemory(std::size_t size);
    /// Creates /dev/shm/<name> of `size` zeroed bytes, mode 0600; OSError
    /// (EEXIST) if it exists, ValueError for an empty name, one with '/' or
    /// one longer than NAME_MAX, or size 0. Blocks for one round trip to the
    /// tracker when tracked.
    static SharedMemory create(const std::string& name, std::size_t size,
                               SharedMemoryOptions options = {});
    /// Attaches to an existing named segment; OSError (ENOENT) if missing.
    /// With `size` given, Error if the segment is smaller than that.
    static SharedMemory attach(const std::string& name, std::size_t size = 0);

    /// Removes the name (the memory lives on while mapped) and stops
    /// tracking it. Named only; OSError (ENOENT) if the name is gone.
    void unlink() const;

    std::byte* data() const noexcept { return seg_->data(); }
    std::size_t size() const noexcept { return seg_->size(); }
    std::span<std::byte> bytes() const noexcept { return {data(), size()}; }
    /// Empty for anonymous segments.
    const std::string& name() const noexcept { return name_; }

    void mproc_export(detail::HandleWriter& w) const;
    static SharedMemory mproc_import(detail::HandleReader& r);

private:
    SharedMemory(detail::SegmentPtr seg, std::string name) : seg_(std::move(seg)), name_(std::move(name)) {}
    detail::SegmentPtr seg_;
    std::string name_;
};

namespace detail {
/// Where Value/Array data starts in their segment, after their RLock.
inline constexpr std::size_t kTypedDataOffset = kMutexStateSize;

template <class T>
constexpr void check_shared_type() {
    static_assert(std::is_trivially_copyable_v<T>,
                  "mproc::Value<T> and mproc::Array<T> need a trivially copyable T: the bytes "
                  "live in shared memory and every process reads them in place. Share other "
                  "types through a Queue, a Pipe or a Manager.");
    static_assert(alignof(T) <= kTypedDataOffset, "over-aligned T is not supported");
}
}  // namespace detail

/// multiprocessing.Value: one T in shared memory with an RLock beside it.
template <class T>
class Value {
public:
    explicit Value(const T& init = T{})
        : seg_(detail::Segment::anonymous(detail::kTypedDataOffset + sizeof(T), "mproc-value")),
          lock_(seg_, seg_->data()),
          ptr_(new (seg_->data() + detail::kTypedDataOffset) T(init)) {
        detail::check_shared_type<T>();
    }

    /// The value in place. Hold get_lock() for read-modify-write.
    T& value() noexcept { return *ptr_; }
    const T& value() const noexcept { return *ptr_; }
    /// Reads / writes the value under the lock.
    T load() const { std::lock_guard<RLock> g(lock_); return *ptr_; }
    void store(const T& v) { std::lock_guard<RLock> g(lock_); *ptr_ = v; }

    /// The lock, already held: `{ auto g = v.get_lock(); v.value() += 1; }`.
    std::unique_lock<RLock> get_lock() const { return std::unique_lock<RLock>(lock_); }
    /// The lock itself, not acquired.
    RLock& lock() const noexcept { return lock_; }

    void mproc_export(detail::HandleWriter& w) const { w.segment(seg_, seg_->data()); }
    static Value mproc_import(detail::HandleReader& r) {
        auto [seg, p] = r.segment(detail::kTypedDataOffset + sizeof(T));
        return Value(std::move(seg), p);
    }

private:
    Value(detail::SegmentPtr seg, std::byte* p)
        : seg_(seg), lock_(RLock::attach(seg, p)),
          ptr_(std::launder(reinterpret_cast<T*>(p + detail::kTypedDataOffset))) {}

    detail::SegmentPtr seg_;
    mutable RLock lock_;
    T* ptr_;
};

/// multiprocessing.Array: a fixed number of T in shared memory with an
/// RLock beside them. Elements start value-initialized (zero).
template <class T>
class Array {
public:
    explicit Array(std::size_t n)
        : seg_(detail::Segment::anonymous(detail::kTypedDataOffset + sizeof(T) * n, "mproc-array")),
          lock_(seg_, seg_->data()),
          data_(std::uninitialized_value_construct_n(
                    reinterpret_cast<T*>(seg_->data() + detail::kTypedDataOffset), n) - n),
          size_(n) {
        detail::check_shared_type<T>();
    }
    template <class Range>
        requires requires(const Range& r) { std::begin(r); std::end(r); }
    explicit Array(const Range& init) : Array(static_cast<std::size_t>(std::size(init))) {
        std::size_t i = 0;
        for (const auto& x : init) data_[i++] = x;
    }
    Array(std::initializer_list<T> init) : Array(init.size()) {
        std::copy(init.begin(), init.end(), data_);
    }

    T& operator[](std::size_t i) noexcept { return data_[i]; }
    const T& operator[](std::size_t i) const noexcept { return data_[i]; }
    /// Bounds-checked; std::out_of_range past the end.
    T& at(std::size_t i) {
        if (i >= size_) throw std::out_of_range("mproc::Array index " + std::to_string(i) +
                                                " out of range (size " + std::to_string(size_) + ")");
        return data_[i];
    }
    std::size_t size() const noexcept { return size_; }
    T* data() const noexcept { return data_; }
    std::span<T> span() const noexcept { return {data_, size_}; }
    T* begin() const noexcept { return data_; }
    T* end() const noexcept { return data_ + size_; }

    std::unique_lock<RLock> get_lock() const { return std::unique_lock<RLock>(lock_); }
    RLock& lock() const noexcept { return lock_; }

    void mproc_export(detail::HandleWriter& w) const {
        w.segment(seg_, seg_->data());
        w.value(size_);
    }
    static Array mproc_import(detail::HandleReader& r) {
        std::size_t n = r.value();
        if (n > (SIZE_MAX - detail::kTypedDataOffset) / sizeof(T))
            throw SerializationError("Array handle has an impossible size");
        auto [seg, p] = r.segment(detail::kTypedDataOffset + sizeof(T) * n);
        return Array(std::move(seg), p, n);
    }

private:
    Array(detail::SegmentPtr seg, std::byte* p, std::size_t n)
        : seg_(seg), lock_(RLock::attach(seg, p)),
          data_(std::launder(reinterpret_cast<T*>(p + detail::kTypedDataOffset))), size_(n) {}

    detail::SegmentPtr seg_;
    mutable RLock lock_;
    T* data_;
    std::size_t size_;
};

/// A file mapped MAP_SHARED: every process that maps it sees the same
/// bytes; flush() writes them to disk (msync). The file is created (mode
/// 0600) if missing and grown to `size` if smaller; size 0 maps the whole
/// existing file.
class MappedFile {
public:
    MappedFile(const std::string& path, std::size_t size);

    std::byte* data() const noexcept { return seg_->data(); }
    std::size_t size() const noexcept { return seg_->size(); }
    std::span<std::byte> bytes() const noexcept { return {data(), size()}; }
    const std::string& path() const noexcept { return path_; }
    /// Blocks until the bytes are on disk.
    void flush();

    void mproc_export(detail::HandleWriter& w) const;
    static MappedFile mproc_import(detail::HandleReader& r);

private:
    MappedFile(detail::SegmentPtr seg, std::string path) : seg_(std::move(seg)), path_(std::move(path)) {}
    detail::SegmentPtr seg_;
    std::string path_;
};

}  // namespace mproc

#include "mproc/detail/shareable_list.hpp"

namespace mproc {

/// multiprocessing.managers.SharedMemoryManager: makes named segments and
/// ShareableLists, and unlinks every one it made on shutdown(), on
/// destruction, and when this process dies (kill -9 included: they are
/// tracked). The names are random ("mproc-smm-<pid>-<hex>"), so other
/// processes attach by the name() of what it returns, or receive it as a
/// handle. Only the process that made the manager shuts it down: a forked
/// child's copy never unlinks its parent's segments. Thread-safe; nothing
/// blocks but one tracker round trip per segment. Move-only.
class SharedMemoryManager {
public:
    SharedMemoryManager();
    ~SharedMemoryManager();
    SharedMemoryManager(SharedMemoryManager&&) noexcept;
    SharedMemoryManager& operator=(SharedMemoryManager&&) noexcept;
    SharedMemoryManager(const SharedMemoryManager&) = delete;
    SharedMemoryManager& operator=(const SharedMemoryManager&) = delete;

    /// Python's smm.start(): the constructor has done it, so nothing; a
    /// ValueError after shutdown().
    void start();
    /// smm.SharedMemory(size): a new named segment of `size` zeroed bytes.
    mproc::SharedMemory SharedMemory(std::size_t size);
    /// smm.ShareableList(sequence).
    template <class T, std::ranges::input_range R>
    mproc::ShareableList<T> ShareableList(R&& values, ShareableListOptions options = {}) {
        return mproc::ShareableList<T>::make_in([this](std::size_t bytes) { return SharedMemory(bytes); },
                                                std::forward<R>(values), options);
    }
    template <class T>
    mproc::ShareableList<T> ShareableList(std::initializer_list<T> values, ShareableListOptions options = {}) {
        return ShareableList<T>(std::span<const T>(values.begin(), values.size()), options);
    }
    /// Unlinks every segment this manager made; later SharedMemory() and
    /// ShareableList() calls are a ValueError. Mappings stay valid. Idempotent.
    void shutdown() noexcept;
    /// The names of the segments it made, until shutdown().
    std::vector<std::string> names() const;

private:
    struct State;
    std::unique_ptr<State> st_;
};

}  // namespace mproc
