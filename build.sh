#!/usr/bin/env bash
# mproc's one entry point for building, testing and running things.
#
#   ./build.sh examples   build, then run every example (each checks its own output)
#   ./build.sh test       build, then run every test (ctest, one entry per test case)
#   ./build.sh chaos      build, then the chaos suite: >= 10,000 random kill -9s (10-20 min)
#   ./build.sh asan       the same tests under AddressSanitizer + UBSan
#   ./build.sh tsan       the same tests under ThreadSanitizer
#   ./build.sh bench      build, then run every benchmark (prints figures and ratios, writes
#                         them as CSV and draws PNG charts in build/release/bench/bench-results)
#   ./build.sh fuzz [s]   build the libFuzzer targets with clang and run each for s seconds
#   ./build.sh fuzz-long N [target]  the long campaign: each target (or the one named) runs
#                         until N executions, niced, on a corpus kept in build/fuzz/corpus/
#   ./build.sh release    a user's plain `cmake -DCMAKE_BUILD_TYPE=Release` (-O3) build, warnings
#                         as errors, and its tests
#   ./build.sh clang      the same with clang, warnings as errors, and its tests
#
# Each installs the Debian packages it needs first (apt-get; as root, or via
# sudo), so one command is all a fresh Debian 12 machine needs. Idempotent.
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES=(cmake ninja-build g++ libboost-dev libboost-serialization-dev catch2 libbenchmark-dev python3
          libboost-mpi-dev libopenmpi-dev openmpi-bin python3-mpi4py  # MPI: mproc::mpi, its tests, bench_mpi
          libspdlog-dev)  # the spdlog sink (optional for users), tested
FUZZ_PACKAGES=(clang-14 libclang-rt-14-dev)
# Debian 12's default clang (14) cannot compile libstdc++ 12's <ranges>
# views, which the tests and examples use as users do; clang 16 (also in
# bookworm) can.
CLANG_PACKAGES=(clang-16)
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

build_fuzzers() {  # the libFuzzer targets, ASan + UBSan, in build/fuzz
    ensure_packages "${PACKAGES[@]}" "${FUZZ_PACKAGES[@]}"
    cmake -S . -B build/fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++-14 \
        -DCMAKE_BUILD_TYPE=Debug -DMPROC_BUILD_FUZZERS=ON \
        -DMPROC_BUILD_TESTS=OFF -DMPROC_BUILD_EXAMPLES=OFF -DMPROC_BUILD_BENCHMARKS=OFF -DMPROC_BUILD_TOOLS=OFF >/dev/null
    cmake --build build/fuzz -j "$JOBS"
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
    chaos)
        ensure_packages "${PACKAGES[@]}"
        cmake --preset release >/dev/null
        cmake --build --preset release -j "$JOBS" --target test_chaos leak_check
        table=$(mktemp)
        MPROC_CHAOS_TABLE="$table" ctest --preset chaos || status=$?
        echo
        echo "| scenario                               |  kills | hangs | lost | duplicated | wrong | leftovers | orphans |      wall |"
        echo "|---|---|---|---|---|---|---|---|---|"
        cat "$table"
        awk -F'|' '{k += $3} END {printf "total kills: %d\n", k}' "$table"
        rm -f "$table"
        exit "${status:-0}"
        ;;
    asan|tsan)
        ensure_packages "${PACKAGES[@]}"
        build "$cmd"
        # The preset leaves out chaos and what is labelled nosan (ctest 3.25
        # ignores a -LE given with --preset, so the filter lives there only).
        ctest --preset "$cmd"
        ;;
    bench)
        # Each benchmark also writes its figures to
        # build/release/bench/bench-results/<bench>.csv (or to the directory
        # $MPROC_BENCH_CSV names); bench/plot.py draws them as PNGs there.
        ensure_packages "${PACKAGES[@]}" python3-matplotlib
        build release
        results=${MPROC_BENCH_CSV:-build/release/bench/bench-results}
        # bench_mpi spawns MPI workers: Open MPI refuses root and more
        # processes than cores unless told (README, "MPI pitfalls").
        export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
        for b in build/release/bench/bench_*; do
            [ -x "$b" ] || continue
            echo "=== $(basename "$b")"
            "$b"
        done
        /usr/bin/python3 bench/plot.py "$results"
        ;;
    fuzz)
        build_fuzzers
        for f in build/fuzz/fuzz/fuzz_*; do
            [ -x "$f" ] || continue
            echo "=== $(basename "$f")"
            "$f" -max_total_time="${2:-60}" -max_len=4096
        done
        ;;
    fuzz-long)
        # Runs each target until N executions (libFuzzer's -runs), seeded by
        # its MPROC_FUZZ_SEEDS generator, growing a corpus that the next
        # campaign starts from. Niced: it is meant to run for hours in the
        # background. Ends with libFuzzer's "Done N runs" and its final
        # stats; a crash stops it with the reproducer in build/fuzz/.
        runs=${2:?usage: ./build.sh fuzz-long N [fuzz_target]}
        build_fuzzers
        for f in build/fuzz/fuzz/${3:-fuzz_*}; do
            [ -x "$f" ] || continue
            name=$(basename "$f")
            corpus=build/fuzz/corpus/$name
            mkdir -p "$corpus"
            echo "=== $name: $runs runs, corpus $corpus"
            MPROC_FUZZ_SEEDS="$corpus" nice -n 10 "$f" -runs="$runs" -max_len=4096 -print_final_stats=1 \
                -artifact_prefix=build/fuzz/"$name"- "$corpus"
        done
        ;;
    release)
        # What a user types (no preset): GCC at -O3, where GCC 12 warns
        # differently from -O2. -Werror here, never in a user's configure.
        ensure_packages "${PACKAGES[@]}"
        cmake -S . -B build/user-release -G Ninja -DCMAKE_BUILD_TYPE=Release \
            -DMPROC_WARNINGS_AS_ERRORS=ON >/dev/null
        cmake --build build/user-release -j "$JOBS"
        ctest --test-dir build/user-release -j 2 --timeout 300 --output-on-failure -LE chaos
        ;;
    clang)
        ensure_packages "${PACKAGES[@]}" "${CLANG_PACKAGES[@]}"
        cmake -S . -B build/clang -G Ninja -DCMAKE_CXX_COMPILER=clang++-16 \
            -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMPROC_WARNINGS_AS_ERRORS=ON >/dev/null
        cmake --build build/clang -j "$JOBS"
        ctest --test-dir build/clang -j 2 --timeout 300 --output-on-failure -LE chaos
        ;;
    *)
        sed -n '2,19p' "$0"
        exit 2
        ;;
esac
