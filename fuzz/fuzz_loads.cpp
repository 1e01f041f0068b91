// libFuzzer target for mproc::loads: whatever the bytes, loading must
// return a value or throw mproc::SerializationError — never crash, read out
// of bounds, hit undefined behaviour, allocate without bound or recurse
// off the stack. A value that loads must dump and load again.
//
// The first input byte picks the type and the mode: with its top bit clear
// the rest is a body behind a valid header for that type (so the fuzzer
// works on the codecs, not on finding the type hash); with it set the
// bytes go to loads as they are (header checks included).
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
#include <boost/serialization/forward_list.hpp>
#include <boost/serialization/optional.hpp>
#include <boost/serialization/split_member.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

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
    std::forward_list<int> fl;
    std::vector<std::string> v;
    bool operator==(const WithBoostTypes&) const = default;
    template <class Archive>
    void serialize(Archive& ar, unsigned) {
        ar & maybe & fl & v;
    }
};

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
void one(const std::uint8_t* data, std::size_t size, bool raw) {
    std::vector<std::byte> bytes;
    if (!raw) {
        bytes.resize(mproc::detail::kHeaderSize);
        mproc::detail::encode_header(bytes.data(), mproc::detail::type_hash<T>());
    }
    bytes.insert(bytes.end(), reinterpret_cast<const std::byte*>(data),
                 reinterpret_cast<const std::byte*>(data) + size);
    T value;
    try {
        value = mproc::loads<T>(bytes);
    } catch (const mproc::SerializationError&) {
        return;
    }
    // What loaded must go round again (the same value, where == exists).
    std::vector<std::byte> again = mproc::dumps(value);
    check_equal(mproc::loads<T>(again), value);
}

// Types with no default constructor or with handles: load only.
template <class T>
void load_only(const std::uint8_t* data, std::size_t size, bool raw) {
    std::vector<std::byte> bytes;
    if (!raw) {
        bytes.resize(mproc::detail::kHeaderSize);
        mproc::detail::encode_header(bytes.data(), mproc::detail::type_hash<T>());
    }
    bytes.insert(bytes.end(), reinterpret_cast<const std::byte*>(data),
                 reinterpret_cast<const std::byte*>(data) + size);
    try {
        (void)mproc::loads<T>(bytes);
    } catch (const mproc::SerializationError&) {
    }
}

using FnTask = std::tuple<int (*)(int), int (*)(int, int), std::string>;

constexpr int kTypes = 21;

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
    w.fl = {1, 2};
    w.v = {"v"};
    seed(dir, 20, w);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    if (const char* dir = std::getenv("MPROC_FUZZ_SEEDS")) write_seeds(dir);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const bool raw = (data[0] & 0x80) != 0;
    dispatch((data[0] & 0x7f) % kTypes, data + 1, size - 1, raw);
    return 0;
}
