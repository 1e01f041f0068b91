// mproc::detail::Segment — a shared mapping every mproc object lives in, and
// the handle protocol that lets objects cross into spawned children.
//
// A Segment is a memfd (anonymous), a /dev/shm file (named) or a regular
// file mapped MAP_SHARED; how it was mapped (by the os layer, or by
// Boost.Interprocess for named segments and files) is its Mapping's business. Forked children inherit the mapping; spawned children inherit
// the fd and map it again (at another address: state inside a segment is
// addressed by offset, never by pointer). The kernel frees an anonymous
// segment when the last process that maps it or holds its fd exits, however
// it exits.
//
// Handle protocol: a type T is an mproc handle if it has
//     void mproc_export(detail::HandleWriter&) const;
//     static T mproc_import(detail::HandleReader&);
// Serializing a handle writes the (fd, inode, size, offset) of each segment
// it uses; the spawn code collects those fds (HandleExportScope) and places
// them in the child under the same numbers. Importing checks that the fd
// still names the same inode, so a handle that reached a process without its
// fd is a SerializationError, never a mapping of some unrelated file.
//
// Thread safety: a Segment is immutable after construction; share it through
// std::shared_ptr. Nothing here blocks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mproc::detail {

/// What holds a segment's memory and fd, and releases them (lib/memory/).
class Mapping;

class Segment {
public:
    /// A new zero-filled anonymous segment (memfd). `label` shows in
    /// /proc/<pid>/fd and maps as "/memfd:<label>".
    static std::shared_ptr<Segment> anonymous(std::size_t size, const char* label);
    /// Takes ownership of an open fd and maps all of it. `name` is the
    /// /dev/shm name for named segments, empty otherwise.
    static std::shared_ptr<Segment> adopt(int fd, std::string name);
    /// Takes over a mapping made elsewhere in lib/memory.
    static std::shared_ptr<Segment> from(std::unique_ptr<Mapping> mapping, std::string name);

    ~Segment();
    Segment(const Segment&) = delete;
    Segment& operator=(const Segment&) = delete;

    std::byte* data() const noexcept { return base_; }
    std::size_t size() const noexcept { return size_; }
    int fd() const noexcept { return fd_; }
    const std::string& name() const noexcept { return name_; }

    /// Byte offset of `p` inside this segment (p must point into it).
    std::uint64_t offset_of(const void* p) const;
    /// The object at `offset`, checked to leave `bytes` inside the segment.
    std::byte* at(std::uint64_t offset, std::size_t bytes) const;

private:
    Segment(std::unique_ptr<Mapping> mapping, std::string name) noexcept;

    std::unique_ptr<Mapping> mapping_;
    std::byte* base_;
    std::size_t size_;
    int fd_;
    std::string name_;
};

using SegmentPtr = std::shared_ptr<Segment>;

/// An fd that is not mapped (a socket end a Pipe or Queue uses), shared by
/// the handles of one process and closed with the last of them.
class Descriptor {
public:
    /// Takes ownership of an open fd.
    static std::shared_ptr<Descriptor> adopt(int fd);
    ~Descriptor();
    Descriptor(const Descriptor&) = delete;
    Descriptor& operator=(const Descriptor&) = delete;
    int fd() const noexcept { return fd_; }

private:
    explicit Descriptor(int fd) noexcept : fd_(fd) {}
    int fd_;
};

using DescriptorPtr = std::shared_ptr<Descriptor>;

/// What travels in place of one segment reference (or, with size 0, of one
/// Descriptor).
struct HandleRef {
    std::int32_t fd = -1;
    std::uint64_t dev = 0;
    std::uint64_t ino = 0;
    std::uint64_t size = 0;
    std::uint64_t offset = 0;
    /// The exporting process: a receiver that does not hold `fd` (a pool
    /// worker started before the object existed) reopens the segment
    /// through /proc/<pid>/fd/<fd> while that process lives.
    std::int32_t pid = 0;
};

class HandleWriter {
public:
    /// Records a reference to `at` inside `seg`; notes seg's fd in the
    /// active HandleExportScope, if any.
    void segment(const SegmentPtr& seg, const void* at);
    /// Records an unmapped fd the receiver must inherit.
    void descriptor(const DescriptorPtr& d);
    void value(std::uint64_t v) { values.push_back(v); }
    /// Records a string (a segment's name, a file's path) among the values.
    void text(std::string_view s);

    std::vector<HandleRef> refs;
    std::vector<std::uint64_t> values;
};

class HandleReader {
public:
    HandleReader(const std::vector<HandleRef>& refs, const std::vector<std::uint64_t>& values)
        : refs_(refs), values_(values) {}
    /// The next segment reference, mapped in this process (a mapping that is
    /// already here is reused), and the address it points at, checked to
    /// leave `bytes` inside the segment. Throws SerializationError.
    std::pair<SegmentPtr, std::byte*> segment(std::size_t bytes);
    /// The next Descriptor reference, checked like a segment's.
    DescriptorPtr descriptor();
    std::uint64_t value();
    /// The next string written by HandleWriter::text; SerializationError if
    /// it is longer than `max_length` or missing.
    std::string text(std::size_t max_length);

private:
    const std::vector<HandleRef>& refs_;
    const std::vector<std::uint64_t>& values_;
    std::size_t next_ref_ = 0;
    std::size_t next_value_ = 0;
};

/// While one is alive on a thread, every segment that thread exports is
/// recorded, so the spawn code knows which fds the child must inherit.
class HandleExportScope {
public:
    HandleExportScope();
    ~HandleExportScope();
    HandleExportScope(const HandleExportScope&) = delete;
    HandleExportScope& operator=(const HandleExportScope&) = delete;

    const std::vector<int>& fds() const noexcept { return fds_; }
    /// Keeps the exported segments alive until the child has them.
    const std::vector<SegmentPtr>& segments() const noexcept { return segments_; }
    const std::vector<DescriptorPtr>& descriptors() const noexcept { return descriptors_; }

private:
    friend class HandleWriter;
    bool note(int fd);
    std::vector<int> fds_;
    std::vector<SegmentPtr> segments_;
    std::vector<DescriptorPtr> descriptors_;
    HandleExportScope* prev_;
};

}  // namespace mproc::detail
