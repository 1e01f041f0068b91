// Queues and pipes against what a user would otherwise use, in one run:
// Boost.Interprocess message_queue, a raw pipe(2), and Python's
// multiprocessing.Queue / Pipe (run through /usr/bin/python3).
//   - 1 -> 1, 8-byte items: items/s
//   - the same on a busy machine: a busy-loop process (started here) keeps
//     one CPU at 100% while producer and consumer share what is left
//   - 1 -> 1, 1 MiB items: GB/s
//   - 4 -> 1, 8-byte items: items/s
//   - ping-pong round trip through two queues, and through a duplex pipe
// Prints medians and ratios (> 1: mproc is better).
#include <mproc/pipe.hpp>
#include <mproc/queue.hpp>

#include <boost/interprocess/ipc/message_queue.hpp>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.hpp"

namespace bip = boost::interprocess;

namespace {

constexpr int kReps = 5;
constexpr int kSmall = 2'000'000;  // 8-byte items per run
constexpr int kBig = 2'000;        // 1 MiB items per run
constexpr std::size_t kMiB = 1 << 20;
constexpr int kRtt = 50'000;
// The 8-byte cases compare queues of one depth: Boost's message_queue holds
// kDepth messages; mproc's ring is sized to hold as many 8-byte items (a
// record is an 8-byte header and the 8-byte item). mproc's default ring
// (8 MiB) would hold 524,288 of them.
constexpr std::size_t kDepth = 65'536;
constexpr std::size_t kSmallRing = kDepth * 16;

struct MiB {
    unsigned char b[kMiB];
};

template <class Child>
pid_t fork_run(Child&& child) {
    pid_t pid = ::fork();
    if (pid == 0) {
        child();
        ::_exit(0);
    }
    return pid;
}

void reap(std::vector<pid_t>& pids) {
    for (pid_t p : pids) ::waitpid(p, nullptr, 0);
    pids.clear();
}

// A process that keeps one CPU busy until the object goes away: the
// "busy machine" case (on a 2-CPU machine, producer and consumer then share
// one CPU's worth of time with it).
class BusyLoop {
public:
    BusyLoop()
        : pid_(fork_run([] {
              for (;;) asm volatile("");  // a loop the compiler keeps
          })) {}
    ~BusyLoop() {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
    }
    BusyLoop(const BusyLoop&) = delete;
    BusyLoop& operator=(const BusyLoop&) = delete;

private:
    pid_t pid_;
};

// ---- mproc ----------------------------------------------------------------

double mproc_small(int producers) {
    return bench::median_of(kReps, [&] {
        mproc::Queue<std::uint64_t> q(0, mproc::QueueOptions{.capacity = kSmallRing});
        const int per = kSmall / producers;
        std::vector<pid_t> pids;
        auto t0 = bench::Clock::now();
        for (int p = 0; p < producers; ++p)
            pids.push_back(fork_run([&] {
                for (int i = 0; i < per; ++i) q.put(static_cast<std::uint64_t>(i));
            }));
        std::uint64_t sum = 0;
        for (int i = 0; i < per * producers; ++i) sum += q.get();
        double s = bench::seconds_since(t0);
        reap(pids);
        const std::uint64_t n = static_cast<std::uint64_t>(per);
        if (sum != static_cast<std::uint64_t>(producers) * n * (n - 1) / 2) {
            std::fprintf(stderr, "bench_queue: items were lost or corrupted\n");
            std::exit(1);
        }
        return per * producers / s;
    });
}

double mproc_big() {
    return bench::median_of(kReps, [&] {
        mproc::Queue<MiB> q(0, mproc::QueueOptions{.capacity = 16 * kMiB});
        auto item = std::make_unique<MiB>();
        std::memset(item->b, 7, sizeof item->b);
        std::vector<pid_t> pids;
        auto t0 = bench::Clock::now();
        pids.push_back(fork_run([&] {
            for (int i = 0; i < kBig; ++i) q.put(*item);
        }));
        for (int i = 0; i < kBig; ++i) q.get_into(*item);
        double s = bench::seconds_since(t0);
        reap(pids);
        return kBig * double(kMiB) / s / 1e9;
    });
}

double mproc_queue_rtt() {
    return bench::median_of(kReps, [&] {
        mproc::Queue<std::uint64_t> ping, pong;
        std::vector<pid_t> pids;
        pids.push_back(fork_run([&] {
            for (int i = 0; i < kRtt; ++i) pong.put(ping.get());
        }));
        auto t0 = bench::Clock::now();
        for (int i = 0; i < kRtt; ++i) {
            ping.put(i);
            pong.get();
        }
        double s = bench::seconds_since(t0);
        reap(pids);
        return s / kRtt * 1e6;
    });
}

double mproc_pipe_rtt() {
    return bench::median_of(kReps, [&] {
        auto [a, b] = mproc::Pipe<std::uint64_t>();
        std::vector<pid_t> pids;
        pids.push_back(fork_run([&, b = b] {
            for (int i = 0; i < kRtt; ++i) b.send(b.recv());
        }));
        auto t0 = bench::Clock::now();
        for (int i = 0; i < kRtt; ++i) {
            a.send(i);
            a.recv();
        }
        double s = bench::seconds_since(t0);
        reap(pids);
        return s / kRtt * 1e6;
    });
}

// ---- Boost message_queue ---------------------------------------------------

std::string mq_name() { return "mproc-bench-mq-" + std::to_string(::getpid()); }

double boost_small(int producers) {
    return bench::median_of(kReps, [&] {
        const std::string name = mq_name();
        bip::message_queue::remove(name.c_str());
        bip::message_queue q(bip::create_only, name.c_str(), kDepth, sizeof(std::uint64_t));
        const int per = kSmall / producers;
        std::vector<pid_t> pids;
        auto t0 = bench::Clock::now();
        for (int p = 0; p < producers; ++p)
            pids.push_back(fork_run([&] {
                bip::message_queue child(bip::open_only, name.c_str());
                for (std::uint64_t i = 0; i < std::uint64_t(per); ++i) child.send(&i, sizeof i, 0);
            }));
        std::uint64_t x;
        std::size_t got;
        unsigned prio;
        for (int i = 0; i < per * producers; ++i) q.receive(&x, sizeof x, got, prio);
        double s = bench::seconds_since(t0);
        reap(pids);
        bip::message_queue::remove(name.c_str());
        return per * producers / s;
    });
}

double boost_big() {
    return bench::median_of(kReps, [&] {
        const std::string name = mq_name();
        bip::message_queue::remove(name.c_str());
        bip::message_queue q(bip::create_only, name.c_str(), 16, kMiB);
        auto item = std::make_unique<MiB>();
        std::memset(item->b, 7, sizeof item->b);
        std::vector<pid_t> pids;
        auto t0 = bench::Clock::now();
        pids.push_back(fork_run([&] {
            bip::message_queue child(bip::open_only, name.c_str());
            for (int i = 0; i < kBig; ++i) child.send(item->b, kMiB, 0);
        }));
        std::size_t got;
        unsigned prio;
        for (int i = 0; i < kBig; ++i) q.receive(item->b, kMiB, got, prio);
        double s = bench::seconds_since(t0);
        reap(pids);
        bip::message_queue::remove(name.c_str());
        return kBig * double(kMiB) / s / 1e9;
    });
}

// ---- raw pipe --------------------------------------------------------------

double pipe_small() {
    return bench::median_of(kReps, [&] {
        int fd[2];
        if (::pipe(fd)) std::abort();
        std::vector<pid_t> pids;
        auto t0 = bench::Clock::now();
        pids.push_back(fork_run([&] {
            ::close(fd[0]);
            for (std::uint64_t i = 0; i < std::uint64_t(kSmall); ++i)
                if (::write(fd[1], &i, sizeof i) != sizeof i) ::_exit(1);
        }));
        ::close(fd[1]);
        std::uint64_t x;
        for (int i = 0; i < kSmall; ++i)
            if (::read(fd[0], &x, sizeof x) != sizeof x) std::abort();
        double s = bench::seconds_since(t0);
        reap(pids);
        ::close(fd[0]);
        return kSmall / s;
    });
}

double pipe_big() {
    return bench::median_of(kReps, [&] {
        int fd[2];
        if (::pipe(fd)) std::abort();
        auto item = std::make_unique<MiB>();
        std::vector<pid_t> pids;
        auto t0 = bench::Clock::now();
        pids.push_back(fork_run([&] {
            ::close(fd[0]);
            for (int i = 0; i < kBig; ++i)
                for (std::size_t off = 0; off < kMiB;) {
                    ssize_t w = ::write(fd[1], item->b + off, kMiB - off);
                    if (w <= 0) ::_exit(1);
                    off += std::size_t(w);
                }
        }));
        ::close(fd[1]);
        for (int i = 0; i < kBig; ++i)
            for (std::size_t off = 0; off < kMiB;) {
                ssize_t r = ::read(fd[0], item->b + off, kMiB - off);
                if (r <= 0) std::abort();
                off += std::size_t(r);
            }
        double s = bench::seconds_since(t0);
        reap(pids);
        ::close(fd[0]);
        return kBig * double(kMiB) / s / 1e9;
    });
}

double pipe_rtt() {
    return bench::median_of(kReps, [&] {
        int a[2], b[2];
        if (::pipe(a) || ::pipe(b)) std::abort();
        std::vector<pid_t> pids;
        std::uint64_t x = 0;
        pids.push_back(fork_run([&] {
            for (int i = 0; i < kRtt; ++i)
                if (::read(a[0], &x, 8) != 8 || ::write(b[1], &x, 8) != 8) ::_exit(1);
        }));
        auto t0 = bench::Clock::now();
        for (int i = 0; i < kRtt; ++i)
            if (::write(a[1], &x, 8) != 8 || ::read(b[0], &x, 8) != 8) std::abort();
        double s = bench::seconds_since(t0);
        reap(pids);
        for (int fd : {a[0], a[1], b[0], b[1]}) ::close(fd);
        return s / kRtt * 1e6;
    });
}

// ---- Python -----------------------------------------------------------------

const char* kPyPrelude =
    "import multiprocessing as mp, time, statistics\n"
    "def prod(q, n, payload):\n"
    "    for i in range(n): q.put(payload if payload is not None else i)\n"
    "def echo(c, n):\n"
    "    for i in range(n): c.send(c.recv())\n"
    "def echo_q(a, b, n):\n"
    "    for i in range(n): b.put(a.get())\n";

std::optional<double> py(const std::string& body) {
    return bench::python_figure(std::string(kPyPrelude) + body);
}

}  // namespace

// `bench_queue [section...]` runs only the sections named (small, busy, big,
// many, rtt); with none, all of them.
bool wanted(int argc, char** argv, const char* section) {
    if (argc < 2) return true;
    for (int i = 1; i < argc; ++i)
        if (std::strcmp(argv[i], section) == 0) return true;
    return false;
}

int main(int argc, char** argv) {
    std::printf("mproc queue/pipe benchmark (median of %d runs; ratio > 1: mproc better)\n", kReps);
    std::printf("8-byte cases: both queues hold %zu items (mproc ring %zu KiB, Boost %zu messages)\n\n",
                kDepth, kSmallRing / 1024, kDepth);

    if (wanted(argc, argv, "small")) {
    bench::group("1 -> 1, 8-byte items (million items/s)\n");
    double m1 = mproc_small(1) / 1e6, b1 = boost_small(1) / 1e6, p1 = pipe_small() / 1e6;
    auto py1 = py("def run():\n q=mp.Queue(); n=100000\n p=mp.Process(target=prod,args=(q,n,None)); t=time.perf_counter(); p.start()\n"
                  " for i in range(n): q.get()\n d=time.perf_counter()-t; p.join(); return n/d\n"
                  "if __name__=='__main__': print(statistics.median(run() for _ in range(3))/1e6)\n");
    bench::row("mproc::Queue<uint64_t>", m1, "M/s");
    bench::row("boost::interprocess::message_queue", b1, "M/s");
    bench::row("pipe(2), 8-byte writes", p1, "M/s");
    if (py1) bench::row("python multiprocessing.Queue", *py1, "M/s");
    bench::ratio("vs Boost message_queue", m1 / b1);
    bench::ratio("vs pipe", m1 / p1);
    if (py1) bench::ratio("vs Python", m1 / *py1);
    }

    if (wanted(argc, argv, "busy")) {
    bench::group("\n1 -> 1, 8-byte items, one CPU kept busy by a busy-loop process (million items/s)\n");
    double mb, bb;
    {
        BusyLoop busy;
        mb = mproc_small(1) / 1e6;
        bb = boost_small(1) / 1e6;
    }
    bench::row("mproc::Queue<uint64_t>", mb, "M/s");
    bench::row("boost::interprocess::message_queue", bb, "M/s");
    bench::ratio("vs Boost message_queue", mb / bb);
    }

    if (wanted(argc, argv, "big")) {
    bench::group("\n1 -> 1, 1 MiB items (GB/s)\n");
    double m2 = mproc_big(), b2 = boost_big(), p2 = pipe_big();
    auto py2 = py("def run():\n q=mp.Queue(); n=200; x=bytes(1<<20)\n p=mp.Process(target=prod,args=(q,n,x)); t=time.perf_counter(); p.start()\n"
                  " for i in range(n): q.get()\n d=time.perf_counter()-t; p.join(); return n*(1<<20)/d\n"
                  "if __name__=='__main__': print(statistics.median(run() for _ in range(3))/1e9)\n");
    bench::row("mproc::Queue<1 MiB struct>", m2, "GB/s");
    bench::row("boost::interprocess::message_queue", b2, "GB/s");
    bench::row("pipe(2)", p2, "GB/s");
    if (py2) bench::row("python multiprocessing.Queue (bytes)", *py2, "GB/s");
    bench::ratio("vs Boost message_queue", m2 / b2);
    bench::ratio("vs pipe", m2 / p2);
    if (py2) bench::ratio("vs Python", m2 / *py2);
    }

    if (wanted(argc, argv, "many")) {
    bench::group("\n4 -> 1, 8-byte items (million items/s)\n");
    double m3 = mproc_small(4) / 1e6, b3 = boost_small(4) / 1e6;
    auto py3 = py("def run():\n q=mp.Queue(); n=25000\n ps=[mp.Process(target=prod,args=(q,n,None)) for _ in range(4)]; t=time.perf_counter()\n"
                  " [p.start() for p in ps]\n for i in range(4*n): q.get()\n d=time.perf_counter()-t; [p.join() for p in ps]; return 4*n/d\n"
                  "if __name__=='__main__': print(statistics.median(run() for _ in range(3))/1e6)\n");
    bench::row("mproc::Queue<uint64_t>", m3, "M/s");
    bench::row("boost::interprocess::message_queue", b3, "M/s");
    if (py3) bench::row("python multiprocessing.Queue", *py3, "M/s");
    bench::ratio("vs Boost message_queue", m3 / b3);
    if (py3) bench::ratio("vs Python", m3 / *py3);
    }

    if (wanted(argc, argv, "rtt")) {
    bench::group("\nPing-pong round trip (us)\n");
    double mq = mproc_queue_rtt(), mp = mproc_pipe_rtt(), pr = pipe_rtt();
    auto pyq = py("def run():\n a=mp.Queue(); b=mp.Queue(); n=5000\n p=mp.Process(target=echo_q,args=(a,b,n)); p.start(); t=time.perf_counter()\n"
                  " for i in range(n): a.put(i); b.get()\n d=time.perf_counter()-t; p.join(); return d/n\n"
                  "if __name__=='__main__': print(statistics.median(run() for _ in range(3))*1e6)\n");
    auto pyp = py("def run():\n a,b=mp.Pipe(); n=10000\n p=mp.Process(target=echo,args=(b,n)); p.start(); t=time.perf_counter()\n"
                  " for i in range(n): a.send(i); a.recv()\n d=time.perf_counter()-t; p.join(); return d/n\n"
                  "if __name__=='__main__': print(statistics.median(run() for _ in range(3))*1e6)\n");
    bench::row("two mproc::Queues", mq, "us");
    bench::row("mproc duplex Pipe", mp, "us");
    bench::row("two pipe(2)s", pr, "us");
    if (pyq) bench::row("python two multiprocessing.Queues", *pyq, "us");
    if (pyp) bench::row("python multiprocessing.Pipe", *pyp, "us");
    bench::ratio("Queue RTT vs pipe(2)", pr / mq);
    bench::ratio("Pipe RTT vs pipe(2)", pr / mp);
    if (pyq) bench::ratio("Queue RTT vs Python Queue", *pyq / mq);
    if (pyp) bench::ratio("Pipe RTT vs Python Pipe", *pyp / mp);
    }
    return 0;
}
