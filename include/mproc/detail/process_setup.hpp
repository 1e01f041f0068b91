// mproc::detail::ChildSetup — state a process hands to every child it
// starts by spawn or forkserver before the child's target runs (what
// Python's spawn "preparation data" carries). A layer above process
// (logging, say) registers a piece: in the parent, `save` writes the
// handles and values the child needs (run inside Process::start, so the fds
// of the segments it exports are passed to the child like an argument's);
// in the child, `load` reads them back, after the child knows who it is
// (current_process()) and before its target. Forked children share the
// parent's memory image and need no piece: they skip this. Every child
// re-exports what it loaded to its own children, so grandchildren get it
// too. Not a public API.
//
// A piece is found in the child by its name: register each piece at
// static initialization (the child runs the same executable, and has
// registered the same pieces before mproc::init reads its payload). A
// payload naming a piece this executable lacks makes the child fail to
// start, naming it.
//
// Thread safety: registration and the calls may come from any thread.
// `save` runs on the thread that starts a child, `load` once, on the
// child's main thread. A piece whose `save` throws fails that start().
#pragma once

#include "mproc/detail/segment.hpp"

namespace mproc::detail {

struct ChildSetup {
    /// Unique: "mproc.log".
    const char* name;
    /// In the parent, for one child. May write nothing.
    void (*save)(HandleWriter& w);
    /// In the child: reads exactly what `save` wrote. Throws
    /// SerializationError on bad data (the child then exits with code 1).
    void (*load)(HandleReader& r);
    /// Optional, in every process (forked children too): at its end, after
    /// its children are joined — a child's after its target, the main
    /// process's at exit() once it started a child (Python's finalizers
    /// in util._exit_function). Must not throw.
    void (*at_exit)() noexcept = nullptr;
};

/// Adds `piece` (static storage: it is kept by address) for every child
/// started from now on; a second piece of the same name replaces the first.
/// Returns true, so that `static const bool x = register_child_setup(...)`
/// registers at static initialization.
bool register_child_setup(const ChildSetup& piece);

}  // namespace mproc::detail
