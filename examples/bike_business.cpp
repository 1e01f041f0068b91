// The seeds' "B5" beer-delivery business, with processes instead of threads:
// a dispatcher puts orders on a JoinableQueue; order pickers take an order
// and an empty cargo bike and load it; messengers ride loaded bikes out,
// bring them back to the empty-bike queue, and mark the order done. The
// dispatcher waits on orders.join(). A manager list logs each delivery and
// a manager dict counts each messenger's rides, shared by every process.
//
//   ./bike_business [orders] [--start-method fork|spawn|forkserver]
//
// Python original (threads, Queue.Queue):
//   q_orders = Queue.Queue()
//   q_loaded_bikes = Queue.Queue(maxsize=n_bikes)
//   q_empty_bikes = Queue.Queue(maxsize=n_bikes)
//   ... order_picker_worker: order = q_orders.get(); bike = q_empty_bikes.get(True, 1);
//       sleep(5); q_loaded_bikes.put(bike, True, 1)
//   ... messenger_worker: bike = q_loaded_bikes.get(True, 1); sleep(10);
//       q_empty_bikes.put(bike, True, 1); q_orders.task_done()
//   q_orders.join()
#include <mproc/mproc.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

struct LoadedBike {
    int order = 0;
    int bike = 0;
    template <class A>
    void serialize(A& a, unsigned) { a & order & bike; }
};

// The seeds' sleep(5) and sleep(10), in milliseconds.
constexpr auto kPickTime = 5ms;
constexpr auto kRideTime = 10ms;

void order_picker(int n, mproc::QueueProxy<std::optional<int>> orders, mproc::QueueProxy<int> empty_bikes,
                  mproc::QueueProxy<std::optional<LoadedBike>> loaded_bikes) {
    while (std::optional<int> order = orders.get()) {
        int bike = -1;
        for (;;) {  // as the seed: wait for a bike in 1 s steps
            try {
                bike = empty_bikes.get(1s);
                break;
            } catch (const mproc::Empty&) {
            }
        }
        std::this_thread::sleep_for(kPickTime);
        std::printf("picker %d loaded order %d on bike %d\n", n, *order, bike);
        loaded_bikes.put(LoadedBike{*order, bike});
    }
}

void messenger(int n, mproc::QueueProxy<std::optional<LoadedBike>> loaded_bikes, mproc::QueueProxy<int> empty_bikes,
               mproc::QueueProxy<std::optional<int>> orders, mproc::ListProxy<int> delivered,
               mproc::DictProxy<int, int> rides) {
    while (std::optional<LoadedBike> load = loaded_bikes.get()) {
        std::this_thread::sleep_for(kRideTime);
        delivered.append(load->order);
        rides[n] += 1;  // atomic read-modify-write in the shared dict
        std::printf("messenger %d delivered order %d and parked bike %d\n", n, load->order, load->bike);
        empty_bikes.put(load->bike, 1s);
        orders.task_done();
    }
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    int n_orders = 30;
    const int n_messengers = 10, n_bikes = 15, n_order_pickers = 3;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--start-method") == 0 && i + 1 < argc) {
            const char* m = argv[++i];
            mproc::set_start_method(std::strcmp(m, "spawn") == 0        ? mproc::StartMethod::spawn
                                    : std::strcmp(m, "forkserver") == 0 ? mproc::StartMethod::forkserver
                                                                        : mproc::StartMethod::fork);
        } else {
            n_orders = std::atoi(argv[i]);
        }
    }
    std::setvbuf(stdout, nullptr, _IOLBF, 0);

    mproc::Manager manager;
    auto q_orders = manager.JoinableQueue<std::optional<int>>();
    auto q_loaded_bikes = manager.Queue<std::optional<LoadedBike>>(n_bikes);
    auto q_empty_bikes = manager.Queue<int>(n_bikes);
    auto delivered = manager.list<int>();
    auto rides = manager.dict<int, int>();

    for (int o = 0; o < n_orders; ++o) q_orders.put(o);
    for (int b = 0; b < n_bikes; ++b) q_empty_bikes.put(b);

    std::vector<mproc::Process> staff;
    for (int m = 0; m < n_messengers; ++m)
        staff.emplace_back(messenger, m, q_loaded_bikes, q_empty_bikes, q_orders, delivered, rides).start();
    for (int o = 0; o < n_order_pickers; ++o)
        staff.emplace_back(order_picker, o, q_orders, q_empty_bikes, q_loaded_bikes).start();

    const bool all_done = q_orders.join(60s);  // the dispatcher waits for every delivery

    // Close shop: one None per worker, as the seeds' sentinel.
    for (int o = 0; o < n_order_pickers; ++o) q_orders.put(std::nullopt);
    for (int m = 0; m < n_messengers; ++m) q_loaded_bikes.put(std::nullopt);
    bool ok = all_done;
    for (auto& p : staff) ok = p.join(30s) && p.exitcode() == 0 && ok;

    std::vector<int> log = delivered.snapshot();
    std::sort(log.begin(), log.end());
    for (int o = 0; o < n_orders; ++o)
        ok = ok && static_cast<int>(log.size()) == n_orders && log[static_cast<std::size_t>(o)] == o;
    int total_rides = 0;
    for (const auto& [m, n] : rides.items()) {
        std::printf("messenger %d made %d deliveries\n", m, n);
        total_rides += n;
    }
    ok = ok && total_rides == n_orders && q_empty_bikes.qsize() == static_cast<std::size_t>(n_bikes);
    std::printf("%zu of %d orders delivered\n%s\n", log.size(), n_orders, ok ? "OK" : "FAILED");
    return ok ? 0 : 1;
}
