#!/usr/bin/env python3
"""The web UI at size: the board with 1,000 applications of four environments each
and the audit log with 100,000 entries, on the embedded default (SQLite).

It starts `gantry serve` on a fresh data directory, applies a pipeline
dev -> qa -> staging -> prod without gates and 1,000 applications (record targets),
pushes two small images into each application's repository over the OCI API,
notifies both builds (with a commit), promotes the first into all four environments
and the second into dev and qa (so those cells show what runs and what ran
before), then pushes further tags until the audit log holds 100,000 entries. It
signs in with the admin's token and times, over one keep-alive connection, each page
N times: the board's first page (50 applications, 200 cells), a page deep in the list,
a page filtered by name, an application's page, the audit log's first page, filtered pages and a deep page. Every
answer must be 200; the table gives the client's latency on loopback (an upper bound
of the server's time) and the page's size.

Usage: web.py [--binary PATH] [--apps 1000] [--audit 100000] [--runs 30] [--threads 4]
Without --binary it builds the release binary (honours CARGO_TARGET_DIR).
"""
import hashlib
import json
import re
import statistics
import threading
import time
import urllib.parse

from harness import Client, Server, argument_parser, logger, parse_arguments, percentile, run_in_threads

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
ENVIRONMENTS = ["dev", "qa", "staging", "prod"]

log = logger("web")


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def resources_yaml(apps):
    stages = "".join(f"  - name: {env}\n" for env in ENVIRONMENTS)
    documents = [f"kind: Pipeline\nname: bench\nstages:\n{stages}"]
    targets = "".join(f"  {env}: {{ target: {{ record: {{}} }} }}\n" for env in ENVIRONMENTS)
    for name in apps:
        documents.append(
            f"kind: Application\nname: {name}\ntype: container\nrepository: bench/{name}\n"
            f"pipeline: bench\nenvironments:\n{targets}")
    return "---\n".join(documents)


def manifest(config, layer, n):
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config[0], "size": config[1]},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer[0], "size": layer[1]}],
        "annotations": {"bench.gantry/n": str(n)},
    }, separators=(",", ":")).encode()


def upload(client, repo, data):
    digest = sha256(data)
    client.expect(201, "POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", data,
                  {"Content-Type": "application/octet-stream"})
    return digest, len(data)


def populate(client, app, index):
    """Two images in the application's repository, notified, promoted: the first
    into every environment, the second into dev and qa."""
    repo = f"bench/{app}"
    config = upload(client, repo, b'{"architecture":"amd64","os":"linux"}')
    layer = upload(client, repo, f"layer of {app}".encode())
    digests = []
    for n in (1, 2):
        body = manifest(config, layer, n)
        client.expect(201, "PUT", f"/v2/{repo}/manifests/v{n}", body, {"Content-Type": MANIFEST_TYPE})
        digest = sha256(body)
        digests.append(digest)
        commit = hashlib.sha1(f"{app}-{n}".encode()).hexdigest()
        client.expect(201, "POST", "/api/v1/builds", json.dumps({
            "application": app, "digest": digest, "commit": commit,
            "run_url": f"https://ci.example/runs/{index}-{n}"}),
            {"Content-Type": "application/json"})
    plan = [(digests[0], env) for env in ENVIRONMENTS] + [(digests[1], "dev"), (digests[1], "qa")]
    for digest, env in plan:
        _, data = client.expect(201, "POST", "/api/v1/promotions", json.dumps(
            {"application": app, "environment": env, "digest": digest}),
            {"Content-Type": "application/json"})
        state = json.loads(data)["state"]
        if state != "deployed":
            raise SystemExit(f"{app} into {env}: {state}")
    return repo, digests[0]


def audit_entries(client):
    _, data = client.expect(200, "GET", "/api/v1/audit/verify")
    verdict = json.loads(data)
    if not verdict["intact"]:
        raise SystemExit(f"the chain is broken: {verdict}")
    return verdict["entries"]


def main():
    parser = argument_parser(__doc__)
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--audit", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=4)
    args = parse_arguments(parser, log)
    server = Server("web", args.binary, "sqlite", args.postgres)
    try:
        bearer = f"Bearer {server.token}"
        admin = Client(server.port, bearer)
        apps = [f"app-{i:04d}" for i in range(args.apps)]
        log(f"applying {len(apps)} applications")
        admin.expect(200, "POST", "/api/v1/apply", resources_yaml(apps), {"Content-Type": "application/yaml"})
        log("pushing, notifying and promoting")
        started = time.perf_counter()
        images = {}
        lock = threading.Lock()
        plans = [apps[i::args.threads] for i in range(args.threads)]

        problems = []

        def fill(client, names):
            # A SystemExit raised in a thread would end only the thread: keep it.
            try:
                for name in names:
                    repo, digest = populate(client, name, apps.index(name))
                    with lock:
                        images[name] = (repo, digest)
            except SystemExit as error:
                problems.append(str(error))

        run_in_threads(server.port, bearer, plans, fill)
        if problems or len(images) != len(apps):
            raise SystemExit(f"populating failed: {problems[:3]}")
        log(f"  {time.perf_counter() - started:.0f} s")
        entries = audit_entries(admin)
        log(f"audit log: {entries} entries; tagging until {args.audit}")
        missing = max(0, args.audit - entries)
        names = list(images)

        def tag(client, plan):
            start, count = plan
            try:
                for i in range(start, start + count):
                    repo, digest = images[names[i % len(names)]]
                    _, data = client.expect(200, "GET", f"/v2/{repo}/manifests/{digest}",
                                            headers={"Accept": MANIFEST_TYPE})
                    client.expect(201, "PUT", f"/v2/{repo}/manifests/t{i}", data,
                                  {"Content-Type": MANIFEST_TYPE})
            except SystemExit as error:
                problems.append(str(error))

        share = -(-missing // args.threads)
        tag_plans = [(i * share, min(share, missing - i * share)) for i in range(args.threads)]
        run_in_threads(server.port, bearer, [p for p in tag_plans if p[1] > 0], tag)
        if problems:
            raise SystemExit(f"tagging failed: {problems[:3]}")
        entries = audit_entries(admin)
        log(f"audit log: {entries} entries")

        browser = Client(server.port)
        status, headers, _ = browser.request(
            "POST", "/sign-in", urllib.parse.urlencode({"with": "token", "token": server.token}),
            {"Content-Type": "application/x-www-form-urlencoded"})
        if status != 303:
            raise SystemExit(f"sign-in answered {status}")
        cookie = (headers.get("Set-Cookie") or headers.get("set-cookie")).split(";")[0]
        middle = entries // 2
        some_app = apps[len(apps) // 2]
        pages = [
            ("board, first page (50 applications × 4 environments)", "/"),
            ("board, a page deep in the list", f"/?after={apps[len(apps) * 3 // 4]}"),
            ("board, filtered by name", "/?name=app-09"),
            ("application page", f"/apps/{some_app}"),
            ("audit log, first page (100 entries)", "/audit"),
            ("audit log, by action", "/audit?action=promote"),
            ("audit log, by application", f"/audit?application={some_app}"),
            ("audit log, a page in the middle", f"/audit?before={middle}"),
        ]
        rows = []
        for title, path in pages:
            times, size = [], 0
            for _ in range(args.runs):
                started = time.perf_counter()
                status, _, data = browser.request("GET", path, headers={"Cookie": cookie})
                times.append((time.perf_counter() - started) * 1000)
                if status != 200:
                    raise SystemExit(f"{path}: {status} {data[:300]!r}")
                size = len(data)
            rows.append((title, path, statistics.median(times), percentile(times, 95), size))
        print(f"\n{args.apps} applications × {len(ENVIRONMENTS)} environments, {entries} audit entries, "
              f"SQLite, {args.runs} requests each, one connection\n")
        print("| page | path | median | p95 | size |")
        print("|---|---|---:|---:|---:|")
        for title, path, median, p95, size in rows:
            print(f"| {title} | `{path}` | {median:.1f} ms | {p95:.1f} ms | {size / 1024:.0f} KiB |")
        print(f"\nserver peak RSS {server.rss_mib():.1f} MiB")
    finally:
        errors = server.stop()
        for line in errors[:10]:
            print(f"log: {line.rstrip()[:300]}")


if __name__ == "__main__":
    main()
