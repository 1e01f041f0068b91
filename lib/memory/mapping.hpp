// The one interface behind a Segment's memory: what maps it, what holds its
// fd, and how both are released. Two kinds implement it: FdMapping (an fd
// mapped by the os layer: memfds, and any fd a handle brought) in
// segment.cpp, and the Boost.Interprocess objects with their mapped_region
// (named segments, files) in boost_mapping.cpp. Internal header.
#pragma once

#include <cstddef>

namespace mproc::detail {

class Mapping {
public:
    virtual ~Mapping() = default;
    virtual std::byte* data() const noexcept = 0;
    virtual std::size_t size() const noexcept = 0;
    /// The fd children inherit; open as long as the mapping lives.
    virtual int fd() const noexcept = 0;
};

}  // namespace mproc::detail
