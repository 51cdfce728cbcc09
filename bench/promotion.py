#!/usr/bin/env python3
"""Promotion latency and throughput: request -> deployed with the `record` target.

For each backend (SQLite, PostgreSQL) it starts `gantry serve` on a fresh data
directory (and a fresh PostgreSQL database), applies a pipeline `dev -> staging`
without gates and applications of type container whose environments all have
`target: { record: {} }`, pushes images over the OCI API, then times
`POST /api/v1/promotions` (the gate is open, so the deployment runs inside the
request and the answer is 201 with state `deployed`):

  1. sequential latency of N promotions of 1 KiB images into dev, then the same
     digests into staging (the order gate needs them deployed in dev);
  2. the same into dev with manifests whose layer is one 1 GiB blob (every manifest
     differs only by an annotation, so the 1 GiB is uploaded once);
  3. promotions/s with C client threads, each into its own application (independent
     environments), then all into one environment, which serializes by design: a
     promotion that finds the environment deploying is answered `approved` (queued),
     and the request holding the environment deploys the newest queued one next,
     superseding older ones. Final states are read back after each run.

Every answer is checked (201 and state `deployed`, or `approved` under concurrency;
afterwards only `deployed` or `superseded`); anything else is counted and shown.

Usage: promotion.py [--binary PATH] [--backends sqlite,postgres] [--small 200]
                    [--big 50] [--big-mib 1024] [--concurrency 8,32] [--burst 400]
                    [--apps 32] [--postgres postgres://postgres@127.0.0.1:5432]
Without --binary it builds the release binary (honours CARGO_TARGET_DIR).
"""
import calendar
import hashlib
import json
import os
import statistics
import threading
import time
import urllib.parse

from harness import (Client, Failures, Server, argument_parser, backend_report, latency_columns, logger,
                     parse_arguments, percentile, run_in_threads)

CHUNK = 64 << 20
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"

log = logger("promotion")


# ---------------------------------------------------------------------------------
# Resources and images


def resources_yaml(apps):
    documents = ["kind: Pipeline\nname: bench\nstages:\n  - name: dev\n  - name: staging\n"]
    for name in apps:
        documents.append(
            f"kind: Application\nname: {name}\ntype: container\nrepository: bench/{name}\n"
            "pipeline: bench\nenvironments:\n"
            "  dev: { target: { record: {} } }\n  staging: { target: { record: {} } }\n")
    return "---\n".join(documents)


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def upload_small_blob(client, repo, data):
    digest = sha256(data)
    client.expect(201, "POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", data,
                  {"Content-Type": "application/octet-stream"})
    return digest, len(data)


def upload_big_blob(client, repo, mib):
    """Streams `mib` MiB in CHUNK-sized PATCHes; never more than one chunk in memory."""
    pattern = os.urandom(CHUNK)
    total = mib << 20
    hasher = hashlib.sha256()
    headers, _ = client.expect(202, "POST", f"/v2/{repo}/blobs/uploads/", b"")
    location = headers.get("Location") or headers.get("location")
    offset = 0
    while offset < total:
        chunk = memoryview(pattern)[: min(CHUNK, total - offset)]
        hasher.update(chunk)
        path = urllib.parse.urlsplit(location)
        path = path.path + ("?" + path.query if path.query else "")
        headers, _ = client.expect(
            202, "PATCH", path, chunk,
            {"Content-Type": "application/octet-stream",
             "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
             "Content-Length": str(len(chunk))})
        location = headers.get("Location") or headers.get("location")
        offset += len(chunk)
    digest = "sha256:" + hasher.hexdigest()
    path = urllib.parse.urlsplit(location)
    query = (path.query + "&" if path.query else "") + f"digest={digest}"
    client.expect(201, "PUT", f"{path.path}?{query}", b"")
    return digest, total


class Images:
    """Pushes distinct manifests (differing by an annotation) over one config and layer."""

    def __init__(self, client, repo, layer):
        self.client = client
        self.repo = repo
        self.config = upload_small_blob(client, repo, b'{"architecture":"amd64","os":"linux"}')
        self.layer = layer
        self.count = 0

    def push(self, n):
        digests = []
        for _ in range(n):
            self.count += 1
            manifest = json.dumps({
                "schemaVersion": 2,
                "mediaType": MANIFEST_TYPE,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": self.config[0], "size": self.config[1]},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": self.layer[0], "size": self.layer[1]}],
                "annotations": {"bench.gantry/n": str(self.count)},
            }, separators=(",", ":")).encode()
            self.client.expect(201, "PUT", f"/v2/{self.repo}/manifests/v{self.count}", manifest,
                               {"Content-Type": MANIFEST_TYPE})
            digests.append(sha256(manifest))
        return digests


# ---------------------------------------------------------------------------------
# Promotions


def promote(client, failures, application, environment, digest, accept=("deployed",)):
    """Times one promotion request. Returns (ms, promotion) when it answered 201 with
    a state in `accept`, else records the failure and returns None."""
    body = json.dumps({"application": application, "environment": environment, "digest": digest})
    started = time.perf_counter()
    try:
        status, _, data = client.request("POST", "/api/v1/promotions", body,
                                         {"Content-Type": "application/json"})
    except OSError as error:
        failures.add(f"promote {application}/{environment}", "connection", repr(error))
        return None
    elapsed = (time.perf_counter() - started) * 1000
    try:
        promotion = json.loads(data)
    except ValueError:
        promotion = {}
    if status != 201 or promotion.get("state") not in accept:
        failures.add(f"promote {application}/{environment}", status, data.decode("utf-8", "replace"))
        return None
    return elapsed, promotion


def sequential(client, failures, application, environment, digests):
    answers = [promote(client, failures, application, environment, d) for d in digests]
    return [answer[0] for answer in answers if answer is not None]


def concurrent(port, authorization, failures, plans):
    """Runs one thread per plan, a list of (application, environment, digest), each
    thread on its own keep-alive connection opened before the clock starts. A
    promotion into an environment that is busy deploying is answered `approved`
    (queued): the request holding the environment deploys the newest queued one next
    and supersedes older ones. Returns (latencies, answers by state, ids, wall s)."""
    lock = threading.Lock()
    times, states, ids = [], {}, []

    def work(client, plan):
        for task in plan:
            answer = promote(client, failures, *task, accept=("deployed", "approved"))
            if answer is not None:
                with lock:
                    times.append(answer[0])
                    states[answer[1]["state"]] = states.get(answer[1]["state"], 0) + 1
                    ids.append(answer[1]["id"])

    [wall] = run_in_threads(port, authorization, plans, work)
    return times, states, ids, wall


def settle(client, failures, ids):
    """Final states of promotions once every request has returned, and the server's
    request -> deployed times (updated_at - created_at, ms) of those deployed."""
    final, to_deployed = {}, []
    for promotion_id in ids:
        _, data = client.expect(200, "GET", f"/api/v1/promotions/{promotion_id}")
        promotion = json.loads(data)
        state = promotion["state"]
        final[state] = final.get(state, 0) + 1
        if state == "deployed":
            to_deployed.append(timestamp_ms(promotion["updated_at"]) - timestamp_ms(promotion["created_at"]))
        elif state != "superseded":
            failures.add(f"promotion {promotion_id} still {state} after every request returned", 200,
                         data.decode("utf-8", "replace"))
    return final, to_deployed


def timestamp_ms(text):
    # RFC 3339 in UTC with milliseconds, e.g. 2026-11-22T15:30:00.123Z.
    whole, _, fraction = text.rstrip("Z").partition(".")
    seconds = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    return seconds * 1000 + (int((fraction + "000")[:3]) if fraction else 0)


def row(backend, workload, clients, times, per_second=None, deployed_per_second=None, outcome=""):
    if per_second is None and times:
        per_second = deployed_per_second = 1000 / statistics.mean(times)
    return dict(backend=backend, workload=workload, clients=clients, times=times,
                per_second=per_second, deployed_per_second=deployed_per_second, outcome=outcome)


def bench_backend(args, backend):
    log(f"{backend}: starting gantry")
    load_before = os.getloadavg()[0]
    server = Server("promotion", args.binary, backend, args.postgres)
    failures = Failures()
    rows = []
    upload_s = peak = float("nan")
    try:
        authorization = f"Bearer {server.token}"
        client = Client(server.port, authorization)
        apps = [f"app-{i}" for i in range(args.apps)] + ["big"]
        client.expect(200, "POST", "/api/v1/apply", resources_yaml(apps),
                      {"Content-Type": "application/yaml"})

        kib = os.urandom(1024)
        small = {a: Images(client, f"bench/{a}", upload_small_blob(client, f"bench/{a}", kib))
                 for a in apps if a != "big"}
        log(f"{backend}: uploading the {args.big_mib} MiB layer")
        started = time.perf_counter()
        big_layer = upload_big_blob(client, "bench/big", args.big_mib)
        upload_s = time.perf_counter() - started
        log(f"{backend}: {args.big_mib} MiB uploaded in {upload_s:.1f} s")
        big = Images(client, "bench/big", big_layer)
        other = "app-1" if args.apps > 1 else "app-0"

        # Warm-up (not counted): a few promotions into every environment used below.
        for application, images in (("app-0", small["app-0"]), (other, small[other]), ("big", big)):
            warm = images.push(5)
            sequential(client, failures, application, "dev", warm)
            sequential(client, failures, application, "staging", warm)

        # 1. Sequential, 1 KiB images, into dev, then the same digests into staging.
        digests = small["app-0"].push(args.small)
        log(f"{backend}: {args.small} sequential promotions of 1 KiB images")
        dev = sequential(client, failures, "app-0", "dev", digests)
        staging = sequential(client, failures, "app-0", "staging", digests)
        rows.append(row(backend, "sequential, 1 KiB image → dev", 1, dev))
        rows.append(row(backend, "sequential, 1 KiB image, dev → staging (order gate)", 1, staging))

        # Baseline: an authenticated read of one promotion (HTTP, token check, one query).
        last = json.loads(client.expect(200, "GET", "/api/v1/promotions?limit=1")[1])["promotions"][0]["id"]
        reads = []
        for _ in range(args.small):
            started = time.perf_counter()
            client.expect(200, "GET", f"/api/v1/promotions/{last}")
            reads.append((time.perf_counter() - started) * 1000)
        rows.append(row(backend, "baseline: GET one promotion (HTTP + token + read)", 1, reads))

        # 2. Sequential, manifests whose layer is the big blob, alternating with 1 KiB
        # ones into another application, so both sizes see the same moments of a
        # noisy machine.
        big_digests = big.push(args.big)
        small_digests = small[other].push(args.big)
        log(f"{backend}: {args.big} sequential promotions of {args.big_mib} MiB images, alternating with 1 KiB")
        big_times, small_times = [], []
        for big_digest, small_digest in zip(big_digests, small_digests):
            big_times += sequential(client, failures, "big", "dev", [big_digest])
            small_times += sequential(client, failures, other, "dev", [small_digest])
        size = f"{args.big_mib // 1024} GiB" if args.big_mib % 1024 == 0 else f"{args.big_mib} MiB"
        rows.append(row(backend, f"sequential, {size} image → dev", 1, big_times))
        rows.append(row(backend, f"sequential, 1 KiB image → dev (alternating with the {size} run)", 1,
                        small_times))

        # 3. Throughput under concurrency: each thread its own application (independent
        # environments; threads share applications when there are fewer), then every
        # thread into one environment.
        for threads in args.concurrency:
            each = -(-args.burst // threads)
            apps_used = min(threads, args.apps)
            plans = []
            for k in range(threads):
                application = f"app-{k % args.apps}"
                plans.append([(application, "dev", d) for d in small[application].push(each)])
            log(f"{backend}: {threads * each} promotions, {threads} threads over {apps_used} applications")
            times, states, ids, wall = concurrent(server.port, authorization, failures, plans)
            final, _ = settle(client, failures, ids)
            rows.append(row(backend, f"{threads} threads, {apps_used} applications → dev", threads, times,
                            len(times) / wall, final.get("deployed", 0) / wall, outcome(states, final)))

            plans = [[("app-0", "dev", d) for d in small["app-0"].push(each)] for _ in range(threads)]
            log(f"{backend}: {threads * each} promotions, {threads} threads into one environment")
            times, states, ids, wall = concurrent(server.port, authorization, failures, plans)
            final, to_deployed = settle(client, failures, ids)
            text = outcome(states, final)
            if to_deployed:
                text += (f"; request → deployed (server clock) median {statistics.median(to_deployed):.0f} ms, "
                         f"p99 {percentile(to_deployed, 99):.0f} ms")
            rows.append(row(backend, f"{threads} threads, one environment (app-0 → dev)", threads, times,
                            len(times) / wall, final.get("deployed", 0) / wall, text))
        peak = server.rss_mib()
    finally:
        errors = server.stop()
    load = (load_before, os.getloadavg()[0])
    return rows, failures.items, errors, upload_s, peak, load


def outcome(states, final):
    answered = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    settled = ", ".join(f"{n} {state}" for state, n in sorted(final.items()))
    return f"answered: {answered}; finally: {settled}"


def main():
    parser = argument_parser(__doc__)
    parser.add_argument("--small", type=int, default=200, help="sequential 1 KiB promotions")
    parser.add_argument("--big", type=int, default=50, help="sequential big-image promotions")
    parser.add_argument("--big-mib", type=int, default=1024, help="size of the big layer in MiB")
    parser.add_argument("--concurrency", default="8,32", help="client thread counts")
    parser.add_argument("--burst", type=int, default=400, help="promotions per concurrent run")
    parser.add_argument("--apps", type=int, default=32, help="applications for the spread runs (one per thread)")
    args = parse_arguments(parser, log)
    args.concurrency = [int(c) for c in args.concurrency.split(",")]

    all_rows, report = [], []
    for backend in args.backends.split(","):
        rows, failures, errors, upload_s, peak, load = bench_backend(args, backend)
        all_rows += rows
        report += backend_report(backend, load, f"{args.big_mib} MiB layer uploaded in {upload_s:.1f} s",
                                 peak, failures, errors)

    print("| backend | workload | clients | n | median ms | p99 ms | max ms | requests/s | deployed/s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in all_rows:
        times = r["times"]
        if not times:
            print(f"| {r['backend']} | {r['workload']} | {r['clients']} | 0 | – | – | – | – | – |")
            continue
        print(f"| {r['backend']} | {r['workload']} | {r['clients']} | {len(times)} | "
              f"{latency_columns(times)} | {r['per_second']:,.0f} | {r['deployed_per_second']:,.0f} |")
    print()
    for r in all_rows:
        if r["outcome"]:
            print(f"{r['backend']}, {r['workload']}: {r['outcome']}")
    print()
    for line in report:
        print(line)


if __name__ == "__main__":
    main()
