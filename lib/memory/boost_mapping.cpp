// Mappings made by Boost.Interprocess. See boost_mapping.hpp.
#include "memory/boost_mapping.hpp"

#include <cerrno>

#include <boost/interprocess/file_mapping.hpp>
#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>

#include "mproc/errors.hpp"
#include "os/os.hpp"

namespace bip = boost::interprocess;

namespace mproc::detail::boost_mapping {

namespace {

// A Boost object that holds the fd (shared_memory_object, file_mapping) and
// the region mapped from it; the region goes first, then the fd.
template <class Object>
class BoostMapping final : public Mapping {
public:
    explicit BoostMapping(Object object) : object_(std::move(object)), region_(object_, bip::read_write) {}
    std::byte* data() const noexcept override { return static_cast<std::byte*>(region_.get_address()); }
    std::size_t size() const noexcept override { return region_.get_size(); }
    int fd() const noexcept override { return object_.get_mapping_handle().handle; }

private:
    Object object_;
    bip::mapped_region region_;
};

// Boost reports a failed system call with its errno: keep that as OSError,
// worded like the os layer's ("shm_open("/x") failed: File exists").
[[noreturn]] void rethrow(const bip::interprocess_exception& e, std::string_view call, const std::string& object) {
    if (int err = e.get_native_error()) os::throw_errno(call, object, err);
    if (e.get_error_code() == bip::size_error)
        throw Error(object + " has size 0: nothing to map");
    throw Error(std::string(call) + "(" + object + ") failed: " + e.what());
}

std::string shm_object(const std::string& name) { return "\"/" + name + "\""; }

template <class Object>
std::unique_ptr<Mapping> mapped(Object object, const std::string& what) {
    try {
        return std::make_unique<BoostMapping<Object>>(std::move(object));
    } catch (const bip::interprocess_exception& e) {
        rethrow(e, "mmap", what);
    }
}

}  // namespace

std::unique_ptr<Mapping> create(const std::string& name, std::size_t size) {
    bip::shared_memory_object shm;
    try {
        shm = bip::shared_memory_object(bip::create_only, name.c_str(), bip::read_write, bip::permissions(0600));
    } catch (const bip::interprocess_exception& e) {
        rethrow(e, "shm_open", shm_object(name));
    }
    try {
        shm.truncate(static_cast<bip::offset_t>(size));
        return mapped(std::move(shm), shm_object(name));
    } catch (const bip::interprocess_exception& e) {
        bip::shared_memory_object::remove(name.c_str());
        rethrow(e, "ftruncate", shm_object(name));
    } catch (...) {
        bip::shared_memory_object::remove(name.c_str());
        throw;
    }
}

std::unique_ptr<Mapping> open(const std::string& name, const shm_tracker::Inode* made, std::size_t size) {
    bip::shared_memory_object shm;
    try {
        shm = bip::shared_memory_object(bip::open_only, name.c_str(), bip::read_write);
    } catch (const bip::interprocess_exception& e) {
        rethrow(e, "shm_open", shm_object(name));
    }
    if (made) {
        const os::FileId id = os::file_id(shm.get_mapping_handle().handle);
        if (id.dev != made->dev || id.ino != made->ino)
            throw OSError("SharedMemory::create(\"" + name + "\"): another process replaced the name "
                          "while it was being made; try another name",
                          EEXIST);
        try {
            shm.truncate(static_cast<bip::offset_t>(size));
        } catch (const bip::interprocess_exception& e) {
            rethrow(e, "ftruncate", shm_object(name));
        }
    }
    return mapped(std::move(shm), shm_object(name));
}

void remove(const std::string& name) {
    errno = 0;
    if (!bip::shared_memory_object::remove(name.c_str()))
        os::throw_errno("shm_unlink", shm_object(name), errno ? errno : ENOENT);
}

std::unique_ptr<Mapping> map_file(const std::string& path) {
    bip::file_mapping file;
    try {
        file = bip::file_mapping(path.c_str(), bip::read_write);
    } catch (const bip::interprocess_exception& e) {
        rethrow(e, "open", "\"" + path + "\"");
    }
    // Boost opens without O_CLOEXEC: a spawned child gets the fd only when
    // a handle asks for it.
    os::set_inheritable(file.get_mapping_handle().handle, false);
    return mapped(std::move(file), "\"" + path + "\"");
}

}  // namespace mproc::detail::boost_mapping
