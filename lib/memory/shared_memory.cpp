// SharedMemory and MappedFile. See include/mproc/shared_memory.hpp.
//
// Named segments and files are mapped by Boost.Interprocess
// (boost_mapping.cpp); anonymous ones are memfds (segment.cpp). A tracked
// create asks the tracker to make the name (shm_tracker_client.hpp says why
// the tracker and not this process), then opens, sizes and maps it here.
#include "mproc/shared_memory.hpp"

#include <cerrno>
#include <climits>

#include "memory/boost_mapping.hpp"
#include "memory/shm_tracker_client.hpp"
#include "os/os.hpp"

namespace mproc {

namespace {

void check_name(const std::string& name, const char* call) {
    if (name.empty() || name.find('/') != std::string::npos || name.find('\0') != std::string::npos ||
        name == "." || name == ".." || name.size() > NAME_MAX)
        throw ValueError(std::string(call) + ": a shared memory name must be 1 to " +
                         std::to_string(NAME_MAX) + " bytes with no '/': \"" + name + "\"");
}

detail::SegmentPtr create_tracked(const std::string& name, std::size_t size) {
    const detail::shm_tracker::Inode made = detail::shm_tracker::reserve(name);
    detail::shm_tracker::fault_point("reserved");
    try {
        return detail::Segment::from(detail::boost_mapping::open(name, &made, size), name);
    } catch (...) {
        try {
            detail::boost_mapping::remove(name);
        } catch (...) {
        }
        detail::shm_tracker::forget(name);
        throw;
    }
}

}  // namespace

SharedMemory::SharedMemory(std::size_t size)
    : seg_(detail::Segment::anonymous(size, "mproc-shared-memory")) {}

SharedMemory SharedMemory::create(const std::string& name, std::size_t size, SharedMemoryOptions options) {
    check_name(name, "SharedMemory::create");
    if (size == 0) throw ValueError("SharedMemory::create(\"" + name + "\"): size must be > 0");
    try {
        if (options.track) return SharedMemory(create_tracked(name, size), name);
        return SharedMemory(detail::Segment::from(detail::boost_mapping::create(name, size), name), name);
    } catch (const OSError& e) {
        if (e.code() != EEXIST) throw;
        throw OSError("SharedMemory::create(\"" + name + "\"): " + e.what() + ": attach(\"" + name +
                          "\") to use the segment that has this name, or pick another name",
                      EEXIST);
    }
}

SharedMemory SharedMemory::attach(const std::string& name, std::size_t size) {
    check_name(name, "SharedMemory::attach");
    auto seg = detail::Segment::from(detail::boost_mapping::open(name), name);
    if (size != 0 && seg->size() < size)
        throw Error("SharedMemory::attach(\"" + name + "\"): segment has " +
                    std::to_string(seg->size()) + " bytes, " + std::to_string(size) + " were asked for");
    return SharedMemory(std::move(seg), name);
}

void SharedMemory::unlink() const {
    if (name_.empty()) throw ValueError("SharedMemory::unlink(): an anonymous segment has no name");
    // Unlink first, forget second: dying in between leaves the tracker a
    // name that is gone, which it skips, never a name it no longer tracks.
    detail::boost_mapping::remove(name_);
    detail::shm_tracker::forget(name_);
}

void SharedMemory::mproc_export(detail::HandleWriter& w) const {
    w.segment(seg_, seg_->data());
    w.text(name_);
}

SharedMemory SharedMemory::mproc_import(detail::HandleReader& r) {
    auto [seg, p] = r.segment(0);
    (void)p;
    std::string name = r.text(NAME_MAX);
    return SharedMemory(std::move(seg), std::move(name));
}

MappedFile::MappedFile(const std::string& path, std::size_t size) : path_(path) {
    // mproc's promise beyond Boost's file_mapping: create the file if it is
    // missing and grow it to `size`. Then Boost maps what is there.
    os::Fd made = os::open_file_rw(path, size);
    seg_ = detail::Segment::from(detail::boost_mapping::map_file(path), {});
    if (!os::file_id(made.get()).same_file(os::file_id(seg_->fd())))
        throw OSError("MappedFile(\"" + path + "\"): the file was replaced while it was being opened", EAGAIN);
}

void MappedFile::flush() { os::msync(seg_->data(), seg_->size(), path_); }

void MappedFile::mproc_export(detail::HandleWriter& w) const {
    w.segment(seg_, seg_->data());
    w.text(path_);
}

MappedFile MappedFile::mproc_import(detail::HandleReader& r) {
    auto [seg, p] = r.segment(0);
    (void)p;
    std::string path = r.text(PATH_MAX);
    return MappedFile(std::move(seg), std::move(path));
}

}  // namespace mproc
