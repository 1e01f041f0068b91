#!/usr/bin/env bash
# mproc's one entry point for building, testing and running things.
#
#   ./build.sh examples   build, then run every example (each checks its own output)
#   ./build.sh test       build, then run every test (ctest, one entry per test case)
#   ./build.sh asan       the same tests under AddressSanitizer + UBSan
#   ./build.sh tsan       the same tests under ThreadSanitizer
#   ./build.sh bench      build, then run every benchmark (prints figures and ratios)
#   ./build.sh fuzz [s]   build the libFuzzer targets with clang and run each for s seconds
#
# Each installs the Debian packages it needs first (apt-get; as root, or via
# sudo), so one command is all a fresh Debian 12 machine needs. Idempotent.
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES=(cmake ninja-build g++ libboost-dev libboost-serialization-dev catch2 libbenchmark-dev python3)
FUZZ_PACKAGES=(clang-14 libclang-rt-14-dev)
JOBS=${JOBS:-$(nproc)}

ensure_packages() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "build.sh: installing ${missing[*]}"
    local sudo=()
    [ "$(id -u)" -ne 0 ] && sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

build() {  # build PRESET
    cmake --preset "$1" >/dev/null
    cmake --build --preset "$1" -j "$JOBS"
}

cmd=${1:-test}
case "$cmd" in
    examples)
        ensure_packages "${PACKAGES[@]}"
        build release
        ctest --preset release -L example --verbose
        ;;
    test)
        ensure_packages "${PACKAGES[@]}"
        build release
        ctest --preset release
        ;;
    asan|tsan)
        ensure_packages "${PACKAGES[@]}"
        build "$cmd"
        ctest --preset "$cmd" -LE nosan
        ;;
    bench)
        ensure_packages "${PACKAGES[@]}"
        build release
        for b in build/release/bench/bench_*; do
            [ -x "$b" ] || continue
            echo "=== $(basename "$b")"
            "$b"
        done
        ;;
    fuzz)
        ensure_packages "${PACKAGES[@]}" "${FUZZ_PACKAGES[@]}"
        cmake -S . -B build/fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++-14 \
            -DCMAKE_BUILD_TYPE=Debug -DMPROC_BUILD_FUZZERS=ON \
            -DMPROC_BUILD_TESTS=OFF -DMPROC_BUILD_EXAMPLES=OFF -DMPROC_BUILD_BENCHMARKS=OFF >/dev/null
        cmake --build build/fuzz -j "$JOBS"
        for f in build/fuzz/fuzz/fuzz_*; do
            [ -x "$f" ] || continue
            echo "=== $(basename "$f")"
            "$f" -max_total_time="${2:-60}" -max_len=4096
        done
        ;;
    *)
        sed -n '2,12p' "$0"
        exit 2
        ;;
esac
