// Segment: the shared mappings every mproc object lives in. See
// include/mproc/detail/segment.hpp.
#include "mproc/detail/segment.hpp"

#include <algorithm>
#include <map>
#include <mutex>

#include <fcntl.h>
#include <sys/stat.h>

#include "mproc/errors.hpp"
#include "os/os.hpp"

namespace mproc::detail {

namespace {

// fd -> mapping already made in this process, so that importing several
// handles that share one segment maps it once.
struct Registry {
    std::mutex mu;
    std::map<int, std::weak_ptr<Segment>> by_fd;
    // (dev, inode) -> mapping, for handles that arrive without their fd.
    std::map<std::pair<std::uint64_t, std::uint64_t>, std::weak_ptr<Segment>> by_inode;
    std::map<int, std::weak_ptr<Descriptor>> descriptors;
};

Registry& registry() {
    static Registry* r = new Registry;  // never destroyed: used from atexit paths
    return *r;
}

thread_local HandleExportScope* t_scope = nullptr;

std::pair<std::uint64_t, std::uint64_t> inode_of(int fd) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) os::throw_errno("fstat", "fd " + std::to_string(fd));
    return {static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)};
}

std::shared_ptr<Segment> registered(std::shared_ptr<Segment> seg) {
    const auto key = inode_of(seg->fd());
    Registry& r = registry();
    std::lock_guard<std::mutex> g(r.mu);
    r.by_fd[seg->fd()] = seg;
    r.by_inode[key] = seg;
    return seg;
}

}  // namespace

std::shared_ptr<Segment> Segment::anonymous(std::size_t size, const char* label) {
    if (size == 0) size = 1;
    os::Fd fd = os::memfd(label, size);
    auto* base = static_cast<std::byte*>(os::map_shared(fd.get(), size, label));
    return registered(std::shared_ptr<Segment>(new Segment(fd.release(), base, size, {})));
}

std::shared_ptr<Segment> Segment::adopt(int raw_fd, std::string name) {
    os::Fd fd(raw_fd);
    std::size_t size = os::fd_size(raw_fd);
    std::string what = name.empty() ? "fd " + std::to_string(raw_fd) : "/" + name;
    if (size == 0) throw Error("shared memory " + what + " has size 0");
    auto* base = static_cast<std::byte*>(os::map_shared(raw_fd, size, what));
    return registered(
        std::shared_ptr<Segment>(new Segment(fd.release(), base, size, std::move(name))));
}

Segment::~Segment() {
    {
        // Forget this fd before closing it, so a segment that reuses the
        // number is never mistaken for this one.
        Registry& r = registry();
        std::lock_guard<std::mutex> g(r.mu);
        auto it = r.by_fd.find(fd_);
        if (it != r.by_fd.end() && it->second.expired()) r.by_fd.erase(it);
        struct stat st {};
        if (::fstat(fd_, &st) == 0) {
            auto in = r.by_inode.find({static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)});
            if (in != r.by_inode.end() && in->second.expired()) r.by_inode.erase(in);
        }
    }
    os::unmap(base_, size_);
    os::Fd close_it(fd_);
}

std::uint64_t Segment::offset_of(const void* p) const {
    auto* b = static_cast<const std::byte*>(p);
    if (b < base_ || b >= base_ + size_) throw Error("mproc internal: pointer outside its segment");
    return static_cast<std::uint64_t>(b - base_);
}

std::byte* Segment::at(std::uint64_t offset, std::size_t bytes) const {
    if (offset > size_ || bytes > size_ - offset)
        throw SerializationError("handle points outside its shared segment (offset " +
                                 std::to_string(offset) + ", segment of " +
                                 std::to_string(size_) + " bytes)");
    return base_ + offset;
}

namespace {
HandleRef ref_of(int fd, std::uint64_t size, std::uint64_t offset) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) os::throw_errno("fstat", "fd " + std::to_string(fd));
    return HandleRef{fd, static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino),
                     size, offset, os::pid()};
}

[[noreturn]] void throw_not_held(const HandleRef& ref) {
    throw SerializationError(
        "an mproc handle arrived in a process that does not hold its shared memory (fd " +
        std::to_string(ref.fd) + ", sent by pid " + std::to_string(ref.pid) +
        ", which has exited or cannot be reached): pass Queues, Locks, Values and other handles "
        "to children as Process arguments");
}

// Throws unless ref.fd is open here and still names the same file.
struct stat check_ref(const HandleRef& ref) {
    struct stat st {};
    if (ref.fd < 0 || ::fstat(ref.fd, &st) != 0 ||
        static_cast<std::uint64_t>(st.st_dev) != ref.dev ||
        static_cast<std::uint64_t>(st.st_ino) != ref.ino)
        throw_not_held(ref);
    return st;
}
}  // namespace

bool HandleExportScope::note(int fd) {
    if (std::find(fds_.begin(), fds_.end(), fd) != fds_.end()) return false;
    fds_.push_back(fd);
    return true;
}

void HandleWriter::segment(const SegmentPtr& seg, const void* at) {
    refs.push_back(ref_of(seg->fd(), seg->size(), seg->offset_of(at)));
    if (HandleExportScope* s = t_scope)
        if (s->note(seg->fd())) s->segments_.push_back(seg);
}

void HandleWriter::descriptor(const DescriptorPtr& d) {
    refs.push_back(ref_of(d->fd(), 0, 0));
    if (HandleExportScope* s = t_scope)
        if (s->note(d->fd())) s->descriptors_.push_back(d);
}

std::shared_ptr<Descriptor> Descriptor::adopt(int fd) {
    auto d = std::shared_ptr<Descriptor>(new Descriptor(fd));
    Registry& r = registry();
    std::lock_guard<std::mutex> g(r.mu);
    r.descriptors[fd] = d;
    return d;
}

Descriptor::~Descriptor() {
    {
        Registry& r = registry();
        std::lock_guard<std::mutex> g(r.mu);
        auto it = r.descriptors.find(fd_);
        if (it != r.descriptors.end() && it->second.expired()) r.descriptors.erase(it);
    }
    os::Fd close_it(fd_);
}

namespace {
bool names_same_file(const HandleRef& ref, struct stat& st) {
    return ref.fd >= 0 && ::fstat(ref.fd, &st) == 0 && static_cast<std::uint64_t>(st.st_dev) == ref.dev &&
           static_cast<std::uint64_t>(st.st_ino) == ref.ino;
}

// The sender's segment through /proc/<pid>/fd/<fd>, if it is still there
// and still the same file; an invalid Fd otherwise.
os::Fd reopen_from_sender(const HandleRef& ref) {
    if (ref.pid <= 0 || ref.pid == os::pid() || ref.fd < 0) return {};
    const std::string path = "/proc/" + std::to_string(ref.pid) + "/fd/" + std::to_string(ref.fd);
    os::Fd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    struct stat st {};
    if (!fd || ::fstat(fd.get(), &st) != 0 || static_cast<std::uint64_t>(st.st_dev) != ref.dev ||
        static_cast<std::uint64_t>(st.st_ino) != ref.ino ||
        static_cast<std::uint64_t>(st.st_size) != ref.size)
        return {};
    return fd;
}
}  // namespace

std::pair<SegmentPtr, std::byte*> HandleReader::segment(std::size_t bytes) {
    if (next_ref_ >= refs_.size()) throw SerializationError("handle is missing a segment reference");
    const HandleRef& ref = refs_[next_ref_++];
    if (ref.size == 0) throw SerializationError("handle has a descriptor where a segment belongs");
    // One import at a time, so two threads never adopt the same fd twice.
    static std::mutex import_mu;
    std::lock_guard<std::mutex> one_at_a_time(import_mu);
    Registry& r = registry();
    SegmentPtr seg;
    struct stat st {};
    if (names_same_file(ref, st)) {
        {
            std::lock_guard<std::mutex> g(r.mu);
            auto it = r.by_fd.find(ref.fd);
            if (it != r.by_fd.end()) seg = it->second.lock();
        }
        if (!seg) {
            // First use here: a spawned child inherited the fd. Map it once
            // and own it; later handles to the same segment find this mapping.
            if (static_cast<std::uint64_t>(st.st_size) != ref.size)
                throw SerializationError("handle's shared segment has changed size");
            os::set_inheritable(ref.fd, false);
            seg = Segment::adopt(ref.fd, {});
        }
    } else if (ref.pid != os::pid()) {
        // Sent by another process to one that lacks the fd: a mapping made
        // here earlier, or the sender's fd reopened through /proc.
        {
            std::lock_guard<std::mutex> g(r.mu);
            auto it = r.by_inode.find({ref.dev, ref.ino});
            if (it != r.by_inode.end()) seg = it->second.lock();
        }
        if (!seg) {
            os::Fd fd = reopen_from_sender(ref);
            if (!fd) throw_not_held(ref);
            seg = Segment::adopt(fd.release(), {});
        }
        if (seg->size() != ref.size) throw SerializationError("handle's shared segment has changed size");
    } else {
        throw_not_held(ref);
    }
    return {seg, seg->at(ref.offset, bytes)};
}

DescriptorPtr HandleReader::descriptor() {
    if (next_ref_ >= refs_.size()) throw SerializationError("handle is missing a descriptor");
    const HandleRef& ref = refs_[next_ref_++];
    if (ref.size != 0) throw SerializationError("handle has a segment where a descriptor belongs");
    check_ref(ref);
    static std::mutex import_mu;
    std::lock_guard<std::mutex> one_at_a_time(import_mu);
    {
        Registry& r = registry();
        std::lock_guard<std::mutex> g(r.mu);
        auto it = r.descriptors.find(ref.fd);
        if (it != r.descriptors.end())
            if (auto d = it->second.lock()) return d;
    }
    os::set_inheritable(ref.fd, false);
    return Descriptor::adopt(ref.fd);
}

std::uint64_t HandleReader::value() {
    if (next_value_ >= values_.size()) throw SerializationError("handle is missing a value");
    return values_[next_value_++];
}

HandleExportScope::HandleExportScope() : prev_(t_scope) { t_scope = this; }
HandleExportScope::~HandleExportScope() { t_scope = prev_; }

}  // namespace mproc::detail
