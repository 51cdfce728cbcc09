#!/usr/bin/env python3
"""Cold start to ready: spawns `gantry serve` on a fresh data directory and times
until GET /readyz answers 200 (first start: creates the database and runs the
migrations), then again on the same directory (a restart). Median over N runs.

Usage: coldstart.py GANTRY_BINARY [RUNS]
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

from harness import answers_ready, free_port

binary = sys.argv[1]
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 10


def start_once(data_dir):
    port = free_port()
    started = time.perf_counter()
    proc = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data_dir],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if answers_ready(port):
                return (time.perf_counter() - started) * 1000
            if proc.poll() is not None:
                raise SystemExit("gantry exited during start")
            time.sleep(0.001)
    finally:
        proc.terminate()
        proc.wait()


first, again = [], []
for _ in range(runs):
    with tempfile.TemporaryDirectory() as d:
        data = os.path.join(d, "data")
        first.append(start_once(data))
        again.append(start_once(data))
print("%-66s %12s %12.1f %7s  %s" % (f"cold start to /readyz 200, fresh data dir (median of {runs})", "-", statistics.median(first), "-", "ms"))
print("%-66s %12s %12.1f %7s  %s" % (f"restart to /readyz 200, existing data dir (median of {runs})", "-", statistics.median(again), "-", "ms"))
