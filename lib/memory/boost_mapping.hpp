// Named shared memory and mapped files on Boost.Interprocess
// (shared_memory_object, file_mapping, mapped_region), behind the Mapping
// interface, with Boost's exceptions turned into mproc's OSError / Error.
// Boost's headers stay in boost_mapping.cpp. Internal header.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "memory/mapping.hpp"
#include "memory/shm_tracker_client.hpp"

namespace mproc::detail::boost_mapping {

/// Makes /dev/shm/<name> (O_EXCL, mode 0600) of `size` bytes and maps it.
std::unique_ptr<Mapping> create(const std::string& name, std::size_t size);
/// Opens an existing /dev/shm/<name> and maps all of it. With `made` (the
/// tracker made it empty a moment ago) checks it is still that file and
/// sizes it to `size` first.
std::unique_ptr<Mapping> open(const std::string& name, const shm_tracker::Inode* made = nullptr,
                              std::size_t size = 0);
/// shm_unlink; OSError (ENOENT, ...) if it fails.
void remove(const std::string& name);
/// Maps all of an existing file, read-write, MAP_SHARED.
std::unique_ptr<Mapping> map_file(const std::string& path);

}  // namespace mproc::detail::boost_mapping
