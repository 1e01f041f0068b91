// libFuzzer target for mproc::loads: whatever the bytes, loading must
// return a value or throw mproc::SerializationError — never crash, read out
// of bounds, hit undefined behaviour, allocate without bound or recurse
// off the stack. A value that loads must dump and load again, and load the
// same from the same bytes served in 5-byte pieces (a ring's wrapped item:
// the codecs' runs-of-bytes fast path then gives way to the general path
// at every piece boundary, and both must agree).
//
// Allocation: while loads runs, the sanitizer's malloc hooks count what it
// holds; more than kAllocPerByte bytes per input byte (plus kAllocSlack) is
// a crash. That is far above what legitimately decoded elements take (the
// worst, a set of empty deques, ~700 bytes per byte) and far below what a
// reservation sized by a hostile length would (a vector of the 4 KiB Wide
// below reserved 4096 bytes per byte before the fix). Unless the command
// line says otherwise, a single malloc over 64 MiB is a crash as well
// (libFuzzer's -malloc_limit_mb; -rss_limit_mb stays at its 2 GiB).
//
// The first input byte picks the type and the mode: its low 6 bits the
// type; with bit 7 clear the rest is a body behind a valid header for that
// type (so the fuzzer works on the codecs, not on finding the type hash),
// with it set the bytes go to loads as they are (header checks included).
//
// Build and run (see also `./build.sh fuzz`):
//   cmake -S . -B build/fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++-14 \
//         -DMPROC_BUILD_FUZZERS=ON -DMPROC_BUILD_TESTS=OFF
//   cmake --build build/fuzz --target fuzz_loads
//   mkdir -p corpus && MPROC_FUZZ_SEEDS=corpus build/fuzz/fuzz/fuzz_loads corpus -max_len=4096
// MPROC_FUZZ_SEEDS=<dir> writes one valid encoding of each type there
// first, as seeds.
#include <mproc/serialization.hpp>
#include <mproc/sync.hpp>

#include <boost/serialization/array_wrapper.hpp>
#include <boost/serialization/base_object.hpp>
#include <boost/serialization/optional.hpp>
#include <boost/serialization/split_member.hpp>
#include <boost/serialization/valarray.hpp>

#include <sanitizer/allocator_interface.h>

#include "../tests/piecewise_inbuf.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <forward_list>
#include <fstream>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <valarray>
#include <vector>

namespace {

struct Point {
    int id;
    std::int64_t x, y;
    bool operator==(const Point&) const = default;
};

struct Record {
    std::string name;
    std::vector<int> values;
    std::optional<Point> where;
    std::map<std::string, std::variant<int, std::string>> attrs;
    std::tuple<int, std::set<std::string>> extra;
    bool operator==(const Record&) const = default;
    template <class Archive>
    void serialize(Archive& ar, unsigned) {
        ar & name & values & where & attrs & extra;
    }
};

struct Tree {
    int value = 0;
    std::vector<Tree> children;
    bool operator==(const Tree&) const = default;
    template <class Archive>
    void serialize(Archive& ar, unsigned) {
        ar & value & children;
    }
};

struct Base {
    std::uint16_t base_value = 0;
    template <class Archive>
    void serialize(Archive& ar, unsigned) {
        ar & BOOST_SERIALIZATION_NVP(base_value);
    }
};
struct Derived : Base {
    int arr[4] = {};
    std::int64_t dyn[3] = {};
    std::string s;
    template <class Archive>
    void serialize(Archive& ar, unsigned) {
        ar & boost::serialization::base_object<Base>(*this);
        ar & BOOST_SERIALIZATION_NVP(arr);
        ar & boost::serialization::make_array(dyn, 3);
        ar & s;
    }
    bool operator==(const Derived& o) const {
        return base_value == o.base_value && std::equal(arr, arr + 4, o.arr) && std::equal(dyn, dyn + 3, o.dyn) &&
               s == o.s;
    }
};

struct Split {
    std::vector<std::string> words;
    template <class Archive>
    void save(Archive& ar, unsigned) const {
        ar << words;
    }
    template <class Archive>
    void load(Archive& ar, unsigned) {
        ar >> words;
    }
    BOOST_SERIALIZATION_SPLIT_MEMBER()
    bool operator==(const Split&) const = default;
};

// Members that go through Boost's own serialization code.
struct WithBoostTypes {
    boost::optional<std::string> maybe;
    std::valarray<int> va;
    std::vector<std::string> v;
    bool operator==(const WithBoostTypes& o) const {
        return maybe == o.maybe && va.size() == o.va.size() && std::equal(std::begin(va), std::end(va), std::begin(o.va)) &&
               v == o.v;
    }
    template <class Archive>
    void serialize(Archive& ar, unsigned) {
        ar & maybe & va & v;
    }
};

// Large in memory (4 KiB), 64 bytes and a bool on the wire.
struct Wide {
    std::array<std::uint64_t, 8> head{};
    bool flag = false;
    std::array<char, 4096 - 72> pad{};
    bool operator==(const Wide& o) const { return head == o.head && flag == o.flag; }
    template <class Archive>
    void serialize(Archive& ar, unsigned) {
        ar & head & flag;
    }
};

// ---- what a load holds -----------------------------------------------------

constexpr std::size_t kAllocPerByte = 1024;
constexpr std::size_t kAllocSlack = std::size_t{1} << 20;

struct Held {
    bool on = false;
    std::size_t live = 0;
    std::size_t peak = 0;
} held;  // libFuzzer runs inputs on one thread

void on_malloc(const volatile void*, std::size_t n) {
    if (!held.on) return;
    held.live += n;
    held.peak = std::max(held.peak, held.live);
}
void on_free(const volatile void* p) {
    if (!held.on || p == nullptr) return;
    held.live -= std::min(held.live, __sanitizer_get_allocated_size(const_cast<const void*>(p)));
}

/// Runs `f` (a load of `input_size` bytes), crashing if it held more than
/// the bound at any moment.
template <class F>
auto holding_little(std::size_t input_size, F&& f) {
    struct Check {
        std::size_t input_size;
        ~Check() {
            held.on = false;
            if (held.peak > kAllocPerByte * input_size + kAllocSlack) {
                std::fprintf(stderr, "loads of %zu bytes held %zu bytes at its peak\n", input_size, held.peak);
                std::abort();
            }
        }
    } check{input_size};
    held = Held{true, 0, 0};
    return f();
}

// ---- the same bytes in pieces -----------------------------------------------

/// load_from over 5-byte pieces, exactly as loads (trailing bytes refused).
template <class T>
std::optional<T> load_in_pieces(const std::vector<std::byte>& bytes) {
    mproc_test::PiecewiseInBuf<5> in(bytes);
    try {
        T v = mproc::detail::load_from<T>(in);
        if (in.remaining() != 0) return std::nullopt;
        return v;
    } catch (const mproc::SerializationError&) {
        return std::nullopt;
    }
}

int twice(int x) { return 2 * x; }
int add(int a, int b) { return a + b; }

using Deep = std::map<std::string, std::vector<std::optional<std::tuple<int, std::string, std::variant<
                                                   std::monostate, std::set<int>, std::array<Point, 2>>>>>>;

template <class T>
void check_equal(const T& a, const T& b) {
    if constexpr (requires { a == b; }) {
        if (!(a == b)) {
            std::fprintf(stderr, "re-loaded value differs from the loaded one\n");
            std::abort();
        }
    }
}

template <class T>
std::vector<std::byte> input_for(const std::uint8_t* data, std::size_t size, bool raw) {
    std::vector<std::byte> bytes;
    if (!raw) {
        bytes.resize(mproc::detail::kHeaderSize);
        mproc::detail::encode_header(bytes.data(), mproc::detail::type_hash<T>());
    }
    bytes.insert(bytes.end(), reinterpret_cast<const std::byte*>(data),
                 reinterpret_cast<const std::byte*>(data) + size);
    return bytes;
}

template <class T>
void one(const std::uint8_t* data, std::size_t size, bool raw) {
    const std::vector<std::byte> bytes = input_for<T>(data, size, raw);
    std::optional<T> value = holding_little(bytes.size(), [&]() -> std::optional<T> {
        try {
            return mproc::loads<T>(bytes);
        } catch (const mproc::SerializationError&) {
            return std::nullopt;
        }
    });
    // The same bytes in pieces: the same outcome.
    std::optional<T> pieces = load_in_pieces<T>(bytes);
    if (value.has_value() != pieces.has_value()) {
        std::fprintf(stderr, "loads %s the bytes whole but %s them in pieces\n", value ? "took" : "refused",
                     pieces ? "took" : "refused");
        std::abort();
    }
    if (!value) return;
    check_equal(*pieces, *value);
    // What loaded must go round again (the same value, where == exists).
    std::vector<std::byte> again = mproc::dumps(*value);
    check_equal(mproc::loads<T>(again), *value);
}

// Types with no default constructor or with handles: load only.
template <class T>
void load_only(const std::uint8_t* data, std::size_t size, bool raw) {
    const std::vector<std::byte> bytes = input_for<T>(data, size, raw);
    holding_little(bytes.size(), [&] {
        try {
            (void)mproc::loads<T>(bytes);
        } catch (const mproc::SerializationError&) {
        }
    });
}

using FnTask = std::tuple<int (*)(int), int (*)(int, int), std::string>;

constexpr int kTypes = 27;

void dispatch(int which, const std::uint8_t* d, std::size_t n, bool raw) {
    switch (which) {
        case 0: return one<std::int32_t>(d, n, raw);
        case 1: return one<bool>(d, n, raw);
        case 2: return one<std::string>(d, n, raw);
        case 3: return one<std::vector<std::int64_t>>(d, n, raw);
        case 4: return one<std::vector<std::string>>(d, n, raw);
        case 5: return one<std::vector<bool>>(d, n, raw);
        case 6: return one<std::map<std::string, std::vector<int>>>(d, n, raw);
        case 7: return one<std::unordered_map<int, std::string>>(d, n, raw);
        case 8: return one<std::set<std::deque<std::list<short>>>>(d, n, raw);
        case 9: return one<std::tuple<int, std::optional<std::string>, std::variant<int, std::int64_t, std::string>, bool>>(d, n, raw);
        case 10: return one<std::variant<std::monostate, std::multimap<int, int>, std::array<std::string, 2>>>(d, n, raw);
        case 11: return one<Deep>(d, n, raw);
        case 12: return one<Record>(d, n, raw);
        case 13: return one<Tree>(d, n, raw);
        case 14: return one<Derived>(d, n, raw);
        case 15: return one<Split>(d, n, raw);
        case 16: return one<FnTask>(d, n, raw);
        case 17: return one<std::unordered_multiset<std::u16string>>(d, n, raw);
        case 18: return load_only<std::tuple<mproc::Semaphore, std::vector<mproc::Event>>>(d, n, raw);
        case 19: return one<std::vector<Point>>(d, n, raw);
        case 20: return one<WithBoostTypes>(d, n, raw);
        case 21: return one<std::vector<Wide>>(d, n, raw);
        case 22: return one<std::map<std::string, int>>(d, n, raw);
        case 23: return one<std::unordered_map<std::string, bool>>(d, n, raw);
        case 24: return one<std::vector<std::pair<std::string, bool>>>(d, n, raw);
        case 25: return one<std::multiset<std::basic_string<unsigned char>>>(d, n, raw);
        case 26: return one<std::forward_list<std::pair<std::array<short, 2>, std::string>>>(d, n, raw);
    }
}

template <class T>
void seed(const std::string& dir, int which, const T& value) {
    std::vector<std::byte> b = mproc::dumps(value);
    std::ofstream f(dir + "/seed-" + std::to_string(which), std::ios::binary);
    char sel = static_cast<char>(which);
    f.write(&sel, 1);
    f.write(reinterpret_cast<const char*>(b.data()) + mproc::detail::kHeaderSize,
            static_cast<std::streamsize>(b.size() - mproc::detail::kHeaderSize));
}

void write_seeds(const std::string& dir) {
    seed(dir, 0, std::int32_t{42});
    seed(dir, 1, true);
    seed(dir, 2, std::string("hello"));
    seed(dir, 3, std::vector<std::int64_t>{1, -2, 3});
    seed(dir, 4, std::vector<std::string>{"a", "", "ccc"});
    seed(dir, 5, std::vector<bool>{true, false, true, true, false, false, true, false, true});
    seed(dir, 6, std::map<std::string, std::vector<int>>{{"k", {1, 2}}, {"", {}}});
    seed(dir, 7, std::unordered_map<int, std::string>{{1, "a"}, {2, "bb"}});
    seed(dir, 8, std::set<std::deque<std::list<short>>>{{{1, 2}, {}}, {{3}}});
    seed(dir, 9, std::tuple<int, std::optional<std::string>, std::variant<int, std::int64_t, std::string>, bool>{
                     5, "o", std::string("v"), true});
    seed(dir, 10, std::variant<std::monostate, std::multimap<int, int>, std::array<std::string, 2>>(
                      std::array<std::string, 2>{"x", "y"}));
    Deep deep;
    deep["a"] = {std::nullopt, std::tuple{1, std::string("x"), std::set<int>{1, 2}}};
    deep["b"] = {std::tuple{2, std::string(), std::array<Point, 2>{{{1, 1, 1}, {2, 2, 2}}}}};
    seed(dir, 11, deep);
    seed(dir, 12, Record{"r", {1, 2}, Point{1, 2, 3}, {{"k", 1}, {"s", std::string("v")}}, {3, {"a"}}});
    seed(dir, 13, Tree{1, {{2, {}}, {3, {{4, {}}}}}});
    Derived der;
    der.base_value = 3;
    der.arr[1] = 5;
    der.s = "d";
    seed(dir, 14, der);
    seed(dir, 15, Split{{"one", "two"}});
    seed(dir, 16, FnTask{&twice, &add, "arg"});
    seed(dir, 17, std::unordered_multiset<std::u16string>{u"a", u"a", u"bc"});
    mproc::Semaphore sem(1);
    mproc::Event ev;
    seed(dir, 18, std::make_tuple(sem, std::vector<mproc::Event>{ev}));
    seed(dir, 19, std::vector<Point>{{1, 2, 3}, {4, 5, 6}});
    WithBoostTypes w;
    w.maybe = "m";
    w.va = {1, 2};
    w.v = {"v"};
    seed(dir, 20, w);
    Wide wide;
    wide.head[0] = 7;
    wide.flag = true;
    seed(dir, 21, std::vector<Wide>{wide, Wide{}});
    seed(dir, 22, std::map<std::string, int>{{"key00000", 0}, {"key00001", 1}, {"", -1}});
    seed(dir, 23, std::unordered_map<std::string, bool>{{"yes", true}, {"no", false}});
    seed(dir, 24, std::vector<std::pair<std::string, bool>>{{"b", true}, {"a", false}});
    seed(dir, 25, std::multiset<std::basic_string<unsigned char>>{{1, 2}, {1, 2}, {}});
    seed(dir, 26, std::forward_list<std::pair<std::array<short, 2>, std::string>>{{{1, 2}, "x"}, {{3, 4}, ""}});
}

}  // namespace

// libFuzzer parses its flags after this returns: -malloc_limit_mb=64 is
// added unless the command line sets it.
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
    if (const char* dir = std::getenv("MPROC_FUZZ_SEEDS")) write_seeds(dir);
    __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
    static std::vector<char*> args(*argv, *argv + *argc);
    const bool limit_given = std::any_of(args.begin(), args.end(), [](const char* a) {
        return std::string_view(a).starts_with("-malloc_limit_mb=");
    });
    if (!limit_given) {
        static char limit[] = "-malloc_limit_mb=64";
        args.push_back(limit);
        args.push_back(nullptr);
        *argc = static_cast<int>(args.size() - 1);
        *argv = args.data();
    }
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const bool raw = (data[0] & 0x80) != 0;
    dispatch((data[0] & 0x3f) % kTypes, data + 1, size - 1, raw);
    return 0;
}
