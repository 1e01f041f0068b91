// mproc shared memory: raw segments (SharedMemory), typed shared values
// (Value<T>, Array<T>) and memory-mapped files (MappedFile).
//
// SharedMemory(size) is anonymous: nothing appears in /dev/shm, children
// (forked, or spawned with it as an argument) share it, and the kernel frees
// it when the last process using it exits, kill -9 included.
// SharedMemory::create("name", size) makes /dev/shm/name (mode 0600), which
// unrelated processes can attach() to; it lives until unlink(), as in Python.
//
// Every type here is a handle: copies share the same memory, and a copy can
// be passed to a child process as a Process argument. The bytes themselves
// are not synchronized: use Value/Array's get_lock() (an RLock in the same
// segment) or your own Lock for read-modify-write. Nothing here blocks except
// get_lock() and MappedFile::flush().
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

#include "mproc/detail/segment.hpp"
#include "mproc/sync.hpp"

namespace mproc {

/// multiprocessing.shared_memory.SharedMemory.
class SharedMemory {
public:
    /// An anonymous segment of `size` zeroed bytes.
    explicit SharedMemory(std::size_t size);
    /// Creates /dev/shm/<name>; Error (OSError EEXIST) if it exists.
    static SharedMemory create(const std::string& name, std::size_t size);
    /// Attaches to an existing named segment; OSError (ENOENT) if missing.
    /// With `size` given, Error if the segment is smaller than that.
    static SharedMemory attach(const std::string& name, std::size_t size = 0);

    /// Removes the name (the memory lives on while mapped). Named only.
    void unlink();

    std::byte* data() const noexcept { return seg_->data(); }
    std::size_t size() const noexcept { return seg_->size(); }
    std::span<std::byte> bytes() const noexcept { return {data(), size()}; }
    /// Empty for anonymous segments.
    const std::string& name() const noexcept { return seg_->name(); }

    void mproc_export(detail::HandleWriter& w) const { w.segment(seg_, seg_->data()); }
    static SharedMemory mproc_import(detail::HandleReader& r);

private:
    explicit SharedMemory(detail::SegmentPtr seg) : seg_(std::move(seg)) {}
    detail::SegmentPtr seg_;
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

    void mproc_export(detail::HandleWriter& w) const { w.segment(seg_, seg_->data()); }
    static MappedFile mproc_import(detail::HandleReader& r);

private:
    MappedFile(detail::SegmentPtr seg, std::string path) : seg_(std::move(seg)), path_(std::move(path)) {}
    detail::SegmentPtr seg_;
    std::string path_;
};

}  // namespace mproc
