// mproc::detail::oarchive / iarchive — the Boost binary archives that user
// types' serialize() functions see — and Writer / Reader, the state of one
// dumps or loads.
//
// The archives derive from Boost's binary archive implementation (no
// header, no codecvt, no tracking) but route every `ar & member` back into
// mproc's own codecs (serialize_codec.hpp): std containers, optional,
// variant, handles and function references inside a user type are encoded
// exactly as they are outside one, with the same length checks on load.
// User types are serialized by calling their serialize() directly (with
// their BOOST_CLASS_VERSION), not through Boost's object registry: there
// are no pointers to track, so there is nothing for hostile bytes to
// confuse there. Only Boost's own bookkeeping types go to Boost.
//
// An archive is made lazily, once per dumps/loads, the first time a user
// type is met; encodings of std types alone never construct one.
//
// What a load may set aside before it has decoded anything. A container
// that claims n elements may reserve room for them up front (one allocation
// instead of a growing series) only out of its Reader's allowance:
// kSpeculationFactor bytes per input byte, shared by every container of the
// load that is still being decoded, and given back when a container is
// complete (its memory is then that of elements really decoded). Past the
// allowance a container grows as its elements decode (geometrically, so at
// most twice what was decoded). Hence, whatever the bytes claim, the memory
// a load holds is at most the allowance plus what the decoded elements
// themselves need; the length checks (InBuf::check_count) come on top, so a
// claim the input cannot hold fails before anything is allocated.
//
// Thread safety: a Writer / Reader and its archive belong to one call on
// one thread. Nothing here blocks.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>

#include <boost/archive/basic_archive.hpp>
#include <boost/archive/binary_iarchive_impl.hpp>
#include <boost/archive/binary_oarchive_impl.hpp>
#include <boost/archive/detail/register_archive.hpp>
#include <boost/core/nvp.hpp>
#include <boost/serialization/array_optimization.hpp>
#include <boost/serialization/collection_size_type.hpp>
#include <boost/serialization/item_version_type.hpp>
#include <boost/serialization/library_version_type.hpp>
#include <boost/serialization/nvp.hpp>
#include <boost/serialization/serialization.hpp>
#include <boost/serialization/version.hpp>

#include "mproc/detail/serialize_buffers.hpp"
#include "mproc/detail/serialize_traits.hpp"

namespace mproc::detail {

class Writer;
class Reader;
template <class T, Kind K = kind_of<T>()>
struct Codec;

/// Boost's own bookkeeping types: left to Boost's binary encoding.
template <class T>
inline constexpr bool is_boost_internal_v =
    std::is_same_v<T, boost::archive::class_id_type> ||
    std::is_same_v<T, boost::archive::class_id_optional_type> ||
    std::is_same_v<T, boost::archive::class_id_reference_type> ||
    std::is_same_v<T, boost::archive::object_id_type> ||
    std::is_same_v<T, boost::archive::object_reference_type> ||
    std::is_same_v<T, boost::archive::tracking_type> ||
    std::is_same_v<T, boost::archive::version_type> ||
    std::is_same_v<T, boost::archive::class_name_type> ||
    std::is_same_v<T, boost::serialization::library_version_type> ||
    std::is_same_v<T, boost::serialization::item_version_type> ||
    std::is_same_v<T, boost::serialization::collection_size_type>;

template <class T> struct is_nvp : std::false_type {};
template <class T> struct is_nvp<boost::serialization::nvp<T>> : std::true_type {};

inline constexpr unsigned kArchiveFlags =
    boost::archive::no_header | boost::archive::no_codecvt | boost::archive::no_tracking;

class oarchive : public boost::archive::binary_oarchive_impl<oarchive, char, std::char_traits<char>> {
    using base = boost::archive::binary_oarchive_impl<oarchive, char, std::char_traits<char>>;
    using primitive = boost::archive::basic_binary_oprimitive<oarchive, char, std::char_traits<char>>;
    friend class boost::archive::detail::interface_oarchive<oarchive>;
    friend class boost::archive::basic_binary_oarchive<oarchive>;
    friend class boost::archive::save_access;

public:
    explicit oarchive(Writer& w);
    ~oarchive() override;
    Writer& writer() const noexcept { return w_; }

    // Primitive saves Boost's own code may make, encoded as mproc's codecs
    // encode them (iarchive loads them the same way).
    using primitive::save;
    void save(const std::string& s);
    void save(bool b);

    template <class T>
    void save_override(const T& t) {
        using U = std::remove_cv_t<T>;
        if constexpr (is_boost_internal_v<U> || std::is_array_v<U>) {
            base::save_override(t);  // Boost's encoding (C arrays: count + elements)
        } else if constexpr (is_nvp<U>::value) {
            save_override(t.const_value());
        } else if constexpr (!Codec<U>::ok) {
            Codec<U>::diagnose();
        } else {
            Codec<U>::save(w_, t);
        }
    }

private:
    Writer& w_;
};

class iarchive : public boost::archive::binary_iarchive_impl<iarchive, char, std::char_traits<char>> {
    using base = boost::archive::binary_iarchive_impl<iarchive, char, std::char_traits<char>>;
    using primitive = boost::archive::basic_binary_iprimitive<iarchive, char, std::char_traits<char>>;
    friend class boost::archive::detail::interface_iarchive<iarchive>;
    friend class boost::archive::basic_binary_iarchive<iarchive>;
    friend class boost::archive::load_access;

public:
    explicit iarchive(Reader& r);
    ~iarchive() override;
    Reader& reader() const noexcept { return r_; }

    template <class T>
    void load_override(T& t) {
        using U = std::remove_cv_t<T>;
        if constexpr (is_boost_internal_v<U> || std::is_array_v<U>) {
            base::load_override(t);
        } else if constexpr (is_nvp<U>::value) {
            load_override(t.value());
        } else if constexpr (!Codec<U>::ok) {
            Codec<U>::diagnose();
        } else {
            // const_cast: Boost passes wrappers (array_wrapper, ...) as const
            // temporaries that refer to writable storage.
            Codec<U>::load_into(r_, const_cast<U&>(t));
        }
    }
    /// A collection's length, checked against the bytes left before Boost
    /// code sizes anything by it.
    void load_override(boost::serialization::collection_size_type& t);

    // Primitive loads Boost's own code may make, made safe: a string's
    // length is checked against the input before anything is allocated.
    using primitive::load;
    void load(std::string& s);
    void load(bool& b);

private:
    Reader& r_;
};

/// Nested user types deeper than this are a SerializationError (a corrupt
/// or hostile encoding of a recursive type must not exhaust the stack).
inline constexpr unsigned kMaxDepth = 1000;
[[noreturn]] void throw_too_deep();

/// The state of one dump: where bytes go, and the archive for user types.
class Writer {
public:
    explicit Writer(OutBuf& out) noexcept : out_(out) {}
    Writer(const Writer&) = delete;
    Writer& operator=(const Writer&) = delete;

    OutBuf& out() noexcept { return out_; }
    oarchive& archive() {
        if (!ar_) ar_ = std::make_unique<oarchive>(*this);
        return *ar_;
    }
    void enter() {
        if (++depth_ > kMaxDepth) throw_too_deep();
    }
    void leave() noexcept { --depth_; }

private:
    OutBuf& out_;
    unsigned depth_ = 0;
    std::unique_ptr<oarchive> ar_;  // not optional: GCC 12 -O1 -fsanitize=address warns falsely
};

/// Bytes of not-yet-decoded elements a load may reserve, per input byte.
inline constexpr std::size_t kSpeculationFactor = 8;

/// The state of one load.
class Reader {
public:
    explicit Reader(InBuf& in) noexcept
        : in_(in),
          spare_(in.remaining() > SIZE_MAX / kSpeculationFactor ? SIZE_MAX
                                                                 : in.remaining() * kSpeculationFactor) {}
    Reader(const Reader&) = delete;
    Reader& operator=(const Reader&) = delete;

    InBuf& in() noexcept { return in_; }
    iarchive& archive() {
        if (!ar_) ar_ = std::make_unique<iarchive>(*this);
        return *ar_;
    }
    void enter() {
        if (++depth_ > kMaxDepth) throw_too_deep();
    }
    void leave() noexcept { --depth_; }

    /// Takes from the allowance room for up to `n` elements of `each` bytes;
    /// returns how many, and adds their bytes to `taken`.
    std::size_t take_spare(std::uint64_t n, std::size_t each, std::size_t& taken) noexcept {
        const std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(n, spare_ / (each == 0 ? 1 : each)));
        spare_ -= k * each;
        taken += k * each;
        return k;
    }
    void give_spare(std::size_t bytes) noexcept { spare_ += bytes; }

private:
    InBuf& in_;
    unsigned depth_ = 0;
    std::size_t spare_;
    std::unique_ptr<iarchive> ar_;  // not optional: GCC 12 -O1 -fsanitize=address warns falsely
};

/// Room a container reserves for elements it has not decoded yet, drawn
/// from its Reader's allowance and given back when the container is done.
class Speculation {
public:
    /// For `n` claimed elements of `each` bytes: count() of them may be
    /// reserved now.
    Speculation(Reader& r, std::uint64_t n, std::size_t each) noexcept : r_(r), count_(r.take_spare(n, each, bytes_)) {}
    ~Speculation() { r_.give_spare(bytes_); }
    Speculation(const Speculation&) = delete;
    Speculation& operator=(const Speculation&) = delete;
    std::size_t count() const noexcept { return count_; }

private:
    Reader& r_;
    std::size_t bytes_ = 0;
    std::size_t count_;
};

template <class WR>
class DepthGuard {
public:
    explicit DepthGuard(WR& wr) : wr_(wr) { wr_.enter(); }
    ~DepthGuard() { wr_.leave(); }
    DepthGuard(const DepthGuard&) = delete;
    DepthGuard& operator=(const DepthGuard&) = delete;

private:
    WR& wr_;
};

}  // namespace mproc::detail

BOOST_SERIALIZATION_USE_ARRAY_OPTIMIZATION(mproc::detail::oarchive)
BOOST_SERIALIZATION_USE_ARRAY_OPTIMIZATION(mproc::detail::iarchive)
