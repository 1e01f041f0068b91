// leak_check snapshot FILE        — records the entries of /dev/shm
// leak_check check FILE BUILDDIR  — fails if /dev/shm has new entries, or if
//                                   a process started from BUILDDIR is alive
// Runs as the first and last test of the suite (a ctest fixture).
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <string>

#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace fs = std::filesystem;

// A helper that is exiting as the suite ends (the shared-memory tracker of
// a test process killed a moment ago unlinks its names and exits right
// after) is not a leak: wait up to 10 s for it to exit, on its pidfd.
static bool exits_soon(pid_t pid) {
    int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (fd < 0) return true;  // already gone
    pollfd p{fd, POLLIN, 0};
    int r;
    do r = ::poll(&p, 1, 10000);
    while (r < 0 && errno == EINTR);
    ::close(fd);
    return r == 1;
}

static std::set<std::string> shm_entries() {
    std::set<std::string> s;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/dev/shm", ec)) s.insert(e.path().filename());
    return s;
}

int main(int argc, char** argv) {
    if (argc == 3 && std::string(argv[1]) == "snapshot") {
        std::ofstream out(argv[2]);
        for (const auto& e : shm_entries()) out << e << '\n';
        return out ? 0 : 1;
    }
    if (argc != 4 || std::string(argv[1]) != "check") {
        std::cerr << "usage: leak_check snapshot FILE | check FILE BUILDDIR\n";
        return 2;
    }
    std::set<std::string> before;
    std::ifstream in(argv[2]);
    for (std::string line; std::getline(in, line);) before.insert(line);
    int failures = 0;
    for (const auto& e : shm_entries()) {
        if (!before.count(e)) {
            std::cerr << "leak: /dev/shm/" << e << " appeared during the test suite\n";
            ++failures;
        }
    }
    const std::string build = fs::weakly_canonical(argv[3]).string() + "/";
    const pid_t self = ::getpid();
    std::error_code ec;
    for (const auto& p : fs::directory_iterator("/proc", ec)) {
        const std::string name = p.path().filename();
        if (name.find_first_not_of("0123456789") != std::string::npos) continue;
        if (std::stoi(name) == self) continue;
        std::error_code ec2;
        std::string exe = fs::read_symlink(p.path() / "exe", ec2).string();
        if (!ec2 && exe.rfind(build, 0) == 0 && !exits_soon(std::stoi(name))) {
            std::cerr << "leak: process " << name << " (" << exe << ") is still running\n";
            ++failures;
        }
    }
    if (failures == 0) std::cout << "no leaked /dev/shm entries or processes\n";
    return failures == 0 ? 0 : 1;
}
