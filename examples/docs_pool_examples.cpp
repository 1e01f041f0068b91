// Python's multiprocessing docs, "Examples": the Pool demonstration —
// calculate/mul/plus through apply_async, imap, imap_unordered and map,
// error handling (ZeroDivisionError from apply, map, imap and
// IMapIterator.next), a timeout, and callbacks.
//
//   ./docs_pool_examples [--start-method fork|spawn|forkserver]
//
// Python original (abridged):
//   def calculate(func, args):
//       result = func(*args)
//       return '%s says that %s%s = %s' % (
//           multiprocessing.current_process().name, func.__name__, args, result)
//   def calculatestar(args):
//       return calculate(*args)
//   def mul(a, b): time.sleep(0.5 * random.random()); return a * b
//   def plus(a, b): time.sleep(0.5 * random.random()); return a + b
//   def f(x): return 1.0 / (x - 5.0)
//   def pow3(x): return x ** 3
//
//   with multiprocessing.Pool(PROCESSES) as pool:
//       TASKS = [(mul, (i, 7)) for i in range(10)] + [(plus, (i, 8)) for i in range(10)]
//       results = [pool.apply_async(calculate, t) for t in TASKS]
//       imap_it = pool.imap(calculatestar, TASKS)
//       imap_unordered_it = pool.imap_unordered(calculatestar, TASKS)
//       ...print each...
//       print(pool.map(calculatestar, TASKS))
//
//       try: print(pool.apply(f, (5,)))
//       except ZeroDivisionError: print('\tGot ZeroDivisionError as expected from pool.apply()')
//       try: print(pool.map(f, list(range(10))))
//       except ZeroDivisionError: print('\tGot ZeroDivisionError as expected from pool.map()')
//       try: print(list(pool.imap(f, list(range(10)))))
//       except ZeroDivisionError: print('\tGot ZeroDivisionError as expected from list(pool.imap())')
//       it = pool.imap(f, list(range(10)))
//       for i in range(10):
//           try: x = next(it)
//           except ZeroDivisionError:
//               if i == 5: pass
//           except StopIteration: break
//           else:
//               if i == 5: raise AssertionError('expected ZeroDivisionError')
//       assert i == 9
//
//       res = pool.apply_async(calculate, TASKS[0])   # mul sleeps
//       try: res.get(timeout=0.05)                    # a TimeoutError
//       except multiprocessing.TimeoutError: print('\tGot TimeoutError as expected')
//
//       A = []
//       r = pool.apply_async(mul, (7, 8), callback=A.append); r.wait()
//       r = pool.map_async(pow3, range(10), callback=A.extend); r.wait()
//       if A == [56, 0, 1, 8, 27, 64, 125, 216, 343, 512, 729]: print('\tcallbacks succeeded')
//
// C++ floating division by zero does not raise, so f throws the error
// itself: a user type, registered so that it reaches the parent as itself.
// The sleeps are a fifth of the docs'.
#include <mproc/mproc.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <random>
#include <ranges>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "start_method_arg.hpp"

struct ZeroDivisionError : std::runtime_error {
    using std::runtime_error::runtime_error;
};
MPROC_REGISTER_EXCEPTION(ZeroDivisionError);

using Func = long (*)(long, long);
using Task = std::tuple<Func, long, long>;

void nap() {
    thread_local std::mt19937 rng(std::random_device{}());
    std::this_thread::sleep_for(std::chrono::duration<double>(0.1 * std::uniform_real_distribution<>(0, 1)(rng)));
}
long mul(long a, long b) { nap(); return a * b; }
long plus(long a, long b) { nap(); return a + b; }
long slow_mul(long a, long b) { std::this_thread::sleep_for(std::chrono::seconds(1)); return a * b; }
const char* name_of(Func f) { return f == mul ? "mul" : f == plus ? "plus" : "slow_mul"; }

std::string calculate(Func func, long a, long b) {
    return mproc::current_process().name() + " says that " + name_of(func) + "(" + std::to_string(a) + ", " +
           std::to_string(b) + ") = " + std::to_string(func(a, b));
}
std::string calculatestar(Task t) { return std::apply(calculate, t); }
double f(int x) {
    if (x == 5) throw ZeroDivisionError("float division by zero");
    return 1.0 / (x - 5.0);
}
long pow3(long x) { return x * x * x; }

// The part of a result line that does not name the worker.
std::string tail(const std::string& line) { return line.substr(line.find(" says that ")); }

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    start_method_from_args(argc, argv);
    bool ok = true;
    mproc::Pool pool(4);

    std::vector<Task> TASKS;
    for (long i = 0; i < 10; ++i) TASKS.emplace_back(mul, i, 7);
    for (long i = 0; i < 10; ++i) TASKS.emplace_back(plus, i, 8);
    std::vector<std::string> want;
    for (const Task& t : TASKS) want.push_back(" says that " + std::string(name_of(std::get<0>(t))) + "(" +
                                               std::to_string(std::get<1>(t)) + ", " + std::to_string(std::get<2>(t)) +
                                               ") = " + std::to_string(std::get<0>(t) == mul ? std::get<1>(t) * std::get<2>(t)
                                                                                             : std::get<1>(t) + std::get<2>(t)));

    std::vector<mproc::AsyncResult<std::string>> results;
    for (const Task& t : TASKS) results.push_back(pool.apply_async(calculate, std::get<0>(t), std::get<1>(t), std::get<2>(t)));
    std::printf("Ordered results using pool.apply_async():\n");
    for (std::size_t i = 0; i < results.size(); ++i) {
        std::string r = results[i].get();
        std::printf("\t%s\n", r.c_str());
        ok = ok && tail(r) == want[i];
    }

    std::printf("Ordered results using pool.imap():\n");
    std::size_t i = 0;
    for (const std::string& r : pool.imap(calculatestar, TASKS)) {
        std::printf("\t%s\n", r.c_str());
        ok = ok && i < want.size() && tail(r) == want[i++];
    }
    ok = ok && i == want.size();

    std::printf("Unordered results using pool.imap_unordered():\n");
    std::vector<std::string> unordered;
    for (const std::string& r : pool.imap_unordered(calculatestar, TASKS)) {
        std::printf("\t%s\n", r.c_str());
        unordered.push_back(tail(r));
    }
    std::ranges::sort(unordered);
    std::vector<std::string> sorted_want = want;
    std::ranges::sort(sorted_want);
    ok = ok && unordered == sorted_want;

    std::printf("Ordered results using pool.map() --- will block till complete:\n");
    std::vector<std::string> mapped = pool.map(calculatestar, TASKS);
    for (std::size_t k = 0; k < mapped.size(); ++k) {
        std::printf("\t%s\n", mapped[k].c_str());
        ok = ok && tail(mapped[k]) == want[k];
    }

    std::printf("Testing error handling:\n");
    auto expect_zde = [&](const char* from, auto&& call) {
        try {
            call();
            ok = false;
            std::printf("\tno ZeroDivisionError from %s: FAILED\n", from);
        } catch (const ZeroDivisionError&) {
            std::printf("\tGot ZeroDivisionError as expected from %s\n", from);
        }
    };
    expect_zde("pool.apply()", [&] { pool.apply(f, 5); });
    expect_zde("pool.map()", [&] { pool.map(f, std::views::iota(0, 10)); });
    expect_zde("list(pool.imap())", [&] {
        std::vector<double> all;
        for (double x : pool.imap(f, std::views::iota(0, 10))) all.push_back(x);
    });
    auto it = pool.imap(f, std::views::iota(0, 10));
    int n = 0;
    for (; n < 10; ++n) {
        try {
            if (!it.next()) break;  // StopIteration
            if (n == 5) ok = false;  // expected ZeroDivisionError
        } catch (const ZeroDivisionError&) {
            ok = ok && n == 5;
        }
    }
    ok = ok && n == 10 && !it.next();
    std::printf("\tGot ZeroDivisionError as expected from IMapIterator.next()\n");

    std::printf("Testing timeouts:\n");
    auto res = pool.apply_async(calculate, Func(slow_mul), 0L, 7L);
    try {
        res.get(std::chrono::milliseconds(50));
        ok = false;
        std::printf("\tno TimeoutError: FAILED\n");
    } catch (const mproc::TimeoutError&) {
        std::printf("\tGot TimeoutError as expected\n");
    }

    std::printf("Testing callback:\n");
    // Python runs a callback before wait() returns; mproc runs it just
    // after waking the waiters, on another thread, so this port waits for
    // the callbacks themselves (the cv) rather than for r.wait().
    std::mutex mu;
    std::condition_variable cv;
    std::vector<long> A;
    int callbacks = 0;
    auto r1 = pool.apply_async(mul, 7L, 8L);
    r1.then([&](long v) { std::lock_guard g(mu); A.push_back(v); ++callbacks; cv.notify_all(); });
    r1.wait(std::chrono::seconds(60));
    {
        std::unique_lock lk(mu);
        cv.wait_for(lk, std::chrono::seconds(60), [&] { return callbacks == 1; });
    }
    auto r2 = pool.map_async(pow3, std::views::iota(0L, 10L));
    r2.then([&](const std::vector<long>& v) {
        std::lock_guard g(mu);
        A.insert(A.end(), v.begin(), v.end());
        ++callbacks;
        cv.notify_all();
    });
    r2.wait(std::chrono::seconds(60));
    {
        std::unique_lock lk(mu);
        cv.wait_for(lk, std::chrono::seconds(60), [&] { return callbacks == 2; });
        const bool cb = A == std::vector<long>{56, 0, 1, 8, 27, 64, 125, 216, 343, 512, 729};
        std::printf("\tcallbacks %s\n", cb ? "succeeded" : "FAILED");
        ok = ok && cb;
    }
    pool.close();
    pool.join();
    std::printf("%s\n", ok ? "OK" : "MISMATCH");
    return ok ? 0 : 1;
}
