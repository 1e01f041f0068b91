// Function references: a function pointer as (module, identity, offset).
// See include/mproc/detail/function_ref.hpp.
//
// Modules are found with os::for_each_module (dl_iterate_phdr: the main
// program is the first object it reports), an address is placed by the module's executable
// PT_LOAD segments, and a module is identified by its GNU build-id note —
// or, for a module linked without one, by a hash of its executable
// segments' bytes (computed once per module and cached).
#include "mproc/detail/function_ref.hpp"

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include <elf.h>

#include "mproc/errors.hpp"
#include "os/modules.hpp"

namespace mproc::detail {

namespace {

std::string hex(const unsigned char* p, std::size_t n) {
    static const char digits[] = "0123456789abcdef";
    std::string s;
    s.reserve(2 * n);
    for (std::size_t i = 0; i < n; ++i) {
        s += digits[p[i] >> 4];
        s += digits[p[i] & 15];
    }
    return s;
}

std::size_t align_up(std::size_t n, std::size_t a) { return (n + a - 1) / a * a; }

/// "build-id:<hex>" from the module's PT_NOTE segments, or "".
std::string build_id(const dl_phdr_info& info) {
    for (ElfW(Half) i = 0; i < info.dlpi_phnum; ++i) {
        const ElfW(Phdr)& ph = info.dlpi_phdr[i];
        if (ph.p_type != PT_NOTE) continue;
        const auto* p = reinterpret_cast<const unsigned char*>(info.dlpi_addr + ph.p_vaddr);
        const std::size_t len = ph.p_filesz;
        const std::size_t align = ph.p_align == 8 ? 8 : 4;
        std::size_t off = 0;
        while (len - off >= sizeof(ElfW(Nhdr))) {
            ElfW(Nhdr) nh;
            std::memcpy(&nh, p + off, sizeof nh);
            off += sizeof nh;
            const std::size_t name_size = align_up(nh.n_namesz, align);
            if (name_size > len - off) break;
            const unsigned char* name = p + off;
            off += name_size;
            const std::size_t desc_size = align_up(nh.n_descsz, align);
            if (desc_size > len - off) break;
            const unsigned char* desc = p + off;
            off += desc_size;
            if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 && std::memcmp(name, "GNU", 4) == 0 &&
                nh.n_descsz > 0)
                return "build-id:" + hex(desc, nh.n_descsz);
        }
    }
    return {};
}

/// "code:<hex>": FNV-1a 64 over the bytes of the executable segments.
std::string code_hash(const dl_phdr_info& info) {
    std::uint64_t h = 14695981039346656037ull;
    for (ElfW(Half) i = 0; i < info.dlpi_phnum; ++i) {
        const ElfW(Phdr)& ph = info.dlpi_phdr[i];
        if (ph.p_type != PT_LOAD || (ph.p_flags & PF_X) == 0) continue;
        const auto* p = reinterpret_cast<const unsigned char*>(info.dlpi_addr + ph.p_vaddr);
        for (std::size_t k = 0; k < ph.p_filesz; ++k) {
            h ^= p[k];
            h *= 1099511628211ull;
        }
    }
    unsigned char b[8];
    std::memcpy(b, &h, 8);
    return "code:" + hex(b, 8);
}

struct IdentityCache {
    std::mutex mu;
    unsigned long long adds = 0, subs = 0;
    std::map<std::pair<std::uintptr_t, std::string>, std::string> by_module;
};

IdentityCache& identity_cache() {
    static IdentityCache* c = new IdentityCache;  // never destroyed: usable from atexit paths
    return *c;
}

std::string identity_of(const dl_phdr_info& info, bool is_main) {
    std::string id = build_id(info);
    if (!id.empty()) return id;
    IdentityCache& c = identity_cache();
    std::lock_guard<std::mutex> g(c.mu);
    if (c.adds != info.dlpi_adds || c.subs != info.dlpi_subs) {  // a library came or went
        c.by_module.clear();
        c.adds = info.dlpi_adds;
        c.subs = info.dlpi_subs;
    }
    auto key = std::make_pair(static_cast<std::uintptr_t>(info.dlpi_addr),
                              std::string(is_main ? "" : info.dlpi_name));
    auto it = c.by_module.find(key);
    if (it == c.by_module.end()) it = c.by_module.emplace(key, code_hash(info)).first;
    return it->second;
}

/// Bytes of code from `offset` to the end of its executable segment; 0 if
/// `offset` is not in one.
std::uint64_t code_bytes_at(const dl_phdr_info& info, std::uint64_t offset) {
    for (ElfW(Half) i = 0; i < info.dlpi_phnum; ++i) {
        const ElfW(Phdr)& ph = info.dlpi_phdr[i];
        if (ph.p_type == PT_LOAD && (ph.p_flags & PF_X) != 0 && offset >= ph.p_vaddr &&
            offset - ph.p_vaddr < ph.p_filesz)
            return ph.p_filesz - (offset - ph.p_vaddr);
    }
    return 0;
}

/// FNV-1a 32 of the first (up to 16) bytes of code at `offset`.
std::uint32_t code_check(const dl_phdr_info& info, std::uint64_t offset, std::uint64_t available) {
    const auto* p = reinterpret_cast<const unsigned char*>(info.dlpi_addr + offset);
    std::uint32_t h = 2166136261u;
    for (std::uint64_t k = 0; k < std::min<std::uint64_t>(available, 16); ++k) {
        h ^= p[k];
        h *= 16777619u;
    }
    return h;
}

const char* module_name(const dl_phdr_info& info, bool is_main) {
    return is_main ? "" : (info.dlpi_name ? info.dlpi_name : "");
}

struct EncodeSearch {
    std::uintptr_t addr = 0;
    std::size_t index = 0;
    bool found = false;
    FunctionRef ref;
};

bool encode_visit(const dl_phdr_info& info, void* data) {
    auto& s = *static_cast<EncodeSearch*>(data);
    const bool is_main = s.index++ == 0;
    if (s.addr < info.dlpi_addr) return false;
    const std::uint64_t offset = s.addr - info.dlpi_addr;
    const std::uint64_t available = code_bytes_at(info, offset);
    if (available == 0) return false;
    s.found = true;
    s.ref.module = module_name(info, is_main);
    s.ref.identity = identity_of(info, is_main);
    s.ref.offset = offset;
    s.ref.code_check = code_check(info, offset, available);
    return true;
}

struct ResolveSearch {
    const FunctionRef* ref = nullptr;
    std::size_t index = 0;
    bool matched = false;
    bool in_code = false;
    std::uintptr_t address = 0;
    std::string main_identity;  // for the error message
};

bool resolve_visit(const dl_phdr_info& info, void* data) {
    auto& s = *static_cast<ResolveSearch*>(data);
    const FunctionRef& ref = *s.ref;
    const bool is_main = s.index++ == 0;
    if (is_main != ref.module.empty()) return false;
    const bool by_build_id = ref.identity.starts_with("build-id:");
    // A library is matched by build-id wherever it was loaded from; one
    // without a build-id by its path (hashing every library would be slow).
    if (!is_main && !by_build_id && ref.module != module_name(info, false)) return false;
    std::string id = identity_of(info, is_main);
    if (is_main) s.main_identity = id;
    if (id != ref.identity) return is_main;
    s.matched = true;
    const std::uint64_t available = code_bytes_at(info, ref.offset);
    s.in_code = available > 0 && code_check(info, ref.offset, available) == ref.code_check;
    if (s.in_code) s.address = static_cast<std::uintptr_t>(info.dlpi_addr + ref.offset);
    return true;
}

std::string describe(const FunctionRef& ref) {
    return (ref.module.empty() ? std::string("the main executable") : ref.module) + " (" + ref.identity +
           ")";
}

}  // namespace

FunctionRef encode_function_address(AnyFunction fn, std::uint32_t signature) {
    if (fn == nullptr) return FunctionRef{{}, {}, 0, signature, 0};
    EncodeSearch s;
    s.addr = reinterpret_cast<std::uintptr_t>(fn);
    os::for_each_module(encode_visit, &s);
    if (!s.found)
        throw SerializationError(
            "cannot send a function by reference: its address is not in the code of the "
            "executable or of a loaded shared library (code generated at run time?)");
    s.ref.signature = signature;
    return s.ref;
}

AnyFunction resolve_function_address(const FunctionRef& ref, std::uint32_t signature) {
    if (ref.signature != signature)
        throw SerializationError(
            "a function reference was made for another function type than the one it is "
            "loaded as");
    if (ref.identity.empty()) {
        if (ref.offset == 0 && ref.module.empty()) return nullptr;
        throw SerializationError("corrupt function reference (no module identity)");
    }
    ResolveSearch s;
    s.ref = &ref;
    os::for_each_module(resolve_visit, &s);
    if (!s.matched) {
        if (ref.module.empty())
            throw SerializationError(
                "a function reference from another build of this program: it names " +
                describe(ref) + ", this executable is " + s.main_identity +
                " (functions travel by reference only between processes of the same build)");
        throw SerializationError("a function reference names " + describe(ref) +
                                 ", which is not loaded in this process");
    }
    if (!s.in_code)
        throw SerializationError("corrupt function reference: offset " + std::to_string(ref.offset) +
                                 " is not the start of a function in " + describe(ref));
    return reinterpret_cast<AnyFunction>(s.address);
}

}  // namespace mproc::detail
