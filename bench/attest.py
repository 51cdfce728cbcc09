#!/usr/bin/env python3
"""Attestations: what signing every deployment costs, and how long `gantry verify` takes.

For each backend it starts two servers on fresh data: one with `[signing]
attest_deployments = true` (the default) and one with it off. On each it applies a
pipeline `dev` with one container application on the `record` target, pushes N 1 KiB
images, warms up, then times N sequential `POST /api/v1/promotions` into dev,
alternating between the two servers promotion by promotion so both see the same
moments of the machine. With attestations on, the request waits for the deployment's
follow-up too: two in-toto statements signed (ECDSA P-256), recorded, and stored as two
OCI referrers (two blobs and a manifest each) in the application's repository. The
difference of the means is the cost of attesting one deployment.

Then `gantry verify HOST/REPO@DIGEST --env dev --key FILE` runs M times against the
attesting server's registry (process start, key file, referrers listing, two manifests
and two bundles fetched, layer digests and signatures checked, the verdict printed),
each run's wall time measured; every run must exit 0. Each deployment's referrers and
`attest` audit entries are counted at the end.

Usage: attest.py [--binary PATH] [--backends sqlite,postgres] [--promotions 200]
                 [--verifies 50] [--postgres postgres://postgres@127.0.0.1:5432]
Without --binary it builds the release binary (honours CARGO_TARGET_DIR).
"""
import json
import os
import statistics
import subprocess
import tempfile
import time

from harness import (Client, Failures, Server, argument_parser, backend_report, logger, parse_arguments,
                     percentile)
from promotion import Images, sequential, upload_small_blob

log = logger("attest")

RESOURCES = ("kind: Pipeline\nname: bench\nstages:\n  - name: dev\n---\n"
             "kind: Application\nname: web\ntype: container\nrepository: bench/web\npipeline: bench\n"
             "environments:\n  dev: { target: { record: {} } }\n")


def prepare(server, count):
    client = Client(server.port, f"Bearer {server.token}")
    client.expect(200, "POST", "/api/v1/apply", RESOURCES, {"Content-Type": "application/yaml"})
    images = Images(client, "bench/web", upload_small_blob(client, "bench/web", os.urandom(1024)))
    return client, images.push(count + 10)


def stats(times):
    return dict(median=statistics.median(times), p99=percentile(times, 99), mean=statistics.mean(times),
                n=len(times))


def bench_backend(args, backend):
    load_before = os.getloadavg()[0]
    failures = Failures()
    on = Server("attest_on", args.binary, backend, args.postgres)
    off = Server("attest_off", args.binary, backend, args.postgres,
                 config_toml="[signing]\nattest_deployments = false\n")
    result = {}
    try:
        on_client, on_digests = prepare(on, args.promotions)
        off_client, off_digests = prepare(off, args.promotions)
        # Warm-up, not counted.
        sequential(on_client, failures, "web", "dev", on_digests[:10])
        sequential(off_client, failures, "web", "dev", off_digests[:10])
        log(f"{backend}: {args.promotions} promotions into dev on each server, alternating")
        on_times, off_times = [], []
        for on_digest, off_digest in zip(on_digests[10:], off_digests[10:]):
            on_times += sequential(on_client, failures, "web", "dev", [on_digest])
            off_times += sequential(off_client, failures, "web", "dev", [off_digest])
        result["on"], result["off"] = stats(on_times), stats(off_times)

        # What each attested deployment left: two referrers, two `attest` entries.
        last = on_digests[-1]
        _, body = on_client.expect(200, "GET", f"/v2/bench/web/referrers/{last}")
        result["referrers"] = len(json.loads(body)["manifests"])
        _, export = on_client.expect(200, "GET", "/api/v1/audit/export")
        result["attest_entries"] = sum(1 for line in export.decode().splitlines() if '"action":"attest"' in line)
        result["deployments"] = args.promotions + 10

        # gantry verify against the attesting server's registry.
        _, keys = on_client.expect(200, "GET", "/api/v1/keys")
        work = tempfile.mkdtemp(prefix="gantry-attest-verify.")
        key_file = os.path.join(work, "gantry.pub")
        with open(key_file, "w") as file:
            file.write(json.loads(keys)["keys"][0]["public_key"])
        env = {k: v for k, v in os.environ.items() if not k.startswith("GANTRY_")}
        command = [args.binary, "verify", f"127.0.0.1:{on.port}/bench/web@{last}", "--env", "dev",
                   "--key", key_file, "--plain-http", "--creds", f"admin:{on.token}"]
        log(f"{backend}: {args.verifies} runs of gantry verify")
        verify_times = []
        for _ in range(args.verifies):
            started = time.perf_counter()
            done = subprocess.run(command, cwd=work, env=env, capture_output=True)
            verify_times.append((time.perf_counter() - started) * 1000)
            if done.returncode != 0:
                failures.add("gantry verify", done.returncode, done.stdout + done.stderr)
        result["verify"] = stats(verify_times)
    finally:
        errors = on.stop() + off.stop()
    load = (load_before, os.getloadavg()[0])
    return result, failures.items, errors, load


def main():
    parser = argument_parser(__doc__)
    parser.add_argument("--promotions", type=int, default=200, help="sequential promotions per server")
    parser.add_argument("--verifies", type=int, default=50, help="runs of gantry verify")
    args = parse_arguments(parser, log)
    report = []
    lines = ["| backend | attestations | median | p99 | mean | per second |", "|---|---|---:|---:|---:|---:|"]
    verify_lines = ["| backend | runs | median | p99 | mean |", "|---|---:|---:|---:|---:|"]
    notes = []
    for backend in args.backends.split(","):
        result, failures, errors, load = bench_backend(args, backend)
        for mode in ("on", "off"):
            s = result[mode]
            lines.append(f"| {backend} | {mode} | {s['median']:.1f} ms | {s['p99']:.1f} ms | {s['mean']:.1f} ms "
                         f"| {1000 / s['mean']:.0f} |")
        v = result["verify"]
        verify_lines.append(f"| {backend} | {v['n']} | {v['median']:.1f} ms | {v['p99']:.1f} ms | {v['mean']:.1f} ms |")
        notes.append(f"{backend}: attesting one deployment costs {result['on']['mean'] - result['off']['mean']:.1f} ms "
                     f"(mean on − mean off; medians {result['on']['median']:.1f} vs {result['off']['median']:.1f} ms); "
                     f"{result['referrers']} referrers on the last digest; {result['attest_entries']} `attest` entries "
                     f"for {result['deployments']} deployments")
        report += backend_report(backend, load, "", float("nan"), failures, errors)
    print()
    print("\n".join(lines))
    print()
    print("\n".join(verify_lines))
    print()
    for note in notes:
        print(note)
    for line in report:
        print(line)


if __name__ == "__main__":
    main()
