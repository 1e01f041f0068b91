// SharedMemory and MappedFile. See include/mproc/shared_memory.hpp.
#include "mproc/shared_memory.hpp"

#include "os/os.hpp"

namespace mproc {

SharedMemory::SharedMemory(std::size_t size)
    : seg_(detail::Segment::anonymous(size, "mproc-shared-memory")) {}

SharedMemory SharedMemory::create(const std::string& name, std::size_t size) {
    if (size == 0) throw ValueError("SharedMemory::create(\"" + name + "\"): size must be > 0");
    os::Fd fd = os::shm_create(name, size);
    try {
        return SharedMemory(detail::Segment::adopt(fd.release(), name));
    } catch (...) {
        ::mproc::os::shm_unlink(name);
        throw;
    }
}

SharedMemory SharedMemory::attach(const std::string& name, std::size_t size) {
    os::Fd fd = os::shm_attach(name);
    std::size_t actual = os::fd_size(fd.get());
    if (size != 0 && actual < size)
        throw Error("SharedMemory::attach(\"" + name + "\"): segment has " +
                    std::to_string(actual) + " bytes, " + std::to_string(size) + " were asked for");
    return SharedMemory(detail::Segment::adopt(fd.release(), name));
}

void SharedMemory::unlink() {
    if (name().empty()) throw ValueError("SharedMemory::unlink(): an anonymous segment has no name");
    os::shm_unlink(name());
}

SharedMemory SharedMemory::mproc_import(detail::HandleReader& r) {
    auto [seg, p] = r.segment(0);
    (void)p;
    return SharedMemory(std::move(seg));
}

MappedFile::MappedFile(const std::string& path, std::size_t size) : path_(path) {
    seg_ = detail::Segment::adopt(os::open_file_rw(path, size).release(), {});
}

void MappedFile::flush() { os::msync(seg_->data(), seg_->size(), path_); }

MappedFile MappedFile::mproc_import(detail::HandleReader& r) {
    auto [seg, p] = r.segment(0);
    (void)p;
    return MappedFile(std::move(seg), {});
}

}  // namespace mproc
