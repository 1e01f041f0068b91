// Exceptions across processes: see include/mproc/detail/exception_codec.hpp.
#include "mproc/detail/exception_codec.hpp"

#include <cxxabi.h>
#include <tuple>
#include <typeinfo>

#include "mproc/process.hpp"
#include "os/os.hpp"

namespace mproc::detail {

namespace {

using Wire = std::tuple<std::string, std::string, std::int64_t, std::string, std::int32_t>;

// The fields for `e`; `cut` limits the message. Throws only bad_alloc.
ExceptionFields fields_of(const std::exception_ptr& e, bool cut) {
    ExceptionFields f;
    bool from_here = true;
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& x) {
        const auto* remote = dynamic_cast<const RemoteOriginBase*>(&x);
        if (const auto* r = dynamic_cast<const RemoteError*>(&x)) f.type = r->type_name();
        else if (remote) f.type = remote->origin().type_name;
        else f.type = type_name(typeid(x));
        if (remote) {
            f.origin = remote->origin();
            from_here = false;
        }
        if (const auto* o = dynamic_cast<const OSError*>(&x)) f.code = o->code();
        f.what = x.what();
    } catch (...) {
        const std::type_info* t = abi::__cxa_current_exception_type();
        f.type = t ? type_name(*t) : std::string("unknown");
        f.what = "a value of type `" + f.type +
                 "` was thrown, which is not a std::exception (throw a type derived from "
                 "std::exception to keep its message and type)";
    }
    if (from_here) {
        f.origin.process_name = current_process().name();
        f.origin.pid = os::pid();
    }
    f.origin.type_name = f.type;
    if (cut && f.what.size() > kMaxExceptionMessage) {
        const std::size_t all = f.what.size();
        f.what.resize(kMaxExceptionMessage);
        f.what += "... [message cut: " + std::to_string(all) + " bytes in all]";
    }
    return f;
}

void write_record(OutBuf& out, const ExceptionFields& f) {
    dump_to(out, Wire{f.type, f.what, f.code, f.origin.process_name, f.origin.pid});
}

}  // namespace

std::vector<std::byte> exception_bytes(std::exception_ptr e) noexcept {
    try {
        ExceptionFields f = fields_of(e, true);
        VectorOutBuf out(128 + f.what.size());
        write_record(out, f);
        return out.take();
    } catch (...) {
    }
    try {
        // Out of memory for the real record: a short one that says so.
        ExceptionFields f;
        f.type = "mproc::Error";
        f.what = "an exception was raised but could not be sent (out of memory)";
        f.origin.pid = os::pid();
        VectorOutBuf out(256);
        write_record(out, f);
        return out.take();
    } catch (...) {
        return {};
    }
}

void encode_exception(OutBuf& out, std::exception_ptr e) noexcept {
    std::vector<std::byte> bytes = exception_bytes(std::move(e));
    try {
        out.write(bytes.data(), bytes.size());
    } catch (...) {
        // The reader then finds a truncated record: SerializationError there.
    }
}

std::exception_ptr decode_exception(InBuf& in) {
    auto [type, what, code, origin_name, origin_pid] = load_from<Wire>(in);
    ExceptionFields f;
    f.type = std::move(type);
    f.what = std::move(what);
    f.code = code;
    f.origin = RemoteOrigin{std::move(origin_name), origin_pid, f.type};
    if (ExceptionFactory make = find_exception_type(f.type)) {
        try {
            return make(f);
        } catch (...) {
            // Its constructor threw: fall back to RemoteError below.
        }
    }
    return std::make_exception_ptr(FromRemote<RemoteError>(RemoteError(f.type, f.what), f.origin));
}

std::exception_ptr exception_from_bytes(std::span<const std::byte> bytes) {
    InBuf in(bytes);
    std::exception_ptr e = decode_exception(in);
    if (in.remaining() != 0) throw_trailing_bytes(in.remaining(), "an exception record");
    return e;
}

ExceptionText describe_exception(std::exception_ptr e) noexcept {
    try {
        ExceptionFields f = fields_of(e, false);
        return ExceptionText{std::move(f.type), std::move(f.what)};
    } catch (...) {
        return ExceptionText{"unknown exception", ""};
    }
}

}  // namespace mproc::detail
