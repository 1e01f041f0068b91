"""mpi4py.futures' figures for bench_mpi (the same measurements, same
worker count): per-task overhead serial and batched, map with chunksize 1.

  mpirun -np 1 python3 bench_mpi4py.py WORKERS N REPS              (spawns WORKERS)
  mpirun -np N python3 -m mpi4py.futures bench_mpi4py.py W N REPS  (the N-1 other ranks)

Prints `name value` lines (microseconds per task, medians of REPS runs).
"""
import statistics
import sys
import time

from mpi4py.futures import MPIPoolExecutor


def noop(x):
    return x


def main():
    workers, n, reps = (int(a) for a in sys.argv[1:4])
    with MPIPoolExecutor(max_workers=workers) as ex:
        list(ex.map(noop, range(4 * workers)))  # workers up
        serial, batched, mapped = [], [], []
        for _ in range(reps):
            t0 = time.perf_counter()
            for i in range(n):
                ex.submit(noop, i).result()
            serial.append((time.perf_counter() - t0) / n * 1e6)
            t0 = time.perf_counter()
            fs = [ex.submit(noop, i) for i in range(n)]
            for f in fs:
                f.result()
            batched.append((time.perf_counter() - t0) / n * 1e6)
            t0 = time.perf_counter()
            list(ex.map(noop, range(n), chunksize=1))
            mapped.append((time.perf_counter() - t0) / n * 1e6)
    print("serial_us", statistics.median(serial))
    print("batched_us", statistics.median(batched))
    print("map1_us", statistics.median(mapped))


if __name__ == "__main__":
    main()
