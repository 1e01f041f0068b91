#!/usr/bin/env python3
"""Runs an MPI program under mpirun for ctest, and checks how it ended.

  run_mpi.py --mpirun PATH --np N [--tcp] [--singleton] [--expect-death REGEX]
             [--timeout S] -- PROGRAM ARGS...

- As root, sets Open MPI's OMPI_ALLOW_RUN_AS_ROOT / _CONFIRM (mpirun refuses
  root otherwise); always --oversubscribe (this machine may have fewer cores
  than ranks).
- --tcp forces `--mca btl tcp,self`, the transport separate machines use.
- --singleton runs PROGRAM without mpirun (MPI's singleton init, then
  MPI_Comm_spawn from it).
- Passes if the program exits 0; with --expect-death, if instead mpirun
  exits non-zero and its output matches REGEX (the runtime naming the dead
  rank), or the program reports BrokenProcessPool and exits 0.
- A run past --timeout is killed (its whole process group) and fails: a
  hang is a failure, never a stuck ctest.
- Afterwards no process of PROGRAM (or an orted of this run) may be left.
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import time


def processes_of(path):
    """Pids of live processes whose executable is `path`."""
    real = os.path.realpath(path)
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            exe = os.readlink(f"/proc/{d}/exe")
        except OSError:
            continue
        if exe == real:
            try:
                with open(f"/proc/{d}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        continue
            except OSError:
                continue
            pids.append(int(d))
    return pids


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mpirun", required=True)
    ap.add_argument("--np", type=int, default=1)
    ap.add_argument("--tcp", action="store_true")
    ap.add_argument("--singleton", action="store_true")
    ap.add_argument("--expect-death")
    ap.add_argument("--timeout", type=float, default=240)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    env = dict(os.environ)
    if os.geteuid() == 0:
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    env["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
    # The MPI library frees little at MPI_Finalize: LeakSanitizer (ASan
    # builds) would fail every run on MPI's allocations, not mproc's (many in
    # MCA components it has unloaded, so no suppression can name them). The
    # flag is appended: the asan preset sets detect_leaks=1, and the last
    # setting wins. mproc's own leaks are checked by the non-MPI tests.
    asan = env.get("ASAN_OPTIONS", "")
    env["ASAN_OPTIONS"] = (asan + ":" if asan else "") + "detect_leaks=0"
    # Under TSan, Open MPI and its dlopen'ed components are not instrumented:
    # the locks and races TSan sees there (e.g. a lock-order cycle inside
    # mca_btl_tcp) are inside Open MPI, whose own ordering TSan cannot see.
    # TSan then watches only calls made from instrumented code.
    tsan = env.get("TSAN_OPTIONS", "")
    if tsan:
        env["TSAN_OPTIONS"] = tsan + ":ignore_noninstrumented_modules=1"
    if a.tcp:
        env["OMPI_MCA_btl"] = "tcp,self"
    if a.singleton:
        argv = cmd
    else:
        argv = [a.mpirun, "--oversubscribe", "-np", str(a.np)]
        if a.tcp:
            argv += ["--mca", "btl", "tcp,self"]
        argv += cmd
    before = set(processes_of(cmd[0]))
    print("run_mpi:", " ".join(argv), flush=True)
    t0 = time.monotonic()
    p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True, text=True, errors="replace")
    try:
        out, _ = p.communicate(timeout=a.timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        timed_out = True
    took = time.monotonic() - t0
    sys.stdout.write(out)
    print(f"run_mpi: exit status {p.returncode} after {took:.1f} s", flush=True)
    ok = True
    if timed_out:
        print(f"run_mpi: FAILED: still running after {a.timeout} s (a hang); killed")
        ok = False
    elif a.expect_death:
        if p.returncode == 0:
            if "BrokenProcessPool reported" not in out:
                print("run_mpi: FAILED: exit 0 but no BrokenProcessPool was reported")
                ok = False
        elif not re.search(a.expect_death, out):
            print(f"run_mpi: FAILED: exit {p.returncode}, but the output does not match {a.expect_death!r}")
            ok = False
    elif p.returncode != 0:
        print("run_mpi: FAILED: non-zero exit")
        ok = False
    # Nothing of this run may be left (mpirun ends its daemons and ranks as
    # it exits; allow them a moment to be reaped).
    deadline = time.monotonic() + 10
    while True:
        left = sorted(set(processes_of(cmd[0])) - before)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if left:
        print(f"run_mpi: FAILED: processes left behind: {left}")
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
