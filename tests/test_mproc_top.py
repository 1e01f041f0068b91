#!/usr/bin/env python3
"""mproc-top against a running program (tests/top_subject.cpp).

The subject holds a Queue with three items, a Pool of two workers whose two
tasks block reading a second queue, a Manager with a published dict and a
named SharedMemory segment.
`mproc-top --json --pid <subject>` must list each with plausible figures;
after the subject is killed with SIGKILL (its workers die with it), nothing
of it may be listed: there is no registry to go stale.

    test_mproc_top.py MPROC_TOP SUBJECT
"""
import json
import os
import signal
import subprocess
import sys
import time


def fail(msg, doc=None):
    print("FAILED:", msg)
    if doc is not None:
        print(json.dumps(doc, indent=1))
    sys.exit(1)


def census(top, pid):
    out = subprocess.run([top, "--json", "--pid", str(pid)], check=True, capture_output=True, text=True,
                         timeout=60).stdout
    return json.loads(out)


def wait_for(top, pid, ready, what):
    # The pool's workers take their tasks a moment after the subject says
    # ready: poll the census (bounded) until it shows them, then check all.
    deadline = time.monotonic() + 60
    while True:
        doc = census(top, pid)
        if ready(doc):
            return doc
        if time.monotonic() > deadline:
            fail("timed out waiting for " + what, doc)
        time.sleep(0.05)


def main():
    top, subject = sys.argv[1], sys.argv[2]
    p = subprocess.Popen([subject], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline().split()
        if len(line) != 2 or line[0] != "ready":
            fail("the subject did not start: %r" % line)
        pid = int(line[1])
        if pid != p.pid:
            fail("the subject says pid %d, it is %d" % (pid, p.pid))

        def settled(doc):
            pools = doc["pools"]
            return len(pools) == 1 and pools[0]["tasks_running"] == 2
        doc = wait_for(top, pid, settled, "the pool's two tasks to run")

        objs = doc["objects"]
        queues = [o for o in objs if o["kind"] == "queue"]
        items = [q for q in queues if q.get("maxsize") == 10]
        if len(items) != 1:
            fail("expected one queue of maxsize 10", doc)
        q = items[0]
        if q["depth"] != 3 or q["puts"] != 3 or q["gets"] != 0 or q["bytes_used"] <= 0:
            fail("the items queue should hold 3 items, none taken", doc)
        if pid not in q["pids"] or q["capacity_bytes"] < 4096:
            fail("the items queue: owner or capacity wrong", doc)
        if q["waiting_readers"] != 0 or q["waiting_writers"] != 0:
            fail("nobody waits on the items queue", doc)

        pool = doc["pools"][0]
        if pool["owner"] != pid or pool["worker_count"] != 2 or len(pool["workers"]) != 2:
            fail("the pool: owner %d with two workers expected" % pid, doc)
        if pool["tasks_queued"] != 0 or pool["restarts"] is not None:
            fail("the pool: nothing queued, restarts unknown", doc)
        for w in pool["workers"]:
            if w == pid or not os.path.exists("/proc/%d" % w):
                fail("pool worker %d is not a live process other than the owner" % w, doc)

        # The gate queue: one worker asleep holding its reader lock, the
        # other queued behind it.
        gates = [g for g in queues if g["depth"] == 0 and g["waiting_readers"] >= 1]
        if len(gates) != 1:
            fail("expected the gate queue with a reader asleep", doc)
        g = gates[0]
        if g["reader_pid"] not in pool["workers"]:
            fail("the gate's sleeping reader should be a pool worker", doc)
        if sorted(set(pool["workers"]) | {pid}) != sorted(set(g["pids"]) & (set(pool["workers"]) | {pid})):
            fail("the gate queue should be held by the owner and both workers", doc)

        rings = [o for o in objs if o["kind"] in ("pool-tasks", "pool-results")]
        if sorted(o["kind"] for o in rings) != ["pool-results", "pool-tasks"]:
            fail("the pool's task and result rings should be listed", doc)

        mgrs = [o for o in objs if o["kind"] == "manager"]
        if len(mgrs) != 1:
            fail("expected one manager heap", doc)
        m = mgrs[0]
        if not (0 < m["heap_used"] <= m["heap_committed"] <= m["heap_max"]) or m["objects"] < 1:
            fail("the manager heap: used <= committed <= max, at least one object", doc)
        if m["shut_down"]:
            fail("the manager is running", doc)

        named = [o for o in objs if o["kind"] == "named-segment"]
        if [o["name"] for o in named] != ["/dev/shm/mproc-top-test-%d" % pid] or named[0]["size"] != 8192:
            fail("the named segment should be listed with its size", doc)

        # The text listing names the same things.
        text = subprocess.run([top, "--pid", str(pid)], check=True, capture_output=True, text=True,
                              timeout=60).stdout
        for word in ("QUEUES/PIPES", "POOLS", "MANAGERS", "pool-tasks"):
            if word not in text:
                fail("the text listing lacks %r:\n%s" % (word, text))

        # kill -9: the subject and (parent-death signal) its workers go, and
        # with them everything they held.
        workers = pool["workers"]
        os.kill(pid, signal.SIGKILL)
        p.wait(timeout=30)
        deadline = time.monotonic() + 60
        while any(os.path.exists("/proc/%d" % w) for w in workers):
            if time.monotonic() > deadline:
                fail("the pool's workers outlived their killed owner")
            time.sleep(0.05)
        for w in [pid] + workers:
            after = census(top, w)
            if after["objects"] or after["pools"]:
                fail("objects of a dead process are still listed", after)
        print("OK")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


if __name__ == "__main__":
    main()
