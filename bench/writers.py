#!/usr/bin/env python3
"""Concurrent audited writes on PostgreSQL: throughput, and what the database sessions
wait on while 32 clients write at once.

Every write Gantry acknowledges appends to the hash-chained audit log in its own
transaction. For each binary given (`--binary LABEL=PATH`, repeatable, so two builds
run side by side in one invocation) it starts `gantry serve` on a fresh PostgreSQL
database and runs, with C client threads (default 32):

  1. manifest pushes, each thread into its own repository (N per thread), every
     manifest distinct (an annotation), over one config and one 1 KiB layer per
     repository uploaded beforehand;
  2. promotions, each thread into its own application's `dev` environment (the
     `record` target: the deployment runs inside the request), N per thread.

While each runs, a sampler reads `pg_stat_activity` for the bench database every
0.1 s and classifies each active session of the server: waiting for a lock in a
statement that names `audit_head`, waiting for another heavyweight or lightweight
lock, waiting to flush the WAL, or running / waiting on anything else (the client,
I/O). Every answer is checked (201; for promotions state `deployed`).

Usage: writers.py --binary new=target/release/gantry [--binary old=/tmp/gantry-old]
                  [--threads 32] [--pushes 50] [--promotions 25]
                  [--postgres postgres://postgres@127.0.0.1:5432]
Without --binary it builds the release binary (honours CARGO_TARGET_DIR) as `new`.
"""
import argparse
import json
import os
import statistics
import subprocess
import threading
import time
import urllib.parse

from harness import Client, Failures, Server, build, logger, percentile, problem_lines, run_in_threads
from promotion import Images, promote, resources_yaml, upload_small_blob

log = logger("writers")

CLASSIFY = """
SELECT
  count(*),
  count(*) FILTER (WHERE wait_event_type = 'Lock' AND query ILIKE '%audit_head%'),
  count(*) FILTER (WHERE wait_event_type IN ('Lock', 'LWLock')
                   AND NOT (wait_event_type = 'Lock' AND query ILIKE '%audit_head%')),
  count(*) FILTER (WHERE wait_event LIKE 'WAL%')
FROM pg_stat_activity
WHERE datname = '{database}' AND pid <> pg_backend_pid()
  AND state IN ('active', 'idle in transaction')
"""


class Sampler:
    """Samples the sessions of one database every `period` seconds until stopped."""

    def __init__(self, postgres, database, period=0.1):
        url = urllib.parse.urlsplit(postgres)
        self.command = ["psql", "-At", "-F", " ", "-h", url.hostname or "127.0.0.1",
                        "-p", str(url.port or 5432), "-U", url.username or "postgres", "-d", "postgres",
                        "-c", CLASSIFY.format(database=database)]
        self.period = period
        self.totals = [0, 0, 0, 0]
        self.samples = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self):
        while not self.stopped.wait(self.period):
            out = subprocess.run(self.command, capture_output=True, text=True, check=True).stdout
            values = [int(v) for v in out.split()]
            self.samples += 1
            self.totals = [a + b for a, b in zip(self.totals, values)]

    def stop(self):
        self.stopped.set()
        self.thread.join()
        active, head, lock, wal = self.totals
        return dict(samples=self.samples, active=active, head=head, lock=lock, wal=wal,
                    other=active - head - lock - wal)


def timed_threads(server, authorization, plans, one):
    """Runs `one(client, task) -> ms or None` for every task of every plan, a thread per
    plan. Returns (latencies, wall seconds)."""
    lock = threading.Lock()
    times = []

    def work(client, plan):
        for task in plan:
            elapsed = one(client, task)
            if elapsed is not None:
                with lock:
                    times.append(elapsed)

    [wall] = run_in_threads(server.port, authorization, plans, work)
    return times, wall


def push_one(failures):
    def one(client, task):
        repo, tag, manifest = task
        started = time.perf_counter()
        status, _, data = client.request("PUT", f"/v2/{repo}/manifests/{tag}", manifest,
                                         {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        if status != 201:
            failures.add(f"push {repo}:{tag}", status, data.decode("utf-8", "replace"))
            return None
        return (time.perf_counter() - started) * 1000
    return one


def promote_one(failures):
    def one(client, task):
        answer = promote(client, failures, *task)
        return None if answer is None else answer[0]
    return one


def manifests(images, n):
    """`n` distinct manifests of `images`' repository, built but not pushed."""
    built = []
    for _ in range(n):
        images.count += 1
        built.append((images.repo, f"w{images.count}", json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": images.config[0], "size": images.config[1]},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": images.layer[0], "size": images.layer[1]}],
            "annotations": {"bench.gantry/writer": str(images.count)},
        }, separators=(",", ":")).encode()))
    return built


def bench_binary(args, label, binary):
    log(f"{label}: starting gantry on PostgreSQL")
    server = Server("writers", binary, "postgres", args.postgres)
    failures = Failures()
    rows = []
    try:
        authorization = f"Bearer {server.token}"
        client = Client(server.port, authorization)
        apps = [f"app-{i}" for i in range(args.threads)]
        client.expect(200, "POST", "/api/v1/apply", resources_yaml(apps), {"Content-Type": "application/yaml"})
        kib = os.urandom(1024)
        images = {a: Images(client, f"bench/{a}", upload_small_blob(client, f"bench/{a}", kib)) for a in apps}
        # Warm-up, not counted: one push and one promotion per application.
        for a in apps:
            promote(client, failures, a, "dev", images[a].push(1)[0])

        plans = [manifests(images[a], args.pushes) for a in apps]
        log(f"{label}: {args.threads} threads × {args.pushes} manifest pushes")
        sampler = Sampler(args.postgres, server.database)
        times, wall = timed_threads(server, authorization, plans, push_one(failures))
        rows.append((label, f"{args.threads} threads, manifest pushes, one repository each", times, wall,
                     sampler.stop()))

        plans = [[(a, "dev", d) for d in images[a].push(args.promotions)] for a in apps]
        log(f"{label}: {args.threads} threads × {args.promotions} promotions")
        sampler = Sampler(args.postgres, server.database)
        times, wall = timed_threads(server, authorization, plans, promote_one(failures))
        rows.append((label, f"{args.threads} threads, promotions, one application each", times, wall,
                     sampler.stop()))
        verdict = json.loads(client.expect(200, "GET", "/api/v1/audit/verify")[1])
        if verdict.get("intact") is not True:
            failures.add("audit verify", 200, json.dumps(verdict))
        entries = verdict.get("entries")
    finally:
        errors = server.stop()
    return rows, failures.items, errors, entries


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", action="append", default=[], help="LABEL=PATH, repeatable")
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--pushes", type=int, default=50, help="manifest pushes per thread")
    parser.add_argument("--promotions", type=int, default=25, help="promotions per thread")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    binaries = [b.split("=", 1) for b in args.binary] or [["new", build(log)]]

    print("| build | workload | /s | median | p99 | active-session samples | waiting on audit head "
          "| other lock | WAL flush | running, I/O, other |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    notes = []
    for label, binary in binaries:
        rows, failures, errors, entries = bench_binary(args, label, binary)
        for label_, workload, times, wall, s in rows:
            def share(n):
                return f"{n} ({100 * n / s['active']:.0f}%)" if s["active"] else "0"
            print(f"| {label_} | {workload} | {len(times) / wall:.0f} | {statistics.median(times):.1f} ms | "
                  f"{percentile(times, 99):.1f} ms | {s['active']} in {s['samples']} | {share(s['head'])} | "
                  f"{share(s['lock'])} | {share(s['wal'])} | {share(s['other'])} |")
        notes.append(f"{label}: audit log verified intact with {entries} entries; "
                     f"{len(failures)} unexpected answers; {len(errors)} ERROR/WARN log lines")
        notes += problem_lines(failures, errors)
    print()
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    for line in notes:
        print(line)


if __name__ == "__main__":
    main()
