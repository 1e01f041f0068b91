// Segment: the shared mappings every mproc object lives in. See
// include/mproc/detail/segment.hpp.
#include "mproc/detail/segment.hpp"

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>

#include "memory/mapping.hpp"
#include "mproc/errors.hpp"
#include "os/os.hpp"
#include "os/process.hpp"

namespace mproc::detail {

namespace {

// fd -> mapping already made in this process, so that importing several
// handles that share one segment maps it once.
struct Registry {
    // One import at a time, so two threads never adopt the same fd twice.
    // Taken before `mu`.
    std::mutex import_mu;
    std::mutex mu;
    std::map<int, std::weak_ptr<Segment>> by_fd;
    // (dev, inode) -> mapping, for handles that arrive without their fd.
    std::map<std::pair<std::uint64_t, std::uint64_t>, std::weak_ptr<Segment>> by_inode;
    std::map<int, std::weak_ptr<Descriptor>> descriptors;
};

Registry& registry() {
    static Registry* r = [] {
        auto* reg = new Registry;  // never destroyed: used from atexit paths
        // A pool's watcher thread forks replacement workers while other
        // threads make and import segments; a child given a held copy
        // would hang at its first handle.
        os::hold_across_fork(reg->import_mu, os::kForkRankImport);
        os::hold_across_fork(reg->mu, os::kForkRankSegments);
        return reg;
    }();
    return *r;
}
// Registered before main, not at the first segment: see hold_across_fork.
const bool g_registry_ready = (registry(), true);

thread_local HandleExportScope* t_scope = nullptr;

// An fd mapped by the os layer: memfds, and fds that handles brought.
class FdMapping final : public Mapping {
public:
    FdMapping(os::Fd fd, std::size_t size, std::string_view what)
        : base_(static_cast<std::byte*>(os::map_shared(fd.get(), size, what))),
          size_(size), fd_(std::move(fd)) {}
    ~FdMapping() override { os::unmap(base_, size_); }
    std::byte* data() const noexcept override { return base_; }
    std::size_t size() const noexcept override { return size_; }
    int fd() const noexcept override { return fd_.get(); }

private:
    std::byte* base_;
    std::size_t size_;
    os::Fd fd_;
};

std::shared_ptr<Segment> registered(std::shared_ptr<Segment> seg) {
    const os::FileId id = os::file_id(seg->fd());
    const std::pair<std::uint64_t, std::uint64_t> key{id.dev, id.ino};
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
    return from(std::make_unique<FdMapping>(std::move(fd), size, label), {});
}

std::shared_ptr<Segment> Segment::adopt(int raw_fd, std::string name) {
    os::Fd fd(raw_fd);
    std::size_t size = os::fd_size(raw_fd);
    std::string what = name.empty() ? "fd " + std::to_string(raw_fd) : "/" + name;
    if (size == 0) throw Error("shared memory " + what + " has size 0");
    return from(std::make_unique<FdMapping>(std::move(fd), size, what), std::move(name));
}

std::shared_ptr<Segment> Segment::from(std::unique_ptr<Mapping> mapping, std::string name) {
    return registered(std::shared_ptr<Segment>(new Segment(std::move(mapping), std::move(name))));
}

Segment::Segment(std::unique_ptr<Mapping> mapping, std::string name) noexcept
    : mapping_(std::move(mapping)), base_(mapping_->data()), size_(mapping_->size()),
      fd_(mapping_->fd()), name_(std::move(name)) {}

Segment::~Segment() {
    {
        // Forget this fd before the mapping closes it, so a segment that
        // reuses the number is never mistaken for this one.
        Registry& r = registry();
        std::lock_guard<std::mutex> g(r.mu);
        auto it = r.by_fd.find(fd_);
        if (it != r.by_fd.end() && it->second.expired()) r.by_fd.erase(it);
        if (auto id = os::try_file_id(fd_)) {
            auto in = r.by_inode.find({id->dev, id->ino});
            if (in != r.by_inode.end() && in->second.expired()) r.by_inode.erase(in);
        }
    }
    mapping_.reset();
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
    const os::FileId id = os::file_id(fd);
    return HandleRef{fd, id.dev, id.ino, size, offset, os::pid()};
}

// The file ref.fd names here, if it is the one the handle refers to.
std::optional<os::FileId> same_file(const HandleRef& ref) noexcept {
    auto id = os::try_file_id(ref.fd);
    if (!id || id->dev != ref.dev || id->ino != ref.ino) return std::nullopt;
    return id;
}

[[noreturn]] void throw_not_held(const HandleRef& ref) {
    const std::string sender = "pid " + std::to_string(ref.pid);
    const bool sender_alive = ref.pid > 0 && os::process_exists(ref.pid);
    throw SerializationError(
        "an mproc handle (Queue, Pipe end, Lock, Value, ...) reached a process that does not hold "
        "its shared memory (fd " + std::to_string(ref.fd) + " of " + sender +
        (sender_alive ? ", which is running but whose memory this process cannot reach" : ", which has exited") +
        "). A handle reaches only processes that inherit it: pass it to a Process as an "
        "argument; for a Pool or an executor, create the Queue (or Pipe, Lock, ...) before the "
        "Pool with the fork start method, or pass it in the pool's initargs; or use a "
        "manager's proxy instead (mgr.Queue<T>(), mgr.dict(), ...), which any process can use");
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
// The sender's segment through /proc/<pid>/fd/<fd>, if it is still there
// and still the same file; an invalid Fd otherwise.
os::Fd reopen_from_sender(const HandleRef& ref) {
    if (ref.pid <= 0 || ref.pid == os::pid() || ref.fd < 0) return {};
    const std::string path = "/proc/" + std::to_string(ref.pid) + "/fd/" + std::to_string(ref.fd);
    os::Fd fd = os::try_open_rw(path);
    auto id = os::try_file_id(fd.get());
    if (!id || id->dev != ref.dev || id->ino != ref.ino || id->size != ref.size) return {};
    return fd;
}
}  // namespace

std::pair<SegmentPtr, std::byte*> HandleReader::segment(std::size_t bytes) {
    if (next_ref_ >= refs_.size()) throw SerializationError("handle is missing a segment reference");
    const HandleRef& ref = refs_[next_ref_++];
    if (ref.size == 0) throw SerializationError("handle has a descriptor where a segment belongs");
    Registry& r = registry();
    std::lock_guard<std::mutex> one_at_a_time(r.import_mu);
    SegmentPtr seg;
    if (auto id = same_file(ref)) {
        {
            std::lock_guard<std::mutex> g(r.mu);
            auto it = r.by_fd.find(ref.fd);
            if (it != r.by_fd.end()) seg = it->second.lock();
        }
        if (!seg) {
            // First use here: a spawned child inherited the fd. Map it once
            // and own it; later handles to the same segment find this mapping.
            if (id->size != ref.size)
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
    if (!same_file(ref)) throw_not_held(ref);
    Registry& r = registry();
    std::lock_guard<std::mutex> one_at_a_time(r.import_mu);
    {
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

void HandleWriter::text(std::string_view s) {
    value(s.size());
    for (std::size_t i = 0; i < s.size(); i += 8) {
        std::uint64_t v = 0;
        std::memcpy(&v, s.data() + i, std::min<std::size_t>(8, s.size() - i));
        value(v);
    }
}

std::string HandleReader::text(std::size_t max_length) {
    const std::uint64_t n = value();
    if (n > max_length || (n + 7) / 8 > values_.size() - next_value_)
        throw SerializationError("handle has a malformed name (" + std::to_string(n) + " bytes)");
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; i += 8) {
        const std::uint64_t v = value();
        std::memcpy(s.data() + i, &v, std::min<std::size_t>(8, n - i));
    }
    return s;
}

HandleExportScope::HandleExportScope() : prev_(t_scope) { t_scope = this; }
HandleExportScope::~HandleExportScope() { t_scope = prev_; }

}  // namespace mproc::detail
