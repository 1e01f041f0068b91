// leak_check snapshot FILE        — records the entries of /dev/shm
// leak_check check FILE BUILDDIR  — fails if /dev/shm has new entries, or if
//                                   a process started from BUILDDIR is alive
// Runs as the first and last test of the suite (a ctest fixture).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <string>

#include <unistd.h>

namespace fs = std::filesystem;

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
        if (!ec2 && exe.rfind(build, 0) == 0) {
            std::cerr << "leak: process " << name << " (" << exe << ") is still running\n";
            ++failures;
        }
    }
    if (failures == 0) std::cout << "no leaked /dev/shm entries or processes\n";
    return failures == 0 ? 0 : 1;
}
