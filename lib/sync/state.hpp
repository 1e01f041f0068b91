// Helpers shared by the sync objects' sources: each object's state lives at
// the start of its own anonymous segment (or inside another object's) and
// starts with nothing a handle could mistake for another kind.
//
// Internal header.
#pragma once

#include <cstdint>
#include <new>
#include <string>
#include <utility>

#include "mproc/detail/segment.hpp"
#include "mproc/errors.hpp"

namespace mproc::detail {

inline constexpr std::uint32_t kMutexMagic = 0x4d504c4b;      // "MPLK"
inline constexpr std::uint32_t kSemaphoreMagic = 0x4d505345;  // "MPSE"
inline constexpr std::uint32_t kEventMagic = 0x4d504556;      // "MPEV"
inline constexpr std::uint32_t kConditionMagic = 0x4d50434f;  // "MPCO"
inline constexpr std::uint32_t kBarrierMagic = 0x4d504241;    // "MPBA"

template <class State>
State* checked(std::byte* p, std::uint32_t magic, const char* what) {
    auto* st = reinterpret_cast<State*>(p);
    if (st->magic != magic) throw SerializationError(std::string("handle does not point at a ") + what);
    return st;
}

template <class State>
std::pair<SegmentPtr, State*> new_state(const char* label) {
    auto seg = Segment::anonymous(sizeof(State), label);
    return {seg, new (seg->data()) State()};
}

}  // namespace mproc::detail
