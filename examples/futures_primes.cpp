// Python's concurrent.futures docs, "ProcessPoolExecutor Example": is_prime
// over six large numbers with executor.map.
//
//   ./futures_primes [--start-method fork|spawn|forkserver]
//
// Python original:
//   PRIMES = [112272535095293, 112582705942171, 112272535095293,
//             115280095190773, 115797848077099, 1099726899285419]
//
//   def is_prime(n):
//       if n < 2: return False
//       if n == 2: return True
//       if n % 2 == 0: return False
//       sqrt_n = int(math.floor(math.sqrt(n)))
//       for i in range(3, sqrt_n + 1, 2):
//           if n % i == 0: return False
//       return True
//
//   def main():
//       with concurrent.futures.ProcessPoolExecutor() as executor:
//           for number, prime in zip(PRIMES, executor.map(is_prime, PRIMES)):
//               print('%d is prime: %s' % (number, prime))
//
// The executor's workers start with the process-wide start method.
#include <mproc/mproc.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "start_method_arg.hpp"

bool is_prime(std::int64_t n) {
    if (n < 2) return false;
    if (n == 2) return true;
    if (n % 2 == 0) return false;
    const auto sqrt_n = static_cast<std::int64_t>(std::floor(std::sqrt(static_cast<double>(n))));
    for (std::int64_t i = 3; i <= sqrt_n; i += 2)
        if (n % i == 0) return false;
    return true;
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    start_method_from_args(argc, argv);
    const std::vector<std::int64_t> PRIMES{112272535095293, 112582705942171, 112272535095293,
                                           115280095190773, 115797848077099, 1099726899285419};
    const std::vector<bool> expected{true, true, true, true, true, false};
    bool ok = true;
    std::size_t i = 0;
    {
        mproc::ProcessPoolExecutor executor;
        for (bool prime : executor.map(is_prime, PRIMES)) {  // zip(PRIMES, executor.map(...))
            std::printf("%lld is prime: %s\n", static_cast<long long>(PRIMES[i]), prime ? "True" : "False");
            ok = ok && i < expected.size() && prime == expected[i];
            ++i;
        }
    }
    ok = ok && i == PRIMES.size();
    std::printf("%s\n", ok ? "OK" : "MISMATCH");
    return ok ? 0 : 1;
}
