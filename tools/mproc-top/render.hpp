// mproc-top's two outputs of a census: a table for people, JSON for scripts.
#pragma once

#include <string>

#include "census.hpp"

namespace mproc::top {

/// {"objects": [...], "pools": [...]}; see README's "mproc-top" for the fields.
std::string to_json(const Census& c);
std::string to_text(const Census& c);

}  // namespace mproc::top
