// Compile-fail check (tests/compile_fail/check.cmake): a pool task whose
// argument cannot be serialized must fail with mproc's static_assert, naming
// the type, as the FIRST error. Built with -DMPROC_EXPECT_OK the same calls
// use a serializable type and must compile (so the check cannot pass for a
// broken setup).
#include <mproc/futures.hpp>
#include <mproc/pool.hpp>

#include <string>
#include <vector>

struct NotSerializable {  // not trivially copyable, no serialize()
    std::string text;
    NotSerializable() = default;
};

#ifdef MPROC_EXPECT_OK
using Arg = std::string;
#else
using Arg = NotSerializable;
#endif

int task(Arg) { return 1; }

int main() {
    mproc::Pool pool(1);
#if defined(MPROC_CHECK_SUBMIT)
    mproc::ProcessPoolExecutor ex(1);
    return ex.submit(task, Arg{}).result();
#elif defined(MPROC_CHECK_MAP)
    return pool.map(task, std::vector<Arg>(2))[0];
#else
    return pool.apply(task, Arg{});
#endif
}
