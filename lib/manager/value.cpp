// Manager Values: ValueState::entry is the value's entry, replaced by one
// store (the old one is freed after it).
#include "manager/kinds.hpp"
#include "manager/ops_impl.hpp"
#include "mproc/errors.hpp"

namespace mproc::detail::mgr {

namespace {
/// Publishes entry `e` as the value and frees the one it replaces.
void replace(const Target& t, std::uint64_t e) noexcept {
    ValueState& s = t.state<ValueState>();
    const std::uint64_t old = load(s.entry);
    store(s.entry, e);
    t.heap.free(old);
}
}  // namespace

void impl::value_set(const Target& t, Bytes value) {
    BlockGuard e(t.heap, t.heap.make_entry(0, {}, value));
    Locked g(t);
    replace(t, e.release());
}

void impl::value_get(const Target& t, Sink value) {
    Locked g(t);
    const std::uint64_t e = load(t.state<ValueState>().entry);
    if (e == 0) throw ValueError("mproc::Manager: the Value has no value yet");
    value(t.heap.entry_value(e));
}

bool impl::value_cas(const Target& t, bool present, Bytes expected, Bytes value, Sink now) {
    BlockGuard made(t.heap, t.heap.make_entry(0, {}, value));
    Locked g(t);
    const std::uint64_t e = load(t.state<ValueState>().entry);
    const bool match = present ? (e != 0 && same_bytes(t.heap.entry_value(e), expected)) : e == 0;
    if (!match) {
        if (e) now(t.heap.entry_value(e));
        return false;
    }
    replace(t, made.release());
    return true;
}

void value_rewrite(const Target& t, const Rewriter& rewrite) {
    Locked g(t);
    const std::uint64_t e = load(t.state<ValueState>().entry);
    const Bytes now = e ? t.heap.entry_value(e) : Bytes();
    const Bytes next = rewrite(e ? &now : nullptr);
    replace(t, t.heap.make_entry(0, {}, next));
}

}  // namespace mproc::detail::mgr
