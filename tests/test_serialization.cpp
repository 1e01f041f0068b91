// mproc::dumps / loads: round trips of every supported kind of type, user
// types through Boost.Serialization, handles that stay the same shared
// object, functions by reference (also in a freshly exec'd copy of this
// binary), the streams the channel layers use, and a corruption corpus:
// every truncation, every bit flip and seeded garbage must load or throw
// SerializationError, never crash or allocate without bound. This binary
// replaces operator new to measure what a load of hostile bytes allocates.
#include <catch2/catch.hpp>

#include <mproc/serialization.hpp>
#include <mproc/shared_memory.hpp>
#include <mproc/sync.hpp>

#include <boost/serialization/array_wrapper.hpp>
#include <boost/serialization/base_object.hpp>
#include <boost/serialization/split_member.hpp>
#include <boost/serialization/version.hpp>
// Boost's own serialization of std and Boost types: std types still use
// mproc's codecs; the types mproc does not know use these.
#include <boost/serialization/forward_list.hpp>
#include <boost/serialization/map.hpp>
#include <boost/serialization/optional.hpp>
#include <boost/serialization/string.hpp>
#include <boost/serialization/valarray.hpp>
#include <boost/serialization/vector.hpp>

#include <atomic>
#include <chrono>
#include <cmath>
#include <complex>
#include <cstdlib>
#include <cstring>
#include <forward_list>
#include <limits>
#include <new>
#include <random>
#include <sstream>
#include <thread>
#include <valarray>

#include <sys/wait.h>
#include <unistd.h>

#include "piecewise_inbuf.hpp"
#include "support.hpp"

using mproc::dumps;
using mproc::loads;
using mproc::SerializationError;
using Bytes = std::vector<std::byte>;

// ---- allocation probe -------------------------------------------------------------
//
// Every operator new of this binary goes through counted_new, which keeps
// the block's size in a 16-byte header. While a thread's probe is on, the
// bytes it allocates (and frees, of those) are counted, and the peak of what
// it holds is kept: what a load holds at its worst.

namespace {
struct AllocProbe {
    bool on = false;
    std::size_t live = 0;
    std::size_t peak = 0;
};
thread_local AllocProbe probe;
constexpr std::size_t kProbeHeader = 16;  // keeps new's 16-byte alignment

void* counted_new(std::size_t n) noexcept {
    void* p = std::malloc(n + kProbeHeader);
    if (p == nullptr) return nullptr;
    auto* h = static_cast<std::size_t*>(p);
    h[0] = n;
    h[1] = probe.on ? 1 : 0;
    if (probe.on) {
        probe.live += n;
        probe.peak = std::max(probe.peak, probe.live);
    }
    return static_cast<char*>(p) + kProbeHeader;
}
void* counted_new_or_throw(std::size_t n) {
    if (void* p = counted_new(n)) return p;
    throw std::bad_alloc();
}
void counted_delete(void* q) noexcept {
    if (q == nullptr) return;
    auto* h = reinterpret_cast<std::size_t*>(static_cast<char*>(q) - kProbeHeader);
    if (h[1] != 0 && probe.on) probe.live -= h[0];
    std::free(h);
}

/// The most `f` held at once, in bytes allocated with new.
template <class F>
std::size_t peak_bytes(F&& f) {
    probe = AllocProbe{true, 0, 0};
    try {
        f();
    } catch (...) {
        probe.on = false;
        throw;
    }
    probe.on = false;
    return probe.peak;
}
}  // namespace

void* operator new(std::size_t n) { return counted_new_or_throw(n); }
void* operator new[](std::size_t n) { return counted_new_or_throw(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return counted_new(n); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return counted_new(n); }
void operator delete(void* p) noexcept { counted_delete(p); }
void operator delete[](void* p) noexcept { counted_delete(p); }
void operator delete(void* p, std::size_t) noexcept { counted_delete(p); }
void operator delete[](void* p, std::size_t) noexcept { counted_delete(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { counted_delete(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { counted_delete(p); }

namespace {

template <class T>
T round_trip(const T& v) {
    Bytes b = dumps(v);
    return loads<T>(b);
}

struct Outcome {
    int loaded = 0;
    int rejected = 0;
};

template <class T>
void expect_load_or_error(const Bytes& b, Outcome& out) {
    try {
        (void)loads<T>(b);
        ++out.loaded;
    } catch (const SerializationError&) {
        ++out.rejected;
    } catch (const std::exception& e) {
        FAIL("loads threw something other than SerializationError: " << e.what());
    }
}

enum Color { red, green = 7, blue = -3 };
enum class Small : std::uint8_t { a = 1, b = 200 };
enum class Big : std::int64_t { lo = std::numeric_limits<std::int64_t>::min(), hi = 1LL << 50 };

struct Point {
    int id;
    double x, y;
    bool operator==(const Point&) const = default;
};

struct Packed {
    char tag;
    std::array<std::uint16_t, 3> v;
    Color c;
    bool operator==(const Packed&) const = default;
};

// A public serialize member; members of every std kind, nested.
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

// A private serialize, reached through boost::serialization::access.
class Account {
public:
    Account() = default;
    Account(std::string owner, long cents) : owner_(std::move(owner)), cents_(cents) {}
    bool operator==(const Account&) const = default;

private:
    friend class boost::serialization::access;
    template <class Archive>
    void serialize(Archive& ar, unsigned) {
        ar & owner_ & cents_;
    }
    std::string owner_;
    long cents_ = 0;
};

}  // namespace

// A free serialize in the type's namespace...
namespace geo {
struct Segment {
    Point a, b;
    std::string label;
    bool operator==(const Segment&) const = default;
};
template <class Archive>
void serialize(Archive& ar, Segment& s, unsigned) {
    ar & s.a & s.b & s.label;
}
}  // namespace geo

// ...and one in boost::serialization, as Boost's documentation shows.
namespace plain {
struct Money {
    std::int64_t units = 0;
    std::string currency;
    bool operator==(const Money&) const = default;
};
}  // namespace plain
namespace boost::serialization {
template <class Archive>
void serialize(Archive& ar, plain::Money& m, unsigned) {
    ar & m.units & m.currency;
}
}  // namespace boost::serialization

namespace {

// Split save/load with a class version the load sees.
struct Versioned {
    int a = 0;
    int loaded_version = -1;
    template <class Archive>
    void save(Archive& ar, unsigned) const {
        ar << a;
    }
    template <class Archive>
    void load(Archive& ar, unsigned version) {
        ar >> a;
        loaded_version = static_cast<int>(version);
    }
    BOOST_SERIALIZATION_SPLIT_MEMBER()
};

// Derived class with base_object, nvp, a C array and make_array.
struct Base {
    int base_value = 0;
    template <class Archive>
    void serialize(Archive& ar, unsigned) {
        ar & BOOST_SERIALIZATION_NVP(base_value);
    }
};
struct Derived : Base {
    int arr[4] = {};
    double dyn[3] = {};
    std::string s;
    template <class Archive>
    void serialize(Archive& ar, unsigned) {
        ar & boost::serialization::base_object<Base>(*this);
        ar & BOOST_SERIALIZATION_NVP(arr);
        ar & boost::serialization::make_array(dyn, 3);
        ar & s;
    }
};

// Trivially copyable, but its serialize() wins: only `kept` travels.
struct Explicit {
    int kept = 0;
    int dropped = 0;
    template <class Archive>
    void serialize(Archive& ar, unsigned) {
        ar & kept;
    }
};

// Recursive, through a std container.
struct Tree {
    int value = 0;
    std::vector<Tree> children;
    bool operator==(const Tree&) const = default;
    template <class Archive>
    void serialize(Archive& ar, unsigned) {
        ar & value & children;
    }
};

// No public default constructor: Boost's access constructs it.
class Sealed {
public:
    explicit Sealed(int v) : v_(v) {}
    int v() const { return v_; }

private:
    friend class boost::serialization::access;
    Sealed() = default;
    template <class Archive>
    void serialize(Archive& ar, unsigned) {
        ar & v_;
    }
    int v_ = 0;
};

// A user type holding handles next to data.
struct Shared {
    mproc::Lock lock;
    mproc::Value<int> counter{0};
    std::string tag;
    template <class Archive>
    void serialize(Archive& ar, unsigned) {
        ar & lock & counter & tag;
    }
};

// Members only Boost's own headers know how to serialize.
struct WithBoostTypes {
    boost::optional<std::string> maybe;
    std::valarray<int> va;
    std::vector<std::string> v;  // still mproc's codec
    template <class Archive>
    void serialize(Archive& ar, unsigned) {
        ar & maybe & va & v;
    }
};

int twice(int x) { return 2 * x; }
int thrice(int x) noexcept { return 3 * x; }
double halve(double x) { return x / 2; }

}  // namespace

BOOST_CLASS_VERSION(Versioned, 3)

// ---- compile-time classification -------------------------------------------

TEST_CASE("is_serializable and the raw-bytes fast path are decided at compile time", "[serialization]") {
    using mproc::is_serializable_v;
    using mproc::detail::is_bitwise_v;
    STATIC_REQUIRE(is_serializable_v<int>);
    STATIC_REQUIRE(is_serializable_v<Color>);
    STATIC_REQUIRE(is_serializable_v<Point>);
    STATIC_REQUIRE(is_serializable_v<std::map<std::string, std::vector<std::optional<Point>>>>);
    STATIC_REQUIRE(is_serializable_v<Record>);
    STATIC_REQUIRE(is_serializable_v<Account>);
    STATIC_REQUIRE(is_serializable_v<geo::Segment>);
    STATIC_REQUIRE(is_serializable_v<plain::Money>);
    STATIC_REQUIRE(is_serializable_v<mproc::Lock>);
    STATIC_REQUIRE(is_serializable_v<std::tuple<mproc::Semaphore, int>>);
    STATIC_REQUIRE(is_serializable_v<int (*)(int)>);

    STATIC_REQUIRE_FALSE(is_serializable_v<int*>);
    STATIC_REQUIRE_FALSE(is_serializable_v<const char*>);
    STATIC_REQUIRE_FALSE(is_serializable_v<int&>);
    STATIC_REQUIRE_FALSE(is_serializable_v<std::function<void()>>);
    STATIC_REQUIRE_FALSE(is_serializable_v<std::unique_ptr<int>>);
    STATIC_REQUIRE_FALSE(is_serializable_v<std::shared_ptr<Point>>);
    STATIC_REQUIRE_FALSE(is_serializable_v<std::string_view>);
    STATIC_REQUIRE_FALSE(is_serializable_v<std::span<int>>);
    STATIC_REQUIRE_FALSE(is_serializable_v<std::reference_wrapper<int>>);
    STATIC_REQUIRE_FALSE(is_serializable_v<std::vector<std::function<int()>>>);
    STATIC_REQUIRE_FALSE(is_serializable_v<std::map<int, int*>>);
    STATIC_REQUIRE_FALSE(is_serializable_v<std::optional<std::string_view>>);
    struct NoSerialize {
        std::string s;
    };
    STATIC_REQUIRE_FALSE(is_serializable_v<NoSerialize>);
    STATIC_REQUIRE_FALSE(is_serializable_v<int[3]>);

    STATIC_REQUIRE(is_bitwise_v<int>);
    STATIC_REQUIRE(is_bitwise_v<Point>);
    STATIC_REQUIRE(is_bitwise_v<Packed>);
    STATIC_REQUIRE(is_bitwise_v<std::array<double, 4>>);
    STATIC_REQUIRE_FALSE(is_bitwise_v<bool>);  // checked on load
    STATIC_REQUIRE_FALSE(is_bitwise_v<Explicit>);  // its serialize() wins
    STATIC_REQUIRE_FALSE(is_bitwise_v<std::optional<int>>);
    STATIC_REQUIRE_FALSE(is_bitwise_v<std::variant<int, float>>);
    // Handles never travel as raw bytes.
    STATIC_REQUIRE_FALSE(is_bitwise_v<mproc::Lock>);
    STATIC_REQUIRE_FALSE(is_bitwise_v<mproc::SharedMemory>);
    STATIC_REQUIRE(mproc::detail::kind_of<mproc::Value<int>>() == mproc::detail::Kind::handle);
}

// ---- round trips ---------------------------------------------------------------

TEST_CASE("numbers, enums and bools round-trip", "[serialization]") {
    CHECK(round_trip(0) == 0);
    CHECK(round_trip(std::numeric_limits<int>::min()) == std::numeric_limits<int>::min());
    CHECK(round_trip(std::numeric_limits<std::uint64_t>::max()) == std::numeric_limits<std::uint64_t>::max());
    CHECK(round_trip(std::int8_t{-5}) == -5);
    CHECK(round_trip('x') == 'x');
    CHECK(round_trip(L'\u263a') == L'\u263a');
    CHECK(round_trip(char8_t{0xff}) == char8_t{0xff});
    CHECK(round_trip(3.25f) == 3.25f);
    CHECK(round_trip(-0.0) == -0.0);
    CHECK(std::signbit(round_trip(-0.0)));
    CHECK(std::isnan(round_trip(std::numeric_limits<double>::quiet_NaN())));
    CHECK(round_trip(std::numeric_limits<double>::infinity()) == std::numeric_limits<double>::infinity());
    CHECK(round_trip(1.5L) == 1.5L);
    CHECK(round_trip(true) == true);
    CHECK(round_trip(false) == false);
    CHECK(round_trip(blue) == blue);
    CHECK(round_trip(green) == green);
    CHECK(round_trip(Small::b) == Small::b);
    CHECK(round_trip(Big::lo) == Big::lo);
    CHECK(round_trip(std::byte{0xab}) == std::byte{0xab});
    CHECK(round_trip(std::complex<double>(1, -2)) == std::complex<double>(1, -2));
    CHECK(round_trip(std::chrono::milliseconds(1234)) == std::chrono::milliseconds(1234));
}

TEST_CASE("trivially copyable structs are their bytes, with an 8-byte header", "[serialization]") {
    Point p{7, 1.5, -2.5};
    Bytes b = dumps(p);
    CHECK(b.size() == mproc::detail::bitwise_encoded_size<Point>);
    CHECK(b.size() == mproc::detail::kHeaderSize + sizeof(Point));
    CHECK(std::memcmp(b.data() + mproc::detail::kHeaderSize, &p, sizeof p) == 0);
    CHECK(loads<Point>(b) == p);
    CHECK(mproc::detail::encoded_size(p) == b.size());

    Packed k{'q', {1, 2, 65535}, blue};
    CHECK(round_trip(k) == k);
    std::array<Point, 3> ps{{{1, 2, 3}, {4, 5, 6}, {7, 8, 9}}};
    CHECK(dumps(ps).size() == mproc::detail::kHeaderSize + sizeof ps);
    CHECK(round_trip(ps) == ps);
    CHECK(round_trip(std::monostate{}) == std::monostate{});
}

TEST_CASE("strings round-trip, empty, binary and wide", "[serialization]") {
    CHECK(round_trip(std::string()).empty());
    CHECK(round_trip(std::string("hello")) == "hello");
    std::string binary("a\0b\xff\n", 5);
    CHECK(round_trip(binary) == binary);
    std::string big(1 << 20, 'z');
    big[12345] = '\0';
    CHECK(round_trip(big) == big);
    CHECK(round_trip(std::wstring(L"wide \u00e9")) == L"wide \u00e9");
    CHECK(round_trip(std::u16string(u"utf-16")) == u"utf-16");
    CHECK(round_trip(std::u8string(u8"utf-8 \u00e9")) == u8"utf-8 \u00e9");
}

TEST_CASE("sequences round-trip, empty and large", "[serialization]") {
    CHECK(round_trip(std::vector<int>()).empty());
    std::vector<double> big(1'000'000);
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<double>(i) * 0.5;
    CHECK(round_trip(big) == big);
    std::vector<std::string> words{"", "a", std::string(300, 'b'), "ccc"};
    CHECK(round_trip(words) == words);
    std::vector<std::vector<int>> nested{{}, {1}, {2, 3}};
    CHECK(round_trip(nested) == nested);
    std::vector<Point> points{{1, 2, 3}, {4, 5, 6}};
    CHECK(round_trip(points) == points);
    for (std::size_t n : {0, 1, 7, 8, 9, 16, 17, 1000}) {
        std::vector<bool> bits(n);
        for (std::size_t i = 0; i < n; ++i) bits[i] = (i * 7 + 3) % 5 < 2;
        CHECK(round_trip(bits) == bits);
    }
    std::array<std::string, 3> arr{"x", "", "zz"};
    CHECK(round_trip(arr) == arr);
    CHECK(round_trip(std::array<int, 0>{}) == std::array<int, 0>{});
    std::deque<std::string> dq{"front", "back"};
    CHECK(round_trip(dq) == dq);
    std::list<int> ls{3, 1, 2};
    CHECK(round_trip(ls) == ls);
    std::forward_list<std::string> fl{"one", "", "three"};
    CHECK(round_trip(fl) == fl);
    CHECK(round_trip(std::forward_list<int>()).empty());
    std::vector<std::pair<std::string, int>> pairs{{"b", 2}, {"a", 1}, {"", -1}};
    CHECK(round_trip(pairs) == pairs);
    std::vector<std::pair<bool, std::array<short, 2>>> flat_pairs{{true, {1, 2}}, {false, {3, 4}}};
    CHECK(round_trip(flat_pairs) == flat_pairs);
}

TEST_CASE("maps and sets round-trip", "[serialization]") {
    std::map<std::string, int> m;
    for (int i = 0; i < 10'000; ++i) m["key" + std::to_string(i)] = i;
    CHECK(round_trip(m) == m);
    CHECK(round_trip(std::map<int, int>()).empty());
    std::multimap<int, std::string> mm{{1, "a"}, {1, "b"}, {0, "c"}};
    CHECK(round_trip(mm) == mm);
    std::unordered_map<std::string, std::vector<int>> um{{"a", {1}}, {"b", {}}, {"c", {2, 3}}};
    CHECK(round_trip(um) == um);
    std::unordered_multimap<int, int> umm{{1, 1}, {1, 2}, {2, 3}};
    CHECK(round_trip(umm) == umm);
    std::set<std::string> s{"x", "y", ""};
    CHECK(round_trip(s) == s);
    std::multiset<int> ms{1, 1, 2};
    CHECK(round_trip(ms) == ms);
    std::unordered_set<long> us{5, 6, 7};
    CHECK(round_trip(us) == us);
    std::unordered_multiset<int> ums{4, 4};
    CHECK(round_trip(ums) == ums);
    std::map<std::string, int, std::greater<>> desc{{"a", 1}, {"b", 2}, {"c", 3}};
    CHECK(round_trip(desc) == desc);
    std::multimap<std::string, int> equal_keys{{"k", 3}, {"k", 1}, {"k", 2}, {"j", 0}};
    CHECK(round_trip(equal_keys) == equal_keys);  // equal keys keep their order
    std::map<std::basic_string<unsigned char>, bool> bytes_keys{{{1, 2}, true}, {{}, false}};
    CHECK(round_trip(bytes_keys) == bytes_keys);
}

TEST_CASE("an ordered container loads from elements in any order", "[serialization]") {
    // The body of a vector<pair> is the body of a map in the order given:
    // unsorted, with a duplicate. The map is still a valid map; the first
    // of two equal keys wins, as emplace does.
    const std::vector<std::pair<std::string, int>> wire{{"m", 1}, {"z", 2}, {"a", 3}, {"m", 4}, {"b", 5}};
    Bytes b = dumps(std::map<std::string, int>{});
    b.resize(mproc::detail::kHeaderSize);
    const Bytes body = dumps(wire);
    b.insert(b.end(), body.begin() + mproc::detail::kHeaderSize, body.end());
    std::map<std::string, int> expect;
    for (const auto& [k, v] : wire) expect.emplace(k, v);
    CHECK(loads<std::map<std::string, int>>(b) == expect);
    Bytes mb = dumps(std::multimap<std::string, int>{});
    mb.resize(mproc::detail::kHeaderSize);
    mb.insert(mb.end(), body.begin() + mproc::detail::kHeaderSize, body.end());
    const auto loaded = loads<std::multimap<std::string, int>>(mb);
    std::vector<std::pair<std::string, int>> got(loaded.begin(), loaded.end()), want = wire;
    CHECK(std::is_sorted(got.begin(), got.end(), [](auto& x, auto& y) { return x.first < y.first; }));
    std::sort(got.begin(), got.end());
    std::sort(want.begin(), want.end());
    CHECK(got == want);
}

TEST_CASE("pair, tuple, optional and variant round-trip", "[serialization]") {
    CHECK(round_trip(std::pair<int, std::string>(1, "one")) == std::pair<int, std::string>(1, "one"));
    CHECK(round_trip(std::tuple<>()) == std::tuple<>());
    std::tuple<int, std::string, bool, double> t{-1, "t", true, 0.25};
    CHECK(round_trip(t) == t);
    CHECK(round_trip(std::optional<std::string>()) == std::nullopt);
    CHECK(round_trip(std::optional<std::string>("set")) == std::optional<std::string>("set"));
    CHECK(round_trip(std::optional<int>(0)) == std::optional<int>(0));
    using V = std::variant<std::monostate, int, std::string, std::vector<double>>;
    for (const V& v : {V(), V(5), V(std::string("five")), V(std::vector<double>{5.5})}) {
        V back = round_trip(v);
        CHECK(back.index() == v.index());
        CHECK(back == v);
    }
    // Same alternative type twice: the index, not the type, is what travels.
    std::variant<int, int> twin(std::in_place_index<1>, 9);
    CHECK(round_trip(twin).index() == 1);
}

TEST_CASE("deeply nested std types round-trip", "[serialization]") {
    using Deep = std::map<std::string, std::vector<std::optional<std::tuple<int, std::string, std::variant<
                                                     std::monostate, std::set<int>, std::array<Point, 2>>>>>>;
    Deep d;
    d["a"] = {std::nullopt, std::tuple{1, std::string("x"), std::set<int>{1, 2}}};
    d["b"] = {std::tuple{2, std::string(), std::array<Point, 2>{{{1, 1, 1}, {2, 2, 2}}}}};
    d["c"] = {};
    CHECK(round_trip(d) == d);
}

// ---- user types ----------------------------------------------------------------

TEST_CASE("user types with a serialize() member, private or public, round-trip", "[serialization]") {
    Record r{"rec", {1, 2, 3}, Point{1, 2, 3}, {{"n", 5}, {"s", std::string("str")}}, {7, {"a", "b"}}};
    CHECK(round_trip(r) == r);
    CHECK(round_trip(Record{}) == Record{});
    Account a("ann", 12345);
    CHECK(round_trip(a) == a);
    std::vector<Account> accounts{a, Account("bob", -1), Account()};
    CHECK(round_trip(accounts) == accounts);
}

TEST_CASE("user types with a free serialize() round-trip", "[serialization]") {
    geo::Segment s{{1, 0, 0}, {2, 1, 1}, "edge"};
    CHECK(round_trip(s) == s);
    plain::Money m{-250, "EUR"};
    CHECK(round_trip(m) == m);
    std::map<std::string, plain::Money> wallet{{"x", m}};
    CHECK(round_trip(wallet) == wallet);
}

TEST_CASE("split save/load sees BOOST_CLASS_VERSION; base_object, nvp and arrays work", "[serialization]") {
    Versioned v;
    v.a = 42;
    Versioned back = round_trip(v);
    CHECK(back.a == 42);
    CHECK(back.loaded_version == 3);

    Derived d;
    d.base_value = 9;
    for (int i = 0; i < 4; ++i) d.arr[i] = i * i;
    d.dyn[0] = 0.5;
    d.dyn[2] = -1;
    d.s = "derived";
    Derived e = round_trip(d);
    CHECK(e.base_value == 9);
    CHECK(std::equal(std::begin(e.arr), std::end(e.arr), std::begin(d.arr)));
    CHECK(std::equal(std::begin(e.dyn), std::end(e.dyn), std::begin(d.dyn)));
    CHECK(e.s == "derived");
}

TEST_CASE("members Boost's own headers serialize go through Boost's code", "[serialization]") {
    WithBoostTypes w;
    w.maybe = std::string("boost");
    w.va = {3, 2, 1};
    w.v = {"x"};
    WithBoostTypes back = round_trip(w);
    REQUIRE(back.maybe.has_value());
    CHECK(*back.maybe == "boost");
    REQUIRE(back.va.size() == 3);
    CHECK((back.va[0] == 3 && back.va[1] == 2 && back.va[2] == 1));
    CHECK(back.v == w.v);
    CHECK_FALSE(round_trip(WithBoostTypes{}).maybe.has_value());
    // A corrupt valarray length is caught before Boost sizes anything.
    Bytes b = dumps(w);
    Outcome out;
    for (std::size_t n = 0; n < b.size(); ++n) expect_load_or_error<WithBoostTypes>(Bytes(b.begin(), b.begin() + n), out);
    CHECK(out.rejected == static_cast<int>(b.size()));
}

TEST_CASE("an explicit serialize() wins over the raw-bytes path", "[serialization]") {
    Explicit x{1, 2};
    Explicit y = round_trip(x);
    CHECK(y.kept == 1);
    CHECK(y.dropped == 0);
}

TEST_CASE("a type without a public default constructor loads through boost access", "[serialization]") {
    Sealed s(77);
    CHECK(round_trip(s).v() == 77);
    CHECK(round_trip(std::vector<Sealed>{Sealed(1), Sealed(2)})[1].v() == 2);
}

TEST_CASE("recursive user types round-trip; runaway depth is an error both ways", "[serialization]") {
    Tree t{1, {{2, {}}, {3, {{4, {}}}}}};
    CHECK(round_trip(t) == t);

    auto chain = [](unsigned depth) {
        Tree root;
        Tree* at = &root;
        for (unsigned i = 1; i < depth; ++i) {
            at->children.push_back(Tree{static_cast<int>(i), {}});
            at = &at->children.back();
        }
        return root;
    };
    Tree ok = chain(mproc::detail::kMaxDepth);
    CHECK(round_trip(ok) == ok);
    CHECK_THROWS_AS(dumps(chain(mproc::detail::kMaxDepth + 1)), SerializationError);

    // Hand-made bytes nesting far deeper than anything dumps writes: an
    // error, not a stack overflow.
    Bytes deep = dumps(Tree{});
    deep.resize(mproc::detail::kHeaderSize);
    for (int i = 0; i < 200'000; ++i) {
        deep.push_back(std::byte{0});  // value: int 0
        deep.push_back(std::byte{0});
        deep.push_back(std::byte{0});
        deep.push_back(std::byte{0});
        deep.push_back(std::byte{1});  // one child
    }
    CHECK_THROWS_AS(loads<Tree>(deep), SerializationError);
}

// ---- handles -------------------------------------------------------------------

TEST_CASE("a loaded Lock is the same lock", "[serialization][handles]") {
    mproc::Lock lock;
    Bytes b = dumps(lock);
    mproc::Lock same = loads<mproc::Lock>(b);
    lock.acquire();
    bool other_thread_got_it = true;
    std::thread([&] { other_thread_got_it = same.acquire(mproc::Duration(0)); }).join();
    CHECK_FALSE(other_thread_got_it);
    same.release();  // the same lock: releasing through the copy works
    std::thread([&] {
        other_thread_got_it = lock.acquire(mproc::Duration(0));
        if (other_thread_got_it) lock.release();
    }).join();
    CHECK(other_thread_got_it);
}

TEST_CASE("handles nested in tuples, vectors and user types stay the same objects", "[serialization][handles]") {
    mproc::Semaphore sem(2);
    mproc::Event ev;
    mproc::Value<long> val(5);
    mproc::Array<int> arr{1, 2, 3};
    mproc::SharedMemory shm(4096);
    auto t = std::make_tuple(sem, std::vector<mproc::Event>{ev, ev}, val, arr, shm, std::string("tag"));
    auto back = round_trip(t);

    CHECK(std::get<0>(back).try_acquire());
    CHECK(sem.get_value() == 1);
    std::get<1>(back)[1].set();
    CHECK(ev.is_set());
    std::get<2>(back).store(99);
    CHECK(val.load() == 99);
    CHECK(std::get<3>(back).size() == 3);
    std::get<3>(back)[2] = 30;
    CHECK(arr[2] == 30);
    std::get<4>(back).data()[100] = std::byte{7};
    CHECK(shm.data()[100] == std::byte{7});
    CHECK(std::get<5>(back) == "tag");

    Shared s;
    s.tag = "shared";
    Shared s2 = round_trip(s);
    s2.counter.store(12);
    CHECK(s.counter.load() == 12);
    CHECK(s2.tag == "shared");
    s.lock.acquire();
    bool got = true;
    std::thread([&] { got = s2.lock.acquire(mproc::Duration(0)); }).join();
    CHECK_FALSE(got);
    s.lock.release();
}

TEST_CASE("a handle loaded in a forked child reaches the parent's object", "[serialization][handles]") {
    mproc::Value<int> counter(0);
    Bytes b = dumps(std::make_tuple(counter, 41));
    pid_t pid = mproc_test::fork_child([&] {
        auto [c, add] = loads<std::tuple<mproc::Value<int>, int>>(b);
        auto g = c.get_lock();
        c.value() += add + 1;
    });
    REQUIRE(mproc_test::wait_child(pid) == 0);
    CHECK(counter.load() == 42);
}

TEST_CASE("a handle whose segment is not here is a SerializationError", "[serialization][handles]") {
    mproc::Value<int> v(1);
    Bytes b = dumps(v);
    // After the header: refs count (1), then the ref's fd (4 bytes), dev, ino.
    const std::size_t ino_at = mproc::detail::kHeaderSize + 1 + 4 + 8;
    Bytes wrong_ino = b;
    wrong_ino[ino_at] ^= std::byte{0x55};
    CHECK_THROWS_AS(loads<mproc::Value<int>>(wrong_ino), SerializationError);
    Bytes wrong_fd = b;
    wrong_fd[mproc::detail::kHeaderSize + 1] = std::byte{0x7f};
    wrong_fd[mproc::detail::kHeaderSize + 4] = std::byte{0x7f};
    CHECK_THROWS_AS(loads<mproc::Value<int>>(wrong_fd), SerializationError);
}

// ---- functions by reference ------------------------------------------------

TEST_CASE("function pointers and capture-less lambdas travel by reference", "[serialization][function]") {
    auto f = round_trip(&twice);
    CHECK(f == &twice);
    CHECK(f(21) == 42);
    CHECK(round_trip(&thrice)(2) == 6);
    int (*lam)(int) = [](int x) { return x + 100; };
    CHECK(round_trip(lam)(1) == 101);
    CHECK(round_trip(static_cast<int (*)(int)>(nullptr)) == nullptr);
    // A function from a shared library (libc), found by its build-id.
    std::size_t (*len)(const char*) = &std::strlen;
    CHECK(round_trip(len)("four") == 4);
    // Nested with arguments, as Process and Pool send targets.
    auto task = std::make_tuple(&halve, 5.0);
    auto [fn, arg] = round_trip(task);
    CHECK(fn(arg) == 2.5);

    using mproc::detail::FunctionRef;
    FunctionRef ref = mproc::detail::encode_function(&twice);
    CHECK(ref.module.empty());
    CHECK(ref.identity.rfind("build-id:", 0) == 0);
    CHECK(round_trip(ref) == ref);
    CHECK(mproc::detail::resolve_function<int (*)(int)>(ref) == &twice);
    FunctionRef lref = mproc::detail::encode_function([](int x) { return x - 1; });
    CHECK(mproc::detail::resolve_function<int (*)(int)>(lref)(1) == 0);
}

TEST_CASE("a function reference that does not resolve is a SerializationError", "[serialization][function]") {
    using mproc::detail::FunctionRef;
    using mproc::detail::resolve_function;
    using Fn = int (*)(int);
    const FunctionRef good = mproc::detail::encode_function(&twice);

    FunctionRef wrong_type = good;
    CHECK_THROWS_AS(resolve_function<double (*)(double)>(wrong_type), SerializationError);

    FunctionRef other_build = good;
    other_build.identity.back() = other_build.identity.back() == '0' ? '1' : '0';
    CHECK_THROWS_AS(resolve_function<Fn>(other_build), SerializationError);

    FunctionRef outside = good;
    outside.offset = std::uint64_t{1} << 40;
    CHECK_THROWS_AS(resolve_function<Fn>(outside), SerializationError);
    outside.offset = 0;  // the ELF header, not code
    CHECK_THROWS_AS(resolve_function<Fn>(outside), SerializationError);

    FunctionRef shifted = good;
    shifted.offset += 1;  // inside the code, but not where the function starts
    CHECK_THROWS_AS(resolve_function<Fn>(shifted), SerializationError);

    FunctionRef unknown_lib = good;
    unknown_lib.module = "/nonexistent/libmissing.so";
    unknown_lib.identity = "build-id:00112233";
    CHECK_THROWS_AS(resolve_function<Fn>(unknown_lib), SerializationError);

    FunctionRef no_identity = good;
    no_identity.identity.clear();
    CHECK_THROWS_AS(resolve_function<Fn>(no_identity), SerializationError);

    // The same through loads: a corrupted encoding of a function pointer.
    Bytes b = dumps(Fn(&twice));
    Bytes flipped = b;
    flipped[b.size() - 16] ^= std::byte{0x10};  // the offset: then signature, code check
    CHECK_THROWS_AS(loads<Fn>(flipped), SerializationError);
    CHECK_THROWS_AS(loads<double (*)(double)>(b), SerializationError);
}

namespace {
std::string to_hex(const Bytes& b) {
    std::string s;
    for (std::byte x : b) {
        char buf[3];
        std::snprintf(buf, sizeof buf, "%02x", static_cast<unsigned>(x));
        s += buf;
    }
    return s;
}
Bytes from_hex(const std::string& s) {
    Bytes b;
    for (std::size_t i = 0; i + 1 < s.size(); i += 2)
        b.push_back(static_cast<std::byte>(std::stoi(s.substr(i, 2), nullptr, 16)));
    return b;
}
int plus_seven(int x) { return x + 7; }
}  // namespace

// Run by the next test in a freshly exec'd copy of this binary (its own
// address space layout): resolves the reference the parent sent.
TEST_CASE("function reference child", "[.][fnref-child]") {
    const char* hex = std::getenv("MPROC_TEST_FNREF");
    REQUIRE(hex != nullptr);
    auto [fn, arg] = loads<std::tuple<int (*)(int), int>>(from_hex(hex));
    REQUIRE(fn(arg) == 42);
}

TEST_CASE("a function reference resolves in a freshly exec'd process", "[serialization][function]") {
    const std::string hex = to_hex(dumps(std::make_tuple(&plus_seven, 35)));
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::setenv("MPROC_TEST_FNREF", hex.c_str(), 1);
        const char* argv[] = {"test_serialization", "function reference child", nullptr};
        ::execv("/proc/self/exe", const_cast<char**>(argv));
        ::_exit(127);
    }
    CHECK(mproc_test::wait_child(pid) == 0);
}

// ---- streams -------------------------------------------------------------------

namespace {
// An OutBuf that hands out tiny pieces, like a ring with little free space
// at its end: dump_to must produce the same bytes.
template <std::size_t Piece = 7>
class ChunkedOutBuf final : public mproc::detail::OutBuf {
public:
    Bytes bytes;

protected:
    void need(std::size_t) override {
        flush();
        set_area(piece_, piece_ + sizeof piece_);
    }

public:
    void flush() {
        for (char* p = pbase(); p < pptr(); ++p) bytes.push_back(static_cast<std::byte>(*p));
        set_area(piece_, piece_);
    }

private:
    char piece_[Piece];
};

using mproc_test::PiecewiseInBuf;
}  // namespace

TEST_CASE("dump_to writes the same bytes to any stream; load_from reads pieces", "[serialization][streams]") {
    Record r{"stream", {1, 2, 3}, Point{4, 5, 6}, {{"k", 1}}, {2, {"s"}}};
    std::map<std::string, std::vector<int>> m{{"a", std::vector<int>(100, 3)}, {"b", {}}};
    const Bytes expect_r = dumps(r);
    const Bytes expect_m = dumps(m);

    ChunkedOutBuf<> chunked;
    mproc::detail::dump_to(chunked, r);
    chunked.flush();
    CHECK(chunked.bytes == expect_r);
    CHECK(chunked.written() == expect_r.size());

    std::stringbuf sb;
    mproc::detail::dump_to(static_cast<std::streambuf&>(sb), m);
    std::string s = sb.str();
    REQUIRE(s.size() == expect_m.size());
    CHECK(std::memcmp(s.data(), expect_m.data(), s.size()) == 0);

    // In place into a fixed span: fits, or says how much room it needs.
    Bytes room(expect_r.size());
    mproc::detail::SpanOutBuf in_place(room);
    mproc::detail::dump_to(in_place, r);
    CHECK(in_place.fits());
    CHECK(in_place.written() == expect_r.size());
    CHECK(room == expect_r);
    Bytes small(expect_r.size() / 2);
    mproc::detail::SpanOutBuf too_small(small);
    mproc::detail::dump_to(too_small, r);
    CHECK_FALSE(too_small.fits());
    CHECK(too_small.written() == expect_r.size());
    CHECK(std::equal(small.begin(), small.end(), expect_r.begin()));

    CHECK(mproc::detail::encoded_size(r) == expect_r.size());
    CHECK(mproc::detail::encoded_size(m) == expect_m.size());

    PiecewiseInBuf<> in(expect_r);
    CHECK(mproc::detail::load_from<Record>(in) == r);
    CHECK(in.remaining() == 0);

    // Two items back to back in one buffer: each load_from takes one.
    Bytes two = expect_m;
    two.insert(two.end(), expect_r.begin(), expect_r.end());
    mproc::detail::InBuf both(two);
    CHECK(mproc::detail::load_from<decltype(m)>(both) == m);
    CHECK(mproc::detail::load_from<Record>(both) == r);
    CHECK(both.remaining() == 0);
}

namespace {
// dumps through pieces of Out bytes and loads through pieces of In bytes
// give the same bytes and value as the contiguous path.
template <std::size_t Out, std::size_t In, class T>
void check_pieces(const T& v) {
    const Bytes whole = dumps(v);
    ChunkedOutBuf<Out> out;
    mproc::detail::dump_to(out, v);
    out.flush();
    CHECK(out.bytes == whole);
    PiecewiseInBuf<In> in(whole);
    CHECK(mproc::detail::load_from<T>(in) == v);
    CHECK(in.remaining() == 0);
}
}  // namespace

TEST_CASE("runs of simple elements survive any cut into pieces", "[serialization][streams]") {
    // Runs of strings, ints, bools and pairs are written and read a run at
    // a time; every piece boundary (in the middle of a length, a string, a
    // number) sends one element through the general path.
    std::map<std::string, int> m;
    for (int i = 0; i < 300; ++i) m["key" + std::to_string(i * 37)] = i;
    m[std::string(200, 'L')] = -1;  // longer than any piece: always the general path
    std::vector<std::pair<std::string, bool>> pairs;
    for (int i = 0; i < 200; ++i) pairs.emplace_back(std::string(static_cast<std::size_t>(i % 20), 'p'), i % 3 == 0);
    std::unordered_map<std::string, std::int64_t> hashed{{"a", 1}, {"bb", -2}, {std::string(130, 'c'), 3}};
    std::set<std::string> words{"", "x", "yy", std::string(140, 'z')};
    std::forward_list<std::pair<std::array<short, 2>, std::string>> fl{{{1, 2}, "x"}, {{3, 4}, ""}};
    check_pieces<7, 5>(m);
    check_pieces<64, 13>(m);
    check_pieces<7, 5>(pairs);
    check_pieces<29, 64>(pairs);
    check_pieces<7, 5>(hashed);
    check_pieces<7, 3>(words);
    check_pieces<11, 1>(fl);
}

TEST_CASE("a malformed element inside a run is a SerializationError", "[serialization][errors]") {
    std::vector<std::pair<std::string, bool>> pairs(50, {"ab", true});
    Bytes b = dumps(pairs);
    // Each element is 4 bytes (length, 'a', 'b', bool) after the header and
    // the 1-byte length: the 20th element's bool becomes 2.
    b[mproc::detail::kHeaderSize + 1 + 19 * 4 + 3] = std::byte{2};
    CHECK_THROWS_AS((loads<std::vector<std::pair<std::string, bool>>>(b)), SerializationError);
    // An overlong length in the middle of a run of map keys.
    std::map<std::string, int> m{{"a", 1}, {"b", 2}, {"c", 3}};
    Bytes mb = dumps(m);
    mb[mproc::detail::kHeaderSize + 1 + 6] = std::byte{0xff};  // the second key's length
    CHECK_THROWS_AS((loads<std::map<std::string, int>>(mb)), SerializationError);
}

TEST_CASE("dumps and loads run concurrently on many threads", "[serialization]") {
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 300; ++i) {
                std::string name = "t";  // appended: GCC 12 -O3 warns falsely (-Wrestrict) on "t" + str
                name += std::to_string(t);
                Record r{name, {t, i}, std::nullopt, {{"i", i}}, {i, {}}};
                if (!(round_trip(r) == r)) ++failures;
            }
        });
    }
    for (auto& th : threads) th.join();
    CHECK(failures == 0);
}

// ---- bad bytes -----------------------------------------------------------------

TEST_CASE("bad headers, wrong types and trailing bytes are SerializationErrors", "[serialization][errors]") {
    Bytes b = dumps(std::string("abc"));
    CHECK_THROWS_AS(loads<std::vector<char>>(b), SerializationError);
    CHECK_THROWS_AS(loads<int>(dumps(1L)), SerializationError);
    CHECK_THROWS_AS(loads<Point>(dumps(Packed{})), SerializationError);
    CHECK_THROWS_AS(loads<std::string>(Bytes{}), SerializationError);
    CHECK_THROWS_AS(loads<std::string>(Bytes(b.begin(), b.begin() + 5)), SerializationError);
    for (std::size_t i : {0, 1, 2, 3, 4}) {
        Bytes bad = b;
        bad[i] ^= std::byte{1};
        CHECK_THROWS_AS(loads<std::string>(bad), SerializationError);
    }
    Bytes trailing = b;
    trailing.push_back(std::byte{0});
    CHECK_THROWS_AS(loads<std::string>(trailing), SerializationError);
    Bytes trailing_raw = dumps(7);
    trailing_raw.push_back(std::byte{0});
    CHECK_THROWS_AS(loads<int>(trailing_raw), SerializationError);
    try {
        loads<std::vector<char>>(b);
    } catch (const SerializationError& e) {
        CHECK(std::string(e.what()).find("std::vector<char>") != std::string::npos);
    }
}

TEST_CASE("invalid bools, flags and indices are SerializationErrors", "[serialization][errors]") {
    const std::size_t h = mproc::detail::kHeaderSize;
    Bytes b = dumps(true);
    b[h] = std::byte{2};
    CHECK_THROWS_AS(loads<bool>(b), SerializationError);
    Bytes o = dumps(std::optional<int>(1));
    o[h] = std::byte{3};
    CHECK_THROWS_AS(loads<std::optional<int>>(o), SerializationError);
    Bytes v = dumps(std::variant<int, std::string>(5));
    v[h] = std::byte{2};
    CHECK_THROWS_AS((loads<std::variant<int, std::string>>(v)), SerializationError);
    Bytes vb = dumps(std::vector<bool>{true, false, true});
    vb.back() |= std::byte{0x80};  // a padding bit
    CHECK_THROWS_AS(loads<std::vector<bool>>(vb), SerializationError);
    Bytes overlong = dumps(std::string());
    overlong.resize(h);
    for (int i = 0; i < 11; ++i) overlong.push_back(std::byte{0xff});
    CHECK_THROWS_AS(loads<std::string>(overlong), SerializationError);
}

namespace {
void put_varint(Bytes& b, std::uint64_t v) {
    do {
        std::uint8_t byte = v & 0x7f;
        v >>= 7;
        b.push_back(static_cast<std::byte>(byte | (v ? 0x80 : 0)));
    } while (v);
}
template <class T>
Bytes huge_length() {
    Bytes b = dumps(T{});
    b.resize(mproc::detail::kHeaderSize);
    put_varint(b, std::uint64_t{1} << 60);
    for (int i = 0; i < 64; ++i) b.push_back(std::byte{1});
    return b;
}
}  // namespace

TEST_CASE("a length prefix claiming 2^60 elements fails before allocating", "[serialization][errors]") {
    CHECK_THROWS_AS(loads<std::string>(huge_length<std::string>()), SerializationError);
    CHECK_THROWS_AS(loads<std::vector<double>>(huge_length<std::vector<double>>()), SerializationError);
    CHECK_THROWS_AS(loads<std::vector<std::string>>(huge_length<std::vector<std::string>>()), SerializationError);
    CHECK_THROWS_AS(loads<std::vector<bool>>(huge_length<std::vector<bool>>()), SerializationError);
    CHECK_THROWS_AS((loads<std::map<int, int>>(huge_length<std::map<int, int>>())), SerializationError);
    CHECK_THROWS_AS((loads<std::unordered_map<int, int>>(huge_length<std::unordered_map<int, int>>())),
                    SerializationError);
    CHECK_THROWS_AS(loads<std::deque<int>>(huge_length<std::deque<int>>()), SerializationError);
    CHECK_THROWS_AS(loads<std::unordered_set<int>>(huge_length<std::unordered_set<int>>()), SerializationError);
    // Just over what the input could hold is rejected as well.
    Bytes b = dumps(std::vector<std::uint32_t>{1, 2, 3});
    b[mproc::detail::kHeaderSize] = std::byte{4};
    CHECK_THROWS_AS(loads<std::vector<std::uint32_t>>(b), SerializationError);
    try {
        loads<std::vector<double>>(huge_length<std::vector<double>>());
    } catch (const SerializationError& e) {
        CHECK(std::string(e.what()).find("1152921504606846976") != std::string::npos);
    }
}

// ---- what hostile bytes may make a load hold -------------------------------------

namespace {

// Large in memory, small on the wire; its bool is checked on load.
struct Wide {
    bool flag = false;
    std::array<std::byte, 4092> pad{};
    template <class Archive>
    void serialize(Archive& ar, unsigned) {
        ar & flag;
    }
};
static_assert(sizeof(Wide) == 4093 || sizeof(Wide) == 4096);

/// Bytes with T's header, then `body`.
template <class T>
Bytes with_header(const Bytes& body) {
    Bytes b(mproc::detail::kHeaderSize);
    mproc::detail::encode_header(b.data(), mproc::detail::type_hash<T>());
    b.insert(b.end(), body.begin(), body.end());
    return b;
}

/// A length of `n`, then `fill` bytes of `byte`.
Bytes claim(std::uint64_t n, std::size_t fill, std::uint8_t byte) {
    Bytes b;
    put_varint(b, n);
    b.insert(b.end(), fill, static_cast<std::byte>(byte));
    return b;
}

// What a load of `bytes` as T holds at its worst, checked against the
// promise: at most kSpeculationFactor bytes per input byte set aside for
// elements not yet decoded, plus a little for the error itself.
constexpr std::size_t kErrorSlack = 2048;  // the SerializationError's message, an archive

template <class T>
void check_hostile(const char* what, const Bytes& bytes) {
    bool rejected = false;
    const std::size_t peak = peak_bytes([&] {
        try {
            (void)loads<T>(bytes);
        } catch (const SerializationError&) {
            rejected = true;
        }
    });
    INFO(what << ": " << bytes.size() << " bytes in, " << peak << " bytes held at the peak");
    CHECK(rejected);
    CHECK(peak <= mproc::detail::kSpeculationFactor * bytes.size() + kErrorSlack);
}

}  // namespace

TEST_CASE("the probe sees what a load allocates", "[serialization][alloc]") {
    // A control for the test below: a good vector of 1000 strings of 20
    // characters holds (at least) their 1000 heap buffers.
    const Bytes good = dumps(std::vector<std::string>(1000, std::string(20, 's')));
    const std::size_t peak = peak_bytes([&] { CHECK(loads<std::vector<std::string>>(good).size() == 1000); });
    CHECK(peak >= 1000 * 21 + 1000 * sizeof(std::string));
}

TEST_CASE("hostile lengths never make a load hold more than the input justifies", "[serialization][alloc]") {
    constexpr std::size_t R = 4000;  // body bytes after the length
    // Issue 11's case: 135 bytes claiming 126 elements of a 4 KiB type
    // with a serialize(), each of whose first byte is a bad bool. It used to
    // reserve 126 elements (516 KB) before reading the first.
    const Bytes wide = with_header<std::vector<Wide>>(claim(126, 126, 0x02));
    CHECK(wide.size() == 135);
    check_hostile<std::vector<Wide>>("vector<Wide>", wide);
    // A run of 0xff is an overlong length for the first element: every
    // container of strings claims R elements and has none.
    const Bytes strings = claim(R, R, 0xff);
    check_hostile<std::vector<std::string>>("vector<string>", with_header<std::vector<std::string>>(strings));
    check_hostile<std::deque<std::string>>("deque<string>", with_header<std::deque<std::string>>(strings));
    check_hostile<std::list<std::string>>("list<string>", with_header<std::list<std::string>>(strings));
    check_hostile<std::forward_list<std::string>>("forward_list<string>",
                                                  with_header<std::forward_list<std::string>>(strings));
    check_hostile<std::set<std::string>>("set<string>", with_header<std::set<std::string>>(strings));
    check_hostile<std::multiset<std::string>>("multiset<string>", with_header<std::multiset<std::string>>(strings));
    check_hostile<std::unordered_set<std::string>>("unordered_set<string>",
                                                   with_header<std::unordered_set<std::string>>(strings));
    check_hostile<std::unordered_multiset<std::string>>("unordered_multiset<string>",
                                                        with_header<std::unordered_multiset<std::string>>(strings));
    const Bytes entries = claim(R / 2, R, 0xff);  // entries of at least 2 bytes
    using MapSB = std::map<std::string, bool>;
    using MultiSB = std::multimap<std::string, bool>;
    using HashSB = std::unordered_map<std::string, bool>;
    using HashMultiSB = std::unordered_multimap<std::string, bool>;
    check_hostile<MapSB>("map<string, bool>", with_header<MapSB>(entries));
    check_hostile<MultiSB>("multimap<string, bool>", with_header<MultiSB>(entries));
    check_hostile<HashSB>("unordered_map<string, bool>", with_header<HashSB>(entries));
    check_hostile<HashMultiSB>("unordered_multimap<string, bool>", with_header<HashMultiSB>(entries));
    // Bad bools (2) after an empty key: the first value fails.
    Bytes bad_values = claim(R / 2, 0, 0);
    for (std::size_t i = 0; i < R / 2; ++i) bad_values.insert(bad_values.end(), {std::byte{0}, std::byte{2}});
    check_hostile<HashSB>("unordered_map<string, bool>, bad bools", with_header<HashSB>(bad_values));
    check_hostile<std::vector<std::pair<std::string, bool>>>(
        "vector<pair<string, bool>>, bad bools", with_header<std::vector<std::pair<std::string, bool>>>(bad_values));
    // Raw blocks and strings: the bytes must all be there before anything is
    // allocated, so one more than fits is refused at once.
    check_hostile<std::string>("string", with_header<std::string>(claim(R + 1, R, 'c')));
    check_hostile<std::u16string>("u16string", with_header<std::u16string>(claim(R / 2 + 1, R, 'c')));
    check_hostile<std::vector<double>>("vector<double>", with_header<std::vector<double>>(claim(R / 8 + 1, R, 0)));
    check_hostile<std::vector<bool>>("vector<bool>", with_header<std::vector<bool>>(claim(8 * R + 1, R, 0)));
    // Boost's own collection code (valarray) is held to the bytes left: a
    // valarray of R ints cut to R bytes of data.
    WithBoostTypes w;
    w.va.resize(R);
    Bytes cut = dumps(w);
    cut.resize(cut.size() - 1 - 3 * R);  // `v`'s length and 3R bytes of data gone
    check_hostile<WithBoostTypes>("valarray in a user type", cut);
}

TEST_CASE("nested and recursive containers share one allowance", "[serialization][alloc]") {
    // vector<vector<vector<int>>>: each level claims all it could; the
    // innermost length is impossible. Separately each level could reserve
    // 24 bytes per input byte; together they stay within the allowance.
    constexpr std::size_t R = 3000;
    Bytes nested;
    put_varint(nested, R);
    put_varint(nested, R - 2);
    put_varint(nested, std::uint64_t{1} << 40);
    nested.resize(R + 4, std::byte{0});
    check_hostile<std::vector<std::vector<std::vector<int>>>>(
        "vector<vector<vector<int>>>", with_header<std::vector<std::vector<std::vector<int>>>>(nested));
    // A recursive user type, each level claiming as many children as bytes
    // are left: without a shared allowance, quadratic in the depth.
    Bytes tree;
    for (int level = 0; level < 300; ++level) {
        const int value = level;
        const auto* v = reinterpret_cast<const std::byte*>(&value);
        tree.insert(tree.end(), v, v + sizeof value);
        put_varint(tree, 2000 - 6 * static_cast<std::uint64_t>(level + 1));  // all the bytes left
    }
    tree.resize(2000, std::byte{0xff});
    check_hostile<Tree>("Tree, 300 levels", with_header<Tree>(tree));
    // Handles: refs and values claimed, then garbage.
    check_hostile<mproc::Lock>("Lock", with_header<mproc::Lock>(claim(R / 44, R, 0xff)));
}

// ---- corruption corpus -----------------------------------------------------------

namespace {

// Every truncation, every single-bit flip (for encodings up to 512 bytes),
// 1000 seeded random bodies behind a valid header, and a huge varint at
// every body offset. Returns what happened, for the totals check.
template <class T>
Outcome corrupt(const T& value, std::uint32_t seed) {
    const Bytes good = dumps(value);
    Outcome out;
    for (std::size_t n = 0; n < good.size(); ++n) expect_load_or_error<T>(Bytes(good.begin(), good.begin() + n), out);
    if (good.size() <= 512) {
        for (std::size_t i = 0; i < good.size(); ++i) {
            for (int bit = 0; bit < 8; ++bit) {
                Bytes b = good;
                b[i] ^= static_cast<std::byte>(1u << bit);
                expect_load_or_error<T>(b, out);
            }
        }
    }
    std::mt19937 rng(seed);
    for (int k = 0; k < 1000; ++k) {
        Bytes b(good.begin(), good.begin() + mproc::detail::kHeaderSize);
        std::size_t n = rng() % (2 * good.size() + 16);
        for (std::size_t i = 0; i < n; ++i) b.push_back(static_cast<std::byte>(rng()));
        expect_load_or_error<T>(b, out);
    }
    for (std::size_t at = mproc::detail::kHeaderSize; at < std::min<std::size_t>(good.size(), 256); ++at) {
        Bytes b(good.begin(), good.begin() + at);
        put_varint(b, (std::uint64_t{1} << 60) + at);
        b.insert(b.end(), good.begin() + at, good.end());
        expect_load_or_error<T>(b, out);
    }
    return out;
}

}  // namespace

TEST_CASE("corruption corpus: every mutation loads or throws SerializationError", "[serialization][corpus]") {
    const auto t0 = std::chrono::steady_clock::now();
    Outcome total;
    auto add = [&](Outcome o) {
        total.loaded += o.loaded;
        total.rejected += o.rejected;
    };
    add(corrupt(std::map<std::string, std::vector<int>>{{"alpha", {1, 2, 3}}, {"", {}}, {"b", {-1}}}, 1));
    add(corrupt(std::vector<std::string>{"one", "", "three", std::string(40, 'x')}, 2));
    add(corrupt(std::tuple<int, std::optional<std::string>, std::variant<int, double, std::string>, bool>{
                    5, "opt", std::string("var"), true},
                3));
    add(corrupt(std::unordered_map<int, std::string>{{1, "a"}, {2, "bb"}}, 4));
    add(corrupt(std::vector<bool>{true, false, true, true, false, false, true, false, true}, 5));
    add(corrupt(Record{"rec", {1, 2}, Point{1, 2, 3}, {{"k", std::string("v")}, {"n", 3}}, {9, {"x", "y"}}}, 6));
    add(corrupt(Tree{1, {{2, {}}, {3, {{4, {}}}}}}, 7));
    add(corrupt(std::vector<Account>{Account("a", 1), Account("bee", -2)}, 8));
    add(corrupt(Derived{}, 9));
    add(corrupt(std::make_tuple(&twice, 3, std::string("arg")), 10));
    add(corrupt(std::set<std::deque<std::list<short>>>{{{1, 2}, {}}, {{3}}}, 11));
    add(corrupt(std::vector<double>(100, 1.5), 12));
    add(corrupt(Point{1, 2, 3}, 13));
    WithBoostTypes w;
    w.maybe = "m";
    w.va = {1, 2};
    w.v = {"v"};
    add(corrupt(w, 14));
    INFO("loaded " << total.loaded << ", rejected " << total.rejected);
    CHECK(total.rejected > 0);
    CHECK(total.loaded > 0);
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(30));
}
