// The os layer's view of the loaded ELF objects (the main program and its
// shared libraries), for sending functions by reference (function_ref.cpp).
//
// Internal header: never included by a public header.
#pragma once

#include <link.h>

namespace mproc::os {

/// Calls visit(module, ctx) for each loaded object (dl_iterate_phdr: the
/// main program first), until it returns true.
void for_each_module(bool (*visit)(const dl_phdr_info& module, void* ctx), void* ctx);

}  // namespace mproc::os
