// mproc's Boost archives: the out-of-line parts of Boost's binary archive
// templates, instantiated for mproc::detail::oarchive / iarchive (as Boost's
// own src/binary_[io]archive.cpp do for binary_[io]archive), and the loads
// that guard lengths. See include/mproc/detail/serialize_archive.hpp.
#include "mproc/detail/serialize_archive.hpp"

#include <string>

#include <boost/archive/detail/archive_serializer_map.hpp>
#include <boost/archive/impl/archive_serializer_map.ipp>
#include <boost/archive/impl/basic_binary_iarchive.ipp>
#include <boost/archive/impl/basic_binary_iprimitive.ipp>
#include <boost/archive/impl/basic_binary_oarchive.ipp>
#include <boost/archive/impl/basic_binary_oprimitive.ipp>
#include <boost/serialization/string.hpp>

#include "mproc/detail/serialize_codec.hpp"

namespace boost::archive {
template class detail::archive_serializer_map<mproc::detail::oarchive>;
template class basic_binary_oprimitive<mproc::detail::oarchive, char, std::char_traits<char>>;
template class basic_binary_oarchive<mproc::detail::oarchive>;
template class binary_oarchive_impl<mproc::detail::oarchive, char, std::char_traits<char>>;

template class detail::archive_serializer_map<mproc::detail::iarchive>;
template class basic_binary_iprimitive<mproc::detail::iarchive, char, std::char_traits<char>>;
template class basic_binary_iarchive<mproc::detail::iarchive>;
template class binary_iarchive_impl<mproc::detail::iarchive, char, std::char_traits<char>>;
}  // namespace boost::archive

namespace mproc::detail {

oarchive::oarchive(Writer& w) : base(w.out(), kArchiveFlags), w_(w) {}
oarchive::~oarchive() = default;

void oarchive::save(const std::string& s) { codec_t<std::string>::save(w_, s); }
void oarchive::save(bool b) { codec_t<bool>::save(w_, b); }

iarchive::iarchive(Reader& r) : base(r.in(), kArchiveFlags), r_(r) {}
iarchive::~iarchive() = default;

void iarchive::load_override(boost::serialization::collection_size_type& t) {
    base::load_override(t);
    r_.in().check_count(static_cast<std::size_t>(t), 1);
}

void iarchive::load(std::string& s) {
    s = codec_t<std::string>::load(r_);
}

void iarchive::load(bool& b) {
    b = codec_t<bool>::load(r_);
}

}  // namespace mproc::detail
