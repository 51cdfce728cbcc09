#!/usr/bin/env python3
"""Garbage collection: pushes at full speed with and without passes running, and what
one pass costs over 100,000 blobs.

For each backend (`--backends`, default sqlite,postgres) it starts `gantry serve` and:

  1. Soak. C client threads (default 8) push images for S seconds each phase (the phase
     with passes off for --baseline-seconds when given), every
     image a config, a 64 KiB layer of its own and a 64 KiB layer shared by all, plus
     one 64 KiB blob the client uploads and never references (an abandoned build). The
     first phase runs with scheduled passes off, the second with a pass every second
     and a 5 s grace window, so passes delete the abandoned blobs while pushes go on.
     Every image pushed is then pulled and its bytes checked; every abandoned blob
     older than the window must be gone. Reported: images pushed per second and MB/s
     pushed in each phase, passes run, blobs deleted and bytes reclaimed, pass times.
  2. Scale. N blobs (default 100,000) uploaded and referenced by N/100 manifests of 100
     layers; then one pass (nothing to delete: the steady state), the manifests
     deleted, one pass that marks the N blobs, and after the window one that deletes
     them. Each pass is timed by the server (`POST /api/v1/gc`).

Usage: gc.py [--binary target/release/gantry] [--backends sqlite,postgres]
             [--threads 8] [--soak-seconds 600] [--baseline-seconds S] [--blobs 100000]
Without --binary it builds the release binary (honours CARGO_TARGET_DIR).
"""
import base64
import hashlib
import json
import os
import statistics
import threading
import time

from harness import (Client, Failures, Server, argument_parser, backend_report, logger,
                     parse_arguments, run_in_threads)

# Every image pushed is kept (its manifest and digests, not its layers) for the check
# that follows the soak; a pulled blob is checked against its digest.

log = logger("gc")

SOAK_CONFIG = "[gc]\ninterval_seconds = 1\ngrace_seconds = 5\n"
QUIET_CONFIG = "[gc]\ninterval_seconds = 0\ngrace_seconds = 5\n"
LAYER = 64 << 10


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def upload(client, failures, repository, data):
    status, _, body = client.request(
        "POST", f"/v2/{repository}/blobs/uploads/?digest={digest(data)}", data,
        {"Content-Type": "application/octet-stream"})
    if status != 201:
        failures.add(f"upload to {repository}", status, body)
    return digest(data)


def manifest_bytes(config, layers):
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest(layer), "size": len(layer)} for layer in layers],
    }, separators=(",", ":")).encode()


def put_manifest(client, failures, repository, reference, body):
    status, _, answer = client.request(
        "PUT", f"/v2/{repository}/manifests/{reference}", body,
        {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    if status != 201:
        failures.add(f"manifest {repository}:{reference}", status, answer)


def soak_phase(server, authorization, threads, seconds, phase, failures):
    """Pushes for `seconds` from every thread; returns (images, bytes, seconds, pushed,
    abandoned): pushed lists (repository, tag, manifest, blob digests), abandoned the
    blobs never referenced with the time they were uploaded."""
    shared = os.urandom(LAYER)
    pushed, abandoned = [], []
    lock = threading.Lock()

    def work(client, n):
        repository = f"soak/{phase}-{n}"
        i = 0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            config = json.dumps({"phase": phase, "client": n, "image": i}).encode()
            own = os.urandom(LAYER)
            lost = os.urandom(LAYER)
            for blob in (config, own, shared, lost):
                upload(client, failures, repository, blob)
            now = time.time()
            body = manifest_bytes(config, [own, shared])
            put_manifest(client, failures, repository, f"i{i}", body)
            with lock:
                pushed.append((repository, f"i{i}", body, [digest(b) for b in (config, own, shared)]))
                abandoned.append((repository, digest(lost), now))
            i += 1

    (elapsed,) = run_in_threads(server.port, authorization, list(range(threads)), work)
    images = len(pushed)
    sent = images * (3 * LAYER + 100)
    return images, sent, elapsed, pushed, abandoned


def verify(server, authorization, pushed, abandoned, grace, failures, threads):
    """Pulls every image pushed (manifest and blobs, each checked against its digest)
    from `threads` clients, and counts the abandoned blobs older than the window that
    are gone."""
    checked = [0] * threads
    gone = [0] * threads
    old = [a for a in abandoned if a[2] < time.time() - grace - 2]

    def work(client, n):
        for repository, tag, body, blobs in pushed[n::threads]:
            status, _, answer = client.request(
                "GET", f"/v2/{repository}/manifests/{tag}", None,
                {"Accept": "application/vnd.oci.image.manifest.v1+json"})
            if status != 200 or answer != body:
                failures.add(f"pull {repository}:{tag}", status, answer)
                continue
            for d in blobs:
                status, _, answer = client.request("GET", f"/v2/{repository}/blobs/{d}")
                if status != 200 or digest(answer) != d:
                    failures.add(f"pull {repository}@{d}", status, answer[:100])
            checked[n] += 1
        for repository, d, _ in old[n::threads]:
            status, _, _ = client.request("HEAD", f"/v2/{repository}/blobs/{d}")
            gone[n] += status == 404

    run_in_threads(server.port, authorization, list(range(threads)), work)
    return sum(checked), sum(gone), len(old)


def gc_status(client):
    _, data = client.expect(200, "GET", "/api/v1/gc")
    return json.loads(data)


def gc_pass(client):
    _, data = client.expect(200, "POST", "/api/v1/gc", b"{}", {"Content-Type": "application/json"})
    report = json.loads(data)
    if report["errors"]:
        raise SystemExit(f"the pass failed: {report['errors']}")
    return report


def soak(args, backend):
    results = {}
    for phase, config in (("off", QUIET_CONFIG), ("on", SOAK_CONFIG)):
        server = Server("gc", args.binary, backend, args.postgres, config)
        authorization = "Basic " + base64.b64encode(f"admin:{server.token}".encode()).decode()
        failures = Failures()
        load_before = os.getloadavg()[0]
        seconds = args.soak_seconds if phase == "on" else (args.baseline_seconds or args.soak_seconds)
        log(f"{backend}: soak with passes {phase}, {args.threads} clients, {seconds} s")
        images, sent, elapsed, pushed, abandoned = soak_phase(
            server, authorization, args.threads, seconds, phase, failures)
        # Passes keep running while the window of the last abandoned blobs passes.
        if phase == "on":
            time.sleep(8)
        checked, gone, old = verify(server, authorization, pushed, abandoned, 5, failures, args.threads)
        status = gc_status(Client(server.port, authorization))
        durations = [p["duration_ms"] for p in status["passes"]]
        results[phase] = dict(
            images=images, rate=images / elapsed, mbps=sent / elapsed / 1e6, checked=checked,
            gone=gone, old=old, deleted=status["blobs_deleted"], reclaimed=status["bytes_reclaimed"],
            durations=durations, failures=failures.items,
            load=(load_before, os.getloadavg()[0]), peak=server.rss_mib(),
            errors=server.stop())
    return results


def scale(args, backend):
    server = Server("gcscale", args.binary, backend, args.postgres, QUIET_CONFIG)
    authorization = "Basic " + base64.b64encode(f"admin:{server.token}".encode()).decode()
    failures = Failures()
    n = args.blobs
    per_manifest = 100
    log(f"{backend}: uploading {n} blobs")
    groups = list(range(n // per_manifest))
    threads = 8
    plans = [groups[i::threads] for i in range(threads)]
    manifests = []
    lock = threading.Lock()

    def work(client, plan):
        for g in plan:
            layers = [f"blob {g}-{j}".encode() for j in range(per_manifest)]
            for layer in layers:
                upload(client, failures, f"scale/r{g % 10}", layer)
            config = json.dumps({"group": g}).encode()
            upload(client, failures, f"scale/r{g % 10}", config)
            body = manifest_bytes(config, layers)
            # By digest, untagged: deleting them later needs no mutable tags.
            put_manifest(client, failures, f"scale/r{g % 10}", digest(body), body)
            with lock:
                manifests.append((f"scale/r{g % 10}", digest(body)))

    (upload_seconds,) = run_in_threads(server.port, authorization, plans, work)
    client = Client(server.port, authorization)
    steady = gc_pass(client)
    log(f"{backend}: deleting {len(groups)} manifests")
    for repository, d in manifests:
        client.expect(202, "DELETE", f"/v2/{repository}/manifests/{d}")
    marking = gc_pass(client)
    time.sleep(6)
    deleting = gc_pass(client)
    result = dict(n=n + len(groups), upload_seconds=upload_seconds, steady=steady["duration_ms"],
                  marking=(marking["duration_ms"], marking["blobs_marked"]),
                  deleting=(deleting["duration_ms"], deleting["blobs_deleted"], deleting["bytes_reclaimed"]),
                  failures=failures.items, peak=server.rss_mib(), errors=server.stop())
    return result


def main():
    parser = argument_parser(__doc__)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--soak-seconds", type=int, default=600)
    # The phase with passes off is the baseline of throughput; it need not last as long.
    parser.add_argument("--baseline-seconds", type=int, default=0)
    parser.add_argument("--blobs", type=int, default=100_000)
    parser.add_argument("--skip-soak", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    args = parse_arguments(parser, log)
    backends = args.backends.split(",")
    print("| backend | passes | images pushed | images/s | MB/s pushed | blobs deleted | reclaimed | last 20 passes: median / max | images checked | abandoned gone |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    reports = []
    scales = {}
    for backend in backends:
        if not args.skip_soak:
            results = soak(args, backend)
            for phase in ("off", "on"):
                r = results[phase]
                times = (f"{statistics.median(r['durations'])} / {max(r['durations'])} ms"
                         if r["durations"] and phase == "on" else "-")
                print(f"| {backend} | {phase} | {r['images']} | {r['rate']:.1f} | {r['mbps']:.1f} | "
                      f"{r['deleted']} | {r['reclaimed'] / 2**20:.1f} MiB | "
                      f"{times} | {r['checked']} of {r['images']} | "
                      f"{str(r['gone']) + ' of ' + str(r['old']) if phase == 'on' else '-'} |")
                reports += backend_report(f"{backend} passes {phase}", r["load"], "soak",
                                          r["peak"], r["failures"], r["errors"])
        if not args.skip_scale:
            scales[backend] = scale(args, backend)
    if scales:
        print()
        print("| backend | blobs | upload (s) | pass, all referenced | pass marking all | pass deleting all | reclaimed |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for backend, r in scales.items():
            print(f"| {backend} | {r['n']} | {r['upload_seconds']:.0f} | {r['steady']} ms | "
                  f"{r['marking'][0]} ms ({r['marking'][1]} marked) | {r['deleting'][0]} ms ({r['deleting'][1]} deleted) | "
                  f"{r['deleting'][2] / 2**20:.1f} MiB |")
            reports += backend_report(f"{backend} scale", (0.0, os.getloadavg()[0]), "scale",
                                      r["peak"], r["failures"], r["errors"])
    print()
    for line in reports:
        print(line)


if __name__ == "__main__":
    main()
