// mproc_test::PiecewiseInBuf: an InBuf that serves its input in pieces of
// `Piece` bytes, as a ring serves an item that wraps around its end. Loads
// through it must give what loads of the whole span give. Shared by
// test_serialization and the fuzz target (fuzz/fuzz_loads.cpp).
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>

#include <mproc/serialization.hpp>

namespace mproc_test {

template <std::size_t Piece = 5>
class PiecewiseInBuf final : public mproc::detail::InBuf {
public:
    explicit PiecewiseInBuf(std::span<const std::byte> all) : all_(all) { serve(); }

protected:
    bool refill() override { return serve(); }

private:
    bool serve() {
        if (at_ >= all_.size()) return false;
        std::size_t n = std::min<std::size_t>(Piece, all_.size() - at_);
        set_area(all_.subspan(at_, n), all_.size() - at_ - n);
        at_ += n;
        return true;
    }
    std::span<const std::byte> all_;
    std::size_t at_ = 0;
};

}  // namespace mproc_test
