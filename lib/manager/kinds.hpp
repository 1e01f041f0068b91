// What the local backend needs from each kind beyond the operation table:
// the operations whose argument is a function of the caller's (modify's
// rewrite, sort's order), which run only where the caller is. Internal
// header (lib/manager/).
#pragma once

#include "manager/object.hpp"
#include "mproc/detail/manager_core.hpp"

namespace mproc::detail::mgr {

/// modify() of a dict's key: rewrite(old value or nullptr) under the lock.
void dict_rewrite(const Target& t, Bytes key, const Rewriter& rewrite);
/// modify() of a list's item (IndexError if out of range).
void list_rewrite(const Target& t, std::int64_t index, const Rewriter& rewrite);
/// modify() of a Value.
void value_rewrite(const Target& t, const Rewriter& rewrite);
/// sort(): `order` sees every item under the lock and gives the new order.
void list_reorder_here(const Target& t, const Reorderer& order);

}  // namespace mproc::detail::mgr
