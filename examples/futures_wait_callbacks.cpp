// Python's concurrent.futures docs, the Executor / Future / module-function
// snippets in a ProcessPoolExecutor: submit(pow, ...).result(),
// wait(FIRST_COMPLETED / FIRST_EXCEPTION / ALL_COMPLETED),
// add_done_callback, and cancel() of a task still queued.
//
//   ./futures_wait_callbacks [--start-method fork|spawn|forkserver]
//
// Python originals:
//   with ProcessPoolExecutor(max_workers=1) as executor:
//       future = executor.submit(pow, 323, 1235)
//       print(future.result())
//
//   done, not_done = concurrent.futures.wait(fs, return_when=FIRST_COMPLETED)
//   done, not_done = concurrent.futures.wait(fs, return_when=FIRST_EXCEPTION)
//   done, not_done = concurrent.futures.wait(fs)              # ALL_COMPLETED
//
//   future.add_done_callback(fn)   # fn(future), in a thread of this process
//   future.cancel()                # True if it had not started yet
//
// pow(323, 1235) is a 3,000-digit number in Python; C++ has no big
// integers, so this port takes it modulo 10**9 + 7 (pow's third argument).
#include <mproc/mproc.hpp>

#include <condition_variable>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "start_method_arg.hpp"

std::int64_t pow_mod(std::int64_t base, std::int64_t exp, std::int64_t mod) {  // pow(base, exp, mod)
    std::int64_t r = 1;
    base %= mod;
    for (; exp > 0; exp >>= 1, base = base * base % mod)
        if (exp & 1) r = r * base % mod;
    return r;
}

// A task that takes `ms` milliseconds; a negative one fails.
int work(int ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms < 0 ? -ms : ms));
    if (ms < 0) throw std::invalid_argument("negative duration " + std::to_string(ms));
    return ms;
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    start_method_from_args(argc, argv);
    using std::chrono::seconds;
    bool ok = true;
    {
        mproc::ProcessPoolExecutor executor(1);
        auto future = executor.submit(pow_mod, 323, 1235, 1000000007);
        std::int64_t r = future.result();
        std::printf("pow(323, 1235, 10**9+7) = %lld\n", static_cast<long long>(r));
        ok = ok && r == pow_mod(323, 1235, 1000000007) && r > 0;
    }
    {
        mproc::ProcessPoolExecutor executor(2);
        std::mutex mu;  // the callbacks run on another thread of this process
        std::condition_variable cv;
        int callbacks = 0, callback_sum = 0;
        std::vector<mproc::Future<int>> fs;
        for (int ms : {200, 10, 100, 50}) {
            fs.push_back(executor.submit(work, ms));
            fs.back().add_done_callback([&](mproc::Future<int> f) {
                std::lock_guard g(mu);
                callback_sum += f.result();
                ++callbacks;
                cv.notify_all();
            });
        }

        auto first = mproc::wait(fs, seconds(60), mproc::FIRST_COMPLETED);
        std::printf("FIRST_COMPLETED: %zu done, %zu not done\n", first.done.size(), first.not_done.size());
        ok = ok && !first.done.empty() && first.done.size() + first.not_done.size() == fs.size();

        auto all = mproc::wait(fs, seconds(60));
        std::printf("ALL_COMPLETED: %zu done, %zu not done\n", all.done.size(), all.not_done.size());
        ok = ok && all.done.size() == fs.size() && all.not_done.empty();

        // Each callback runs in this process once its future is done: by now
        // all are done, but the last callback may still be on its way.
        std::unique_lock lk(mu);
        cv.wait_for(lk, seconds(60), [&] { return callbacks == 4; });
        std::printf("callbacks: %d, sum of results %d\n", callbacks, callback_sum);
        ok = ok && callbacks == 4 && callback_sum == 200 + 10 + 100 + 50;
    }
    {
        mproc::ProcessPoolExecutor executor(1);
        std::vector<mproc::Future<int>> fs{executor.submit(work, 10), executor.submit(work, -20)};
        auto first_error = mproc::wait(fs, seconds(60), mproc::FIRST_EXCEPTION);
        bool saw_error = false;
        for (auto& f : first_error.done) {
            if (!f.exception()) continue;
            try {
                std::rethrow_exception(f.exception());
            } catch (const std::invalid_argument& e) {  // a standard type keeps its type
                std::printf("FIRST_EXCEPTION: %s\n", e.what());
                saw_error = true;
            }
        }
        ok = ok && saw_error;

        // One worker, busy with a long task: the task queued behind it can
        // still be cancelled (Python: True if it had not started).
        auto busy = executor.submit(work, 300);
        std::vector<mproc::Future<int>> queued;
        for (int i = 0; i < 8; ++i) queued.push_back(executor.submit(work, 1));
        bool cancelled = queued.back().cancel();
        std::printf("cancel() of a queued task: %s\n", cancelled ? "True" : "False");
        if (cancelled) {
            try {
                queued.back().result();
                ok = false;
            } catch (const mproc::CancelledError&) {
                std::printf("result() of a cancelled task: CancelledError\n");
            }
        }
        ok = ok && busy.result(seconds(60)) == 300;
        ok = ok && (!cancelled || queued.back().cancelled());
    }
    std::printf("%s\n", ok ? "OK" : "MISMATCH");
    return ok ? 0 : 1;
}
