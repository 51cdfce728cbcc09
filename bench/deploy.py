#!/usr/bin/env python3
"""Deploy targets: registry copy throughput, the registry-copy target, static sites.

Measures registry copy throughput, the `registry-copy` target through the server, and
static-site syncs to a directory and to S3:

  1. Registry to registry. Two reference registries (Debian `docker-registry`) on
     loopback, a source and a destination. Images written by mkimage.py (random
     gzip layers; by default 4×25 MiB and 5×100 MiB) are pushed into the source with
     skopeo. Each round copies every image with `gantry copy --src-plain-http
     --dest-plain-http` and with `skopeo copy --src-tls-verify=false
     --dest-tls-verify=false`, each into a repository of the destination it has never
     seen (skopeo's blob-info cache, /var/lib/containers/cache/blob-info-cache-v1.boltdb,
     is deleted before every skopeo run so it cannot mount from earlier runs'
     repositories). Then each copies again into the repository it just filled
     (everything there). Wall time and peak RSS come from GNU time; every copy is
     checked (exit 0 and the destination serving the source's manifest digest).
  2. The `registry-copy` target. `gantry serve` (SQLite) with
     [deploy.registry_copy.registries."127.0.0.1:DEST"] plain_http and
     [outbound] allow = ["127.0.0.1"]; one application per run, each with a
     single environment whose target copies to a fresh destination repository. The
     image is pushed into Gantry with skopeo, notified (POST /api/v1/builds) and
     promoted (POST /api/v1/promotions, which waits for the deployment). Timed: the
     promotion request, and the deployment's started_at → finished_at.
  3. Static sites. A generated site (default 5,000 files of a few KB: HTML, CSS, JS,
     fingerprinted assets, images, JSON), pushed with `gantry push site`, deployed to
     a local directory and to SeaweedFS S3 (`weed mini`). Per destination: the first
     deployment, then a build with one file changed, then a rollback to the first
     build (one file back), then a redeploy of the digest already running.
     The log line `synced …: N uploaded, M unchanged, K deleted` gives the counts;
     the destination is checked afterwards (file count and the changed file).

Standard output holds only the tables (Markdown); progress goes to stderr.

Usage: deploy.py [--binary PATH] [--quick] [--runs 5] [--images '4x25M;5x100M']
                 [--target-runs 3] [--target-image 5x100M] [--site-files 5000]
                 [--skip-s3] [--parts copy,target,site] [--scratch DIR]
Without --binary it builds the release binary (honours CARGO_TARGET_DIR).
"""
import argparse
import datetime
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request

from harness import Client, Server, build, free_port, logger

TOOLS = "/work/shared/tools"
SKOPEO_CACHE = "/var/lib/containers/cache/blob-info-cache-v1.boltdb"
WEED = os.environ.get("WEED", "/opt/peer-venv/bin/weed")
MANIFEST_ACCEPT = ", ".join([
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])

log = logger("deploy")


# ---------------------------------------------------------------------------------
# Helpers


def run(args, **kwargs):
    """Runs a command, failing the benchmark with its output when it fails."""
    result = subprocess.run(args, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)}: exit {result.returncode}\n{result.stdout[-2000:]}"
                         f"\n{result.stderr[-2000:]}")
    return result


def timed(args):
    """Runs a command under GNU time: (wall seconds, peak RSS MiB, stdout)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        started = time.perf_counter()
        result = subprocess.run(["/usr/bin/time", "-o", report.name, "-f", "%M"] + args,
                                capture_output=True, text=True)
        wall = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(args)}: exit {result.returncode}\n{result.stderr[-2000:]}")
        rss_kib = int(report.read().strip().splitlines()[-1])
    return wall, rss_kib / 1024, result.stdout


def served_digest(registry, repository, reference):
    """The Docker-Content-Digest a plain-http registry answers for a manifest HEAD."""
    request = urllib.request.Request(f"http://{registry}/v2/{repository}/manifests/{reference}",
                                     method="HEAD", headers={"Accept": MANIFEST_ACCEPT})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.headers["Docker-Content-Digest"]


def ports_free(ports):
    for port in ports:
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def parse_time(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def stats(values):
    """The median, minimum and maximum of a list of numbers."""
    return statistics.median(values), min(values), max(values)


def fmt(values, digits=1, unit=""):
    median, low, high = stats(values)
    return f"{median:.{digits}f}{unit} ({low:.{digits}f}–{high:.{digits}f})"


class Background:
    """A peer started by one of the shared tools' scripts, which print only its PID."""

    def __init__(self, what, args, env=None):
        self.what = what
        result = run(args, env=env)
        self.pid = int(result.stdout.strip().splitlines()[-1])
        log(f"{what}: pid {self.pid}")

    def stop(self):
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        for _ in range(100):
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        os.kill(self.pid, signal.SIGKILL)


def start_registry(work, name):
    port = free_port()
    root = os.path.join(work, name)
    process = Background(f"registry {name} on 127.0.0.1:{port}",
                         [f"{TOOLS}/start-peer-registry.sh", str(port), root])
    return process, f"127.0.0.1:{port}"


def start_seaweed(work):
    s3_port = free_port()
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 45000)
        wanted = list(range(base, base + 7)) + [p + 10000 for p in range(base, base + 7)]
        if s3_port not in wanted and ports_free(wanted):
            break
    else:
        raise SystemExit("found no free port range for SeaweedFS")
    env = dict(os.environ, WEED_PORT_BASE=str(base), S3_BUCKETS="site", WEED=WEED)
    env.pop("AWS_CA_BUNDLE", None)
    process = Background(f"seaweedfs S3 on 127.0.0.1:{s3_port}",
                         [f"{TOOLS}/start-seaweed-s3.sh", str(s3_port), os.path.join(work, "seaweed")], env)
    return process, f"http://127.0.0.1:{s3_port}"


def make_image(work, name, layers):
    """An OCI layout with one image tagged `v1`; returns (layout, manifest digest, bytes)."""
    layout = os.path.join(work, f"layout-{name}")
    result = run(["python3", f"{TOOLS}/mkimage.py", layout, "--layers", layers, "--tag", "v1"])
    image = json.loads(result.stdout.strip().splitlines()[-1])
    return layout, image["manifest"], image["total_bytes"]


def skopeo(*args):
    return run(["skopeo", "--insecure-policy", *args])


def forget_skopeo_cache():
    try:
        os.remove(SKOPEO_CACHE)
    except FileNotFoundError:
        pass


def label(layers):
    """`5x100M` → `5 × 100 MiB`."""
    parts = []
    for item in layers.split(","):
        count, _, size = item.rpartition("x")
        size = size.replace("K", " KiB").replace("M", " MiB").replace("G", " GiB")
        parts.append(f"{count} × {size}" if count else size)
    return " + ".join(parts)


# ---------------------------------------------------------------------------------
# 1. Registry to registry


def bench_copy(args, work, source, destination, rows):
    nonce = f"{os.getpid()}"
    for layers in args.images:
        name = layers.replace(",", "_")
        log(f"copy: writing and pushing a {label(layers)} image")
        layout, digest, total = make_image(work, name, layers)
        repository = f"src/{name.lower()}"
        skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:v1", f"docker://{source}/{repository}:v1")
        shutil.rmtree(layout)
        if served_digest(source, repository, "v1") != digest:
            raise SystemExit(f"the source serves another digest than {digest} for {repository}:v1")
        mb = total / 1e6
        results = {tool: {"fresh": [], "again": [], "rss": [], "rss_again": []} for tool in ("gantry", "skopeo")}
        for round_number in range(args.runs):
            for tool in ("gantry", "skopeo") if round_number % 2 == 0 else ("skopeo", "gantry"):
                target = f"copy-{nonce}/{tool}-{name.lower()}-{round_number}"
                if tool == "gantry":
                    command = [args.binary, "copy", "--src-plain-http", "--dest-plain-http",
                               f"{source}/{repository}:v1", f"{destination}/{target}:v1"]
                else:
                    command = ["skopeo", "--insecure-policy", "copy", "--src-tls-verify=false",
                               "--dest-tls-verify=false", f"docker://{source}/{repository}:v1",
                               f"docker://{destination}/{target}:v1"]
                for phase in ("fresh", "again"):
                    if tool == "skopeo":
                        forget_skopeo_cache()
                    wall, rss, _ = timed(command)
                    served = served_digest(destination, target, "v1")
                    if served != digest:
                        raise SystemExit(f"{tool} copy: the destination serves {served}, not {digest}")
                    results[tool][phase].append(wall)
                    results[tool]["rss" if phase == "fresh" else "rss_again"].append(rss)
                log(f"copy {label(layers)} round {round_number + 1}: {tool} "
                    f"{mb / results[tool]['fresh'][-1]:.0f} MB/s, again {results[tool]['again'][-1]:.2f} s")
        for tool in ("gantry", "skopeo"):
            r = results[tool]
            rows.append(dict(image=f"{label(layers)} ({mb:.0f} MB)", tool=tool, runs=len(r["fresh"]),
                             rate=fmt([mb / s for s in r["fresh"]], 0),
                             seconds=fmt(r["fresh"], 2),
                             rss=fmt(r["rss"], 1),
                             again=fmt([s * 1000 for s in r["again"]], 0),
                             rss_again=fmt(r["rss_again"], 1)))


# ---------------------------------------------------------------------------------
# 2 and 3: through the server


def server_config(work, scratch, destination, s3_endpoint):
    secrets = os.path.join(work, "secrets")
    os.makedirs(secrets, exist_ok=True)
    with open(os.path.join(secrets, "s3-key"), "w") as file:
        file.write("testsecret")
    lines = [
        "[outbound]",
        'allow = ["127.0.0.1"]',
        "",
        "[deploy]",
        f'secrets_dir = "{secrets}"',
        f'work_dir = "{os.path.join(scratch, "deploy-work")}"',
        "wait_seconds = 1800",
        "reconcile_interval_seconds = 0",
        "",
        f'[deploy.registry_copy.registries."{destination}"]',
        "plain_http = true",
    ]
    if s3_endpoint:
        lines += [
            "",
            "[deploy.static_site.s3]",
            f'endpoint = "{s3_endpoint}"',
            'region = "us-east-1"',
            'access_key_id = "testkey"',
            'secret_access_key_ref = "s3-key"',
            "allow_http = true",
        ]
    return "\n".join(lines) + "\n"


def resources_yaml(target_apps, site_apps):
    documents = ["kind: Pipeline\nname: one\nstages:\n  - name: prod\n"]
    for name, to in target_apps:
        documents.append(f"kind: Application\nname: {name}\ntype: container\nrepository: bench/{name}\n"
                         f'pipeline: one\nenvironments:\n  prod: {{ target: {{ registry-copy: {{ to: "{to}" }} }} }}\n')
    for name, destination in site_apps:
        documents.append(f"kind: Application\nname: {name}\ntype: static-site\nrepository: bench/{name}\n"
                         f'pipeline: one\nenvironments:\n  prod: {{ target: {{ static-site: {{ destination: "{destination}" }} }} }}\n')
    return "---\n".join(documents)


class Api:
    def __init__(self, server):
        self.server = server
        self.client = Client(server.port, f"Bearer {server.token}")

    def post(self, path, body, statuses=(200, 201)):
        status, _, data = self.client.request("POST", path, json.dumps(body),
                                              {"Content-Type": "application/json"})
        if status not in statuses:
            raise SystemExit(f"POST {path}: HTTP {status}: {data[:500]!r}")
        return status, json.loads(data) if data else None

    def get(self, path):
        _, data = self.client.expect(200, "GET", path)
        return json.loads(data)

    def notify(self, application, digest, commit):
        self.post("/api/v1/builds", {"application": application, "digest": digest, "commit": commit})

    def deployment(self, deployment_id):
        """Waits until the deployment is no longer deploying; returns it and its log."""
        deadline = time.time() + 1800
        while True:
            deployment = self.get(f"/api/v1/deployments/{deployment_id}")
            if deployment["state"] != "deploying" or time.time() > deadline:
                break
            time.sleep(0.05)
        lines = []
        after = None
        while True:
            page = self.get(f"/api/v1/deployments/{deployment_id}/log" + (f"?after={after}" if after else ""))
            lines += [(parse_time(line["at"]), line["line"]) for line in page["lines"]]
            after = page.get("next")
            if not after:
                break
        if deployment["state"] != "deployed":
            raise SystemExit(f"deployment {deployment_id} ended {deployment['state']}: "
                             f"{deployment.get('message')}\n" + "\n".join(line for _, line in lines[-20:]))
        return deployment, lines

    def promote(self, application, digest, redeploy=False):
        """Promotes into prod and waits for the deployment: (request s, deployment, log).
        With `redeploy`, deploys again a digest the environment already runs (without
        it, Gantry answers with the promotion that put it there and deploys nothing)."""
        started = time.perf_counter()
        _, promotion = self.post("/api/v1/promotions",
                                 {"application": application, "environment": "prod", "digest": digest,
                                  "redeploy": redeploy})
        if promotion["state"] not in ("deployed", "deploying", "approved"):
            raise SystemExit(f"promotion of {digest} into {application}/prod: {promotion}")
        while promotion.get("deployment_id") is None and promotion["state"] in ("approved", "deploying"):
            time.sleep(0.05)
            promotion = self.get(f"/api/v1/promotions/{promotion['id']}")
        if promotion.get("deployment_id") is None:
            raise SystemExit(f"promotion of {digest} into {application}/prod ended without a deployment: {promotion}")
        deployment, lines = self.deployment(promotion["deployment_id"])
        return time.perf_counter() - started, deployment, lines

    def rollback(self, application, digest):
        started = time.perf_counter()
        _, deployment = self.post(f"/api/v1/apps/{application}/environments/prod/rollback", {"to": digest})
        deployment, lines = self.deployment(deployment["id"])
        return time.perf_counter() - started, deployment, lines


def server_seconds(deployment):
    return parse_time(deployment["finished_at"]) - parse_time(deployment["started_at"])


def bench_target(args, work, api, source, destination, rows, notes):
    layers = args.target_image
    log(f"target: writing and pushing a {label(layers)} image to the source registry")
    layout, digest, total = make_image(work, "target", layers)
    skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:v1", f"docker://{source}/src/target:v1")
    shutil.rmtree(layout)
    creds = f"admin:{api.server.token}"
    gantry = f"127.0.0.1:{api.server.port}"
    requests, durations, cpu = [], [], []
    for n in range(args.target_runs):
        application = f"rc-{n}"
        skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--dest-creds", creds,
               f"docker://{source}/src/target:v1", f"docker://{gantry}/bench/{application}:v1")
        api.notify(application, digest, f"c0ffee{n:02d}")
        cpu_before = api.server.cpu_seconds()
        request_s, deployment, lines = api.promote(application, digest)
        cpu.append(api.server.cpu_seconds() - cpu_before)
        to = deployment_destination(n)
        served = served_digest(destination, to, "prod")
        if served != digest:
            raise SystemExit(f"registry-copy: {destination}/{to}:prod serves {served}, not {digest}")
        requests.append(request_s)
        durations.append(server_seconds(deployment))
        summary = [line for _, line in lines if line.startswith("copied ")] or [lines[-1][1]]
        log(f"target run {n + 1}: request {request_s:.2f} s, deployment {durations[-1]:.2f} s; {summary[-1]}")
        if n == 0:
            notes.append(f"registry-copy log, first run: {summary[-1]}")
    mb = total / 1e6
    rows.append(dict(what=f"registry-copy, {label(layers)} ({mb:.0f} MB), fresh repository each run",
                     runs=len(requests), request=fmt(requests, 2, " s"), deployment=fmt(durations, 2, " s"),
                     rate=fmt([mb / s for s in durations], 0, " MB/s"), cpu=fmt(cpu, 2, " s")))


def deployment_destination(n):
    """The destination repository of the n-th registry-copy application."""
    return f"deployed-{os.getpid()}/rc-{n}"


# Static sites


WORDS = ("gantry promote build deploy release artifact digest registry pipeline stage "
         "environment approval rollback static site bucket object cache header").split()


def write_site(root, files, seed):
    """Writes a site of `files` files of a few KB: nested HTML pages, CSS, JS, fingerprinted
    assets, images and JSON. Returns the relative path of one HTML page to change later."""
    rng = random.Random(seed)
    kinds = ([("html", 0.40), ("css", 0.08), ("js", 0.10), ("asset-js", 0.08), ("asset-css", 0.04),
              ("png", 0.12), ("jpg", 0.08), ("svg", 0.05), ("json", 0.05)])
    names = [k for k, _ in kinds]
    weights = [w for _, w in kinds]
    written = []
    for i in range(files):
        kind = rng.choices(names, weights)[0]
        section = f"s{i % 50:02d}"
        if kind == "html":
            path = f"docs/{section}/page-{i}.html" if i else "index.html"
            text = "".join(rng.choice(WORDS) + (" " if rng.random() < 0.9 else "\n")
                           for _ in range(rng.randrange(300, 2500)))
            data = f"<!doctype html><html><head><title>{i}</title></head><body><p>{text}</p></body></html>\n".encode()
        elif kind in ("css", "asset-css"):
            rules = "".join(f".c{i}-{j} {{ margin: {j}px; color: #{rng.randrange(0xffffff):06x}; }}\n"
                            for j in range(rng.randrange(20, 200)))
            data = rules.encode()
            path = (f"assets/{section}/style-{i}.{rng.getrandbits(32):08x}.css" if kind == "asset-css"
                    else f"css/{section}/style-{i}.css")
        elif kind in ("js", "asset-js"):
            body = "".join(f"function f{i}_{j}(x) {{ return x * {j} + {rng.randrange(1000)}; }}\n"
                           for j in range(rng.randrange(20, 200)))
            data = body.encode()
            path = (f"assets/{section}/app-{i}.{rng.getrandbits(32):08x}.js" if kind == "asset-js"
                    else f"js/{section}/script-{i}.js")
        elif kind in ("png", "jpg"):
            data = rng.randbytes(rng.randrange(1024, 12 * 1024))
            path = f"img/{section}/image-{i}.{kind}"
        elif kind == "svg":
            data = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{i % 97}" height="10">'
                    + "".join(f'<rect x="{j}" y="0" width="1" height="{j % 10}"/>' for j in range(rng.randrange(10, 100)))
                    + "</svg>\n").encode()
            path = f"img/{section}/icon-{i}.svg"
        else:
            data = json.dumps({"id": i, "words": [rng.choice(WORDS) for _ in range(rng.randrange(50, 500))]}).encode()
            path = f"data/{section}/item-{i}.json"
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as file:
            file.write(data)
        written.append((path, len(data)))
    return written


def push_site(args, api, directory, application, commit):
    started = time.perf_counter()
    result = run([args.binary, "push", "site", directory, "--app", application, "--commit", commit,
                  "--url", f"http://127.0.0.1:{api.server.port}", "--token", api.server.token, "-o", "json"],
                 env={k: v for k, v in os.environ.items() if not k.startswith("GANTRY_")})
    pushed = json.loads(result.stdout)
    return pushed, time.perf_counter() - started


def sync_counts(lines):
    synced = [line for _, line in lines if line.startswith("synced ") and "uploaded" in line]
    return synced[-1].split(": ", 1)[1] if synced else "(no sync line in the log)"


def phases(deployment, lines):
    """Seconds from the deployment's start to `syncing to …` (fetch, verify, unpack),
    from there to `synced …` (compare and upload), and from there to the end
    (deployed.json, the job's bookkeeping), by the log's timestamps."""
    start, end = parse_time(deployment["started_at"]), parse_time(deployment["finished_at"])
    syncing = next((at for at, line in lines if line.startswith("syncing to ")), None)
    synced = next((at for at, line in lines if line.startswith("synced ") and "uploaded" in line), None)
    if syncing is None or synced is None:
        return "–", "–", "–"
    return f"{syncing - start:.2f}", f"{synced - syncing:.2f}", f"{end - synced:.2f}"


def bench_site(args, work, api, site_dir, changed, files, sites, rows, notes):
    for application, destination, check in sites:
        log(f"site {application}: pushing the first build")
        first, first_push = push_site(args, api, site_dir, application, "c1")
        api.notify(application, first["digest"], "c1")
        steps = []
        request_s, deployment, lines = api.promote(application, first["digest"])
        steps.append(("first deployment", request_s, deployment, lines, api.server.rss_mib()))
        check(files, None)

        # One file changed: a new build.
        with open(os.path.join(site_dir, changed), "ab") as file:
            file.write(f"<!-- changed for {application} -->\n".encode())
        second, second_push = push_site(args, api, site_dir, application, "c2")
        api.notify(application, second["digest"], "c2")
        request_s, deployment, lines = api.promote(application, second["digest"])
        steps.append(("one file changed (new build)", request_s, deployment, lines, api.server.rss_mib()))
        check(files, (changed, f"<!-- changed for {application} -->"))

        request_s, deployment, lines = api.rollback(application, first["digest"])
        steps.append(("rollback to the first build", request_s, deployment, lines, api.server.rss_mib()))
        check(files, (changed, None))

        # The digest already running, deployed again on purpose (`redeploy`).
        request_s, deployment, lines = api.promote(application, first["digest"], redeploy=True)
        steps.append(("same digest promoted again", request_s, deployment, lines, api.server.rss_mib()))
        check(files, (changed, None))

        # Leave the directory as the first build for the next destination.
        with open(os.path.join(site_dir, changed), "rb") as file:
            content = file.read()
        with open(os.path.join(site_dir, changed), "wb") as file:
            file.write(content.replace(f"<!-- changed for {application} -->\n".encode(), b""))

        notes.append(f"{application}: push of the first build ({first['files']} files, "
                     f"{first['archive_bytes'] / 1e6:.1f} MB zipped) {first_push:.2f} s; "
                     f"of the second {second_push:.2f} s")
        for step, request_s, deployment, lines, peak in steps:
            log(f"site {application}: {step}: request {request_s:.2f} s, deployment "
                f"{server_seconds(deployment):.2f} s; {sync_counts(lines)}")
            rows.append(dict(destination=application_label(application), step=step,
                             request=f"{request_s:.2f}", deployment=f"{server_seconds(deployment):.2f}",
                             phases=phases(deployment, lines), counts=sync_counts(lines), peak=f"{peak:.0f}"))


def application_label(application):
    return {"site-dir": "local directory", "site-s3": "SeaweedFS S3"}[application]


def directory_check(root):
    def check(files, changed):
        # Every file of the site, and Gantry's records under .gantry/.
        count = sum(len(names) for top, _, names in os.walk(root)
                    if os.path.relpath(top, root).split(os.sep)[0] != ".gantry")
        if count != len(files) or not os.path.exists(os.path.join(root, ".gantry", "deployed.json")):
            raise SystemExit(f"{root} holds {count} site files (not {len(files)}) or no .gantry/deployed.json")
        if changed:
            path, marker = changed
            with open(os.path.join(root, path)) as file:
                text = file.read()
            if marker and marker not in text:
                raise SystemExit(f"{root}/{path}: the change is missing")
            if marker is None and "<!-- changed" in text:
                raise SystemExit(f"{root}/{path}: the change is still there after the rollback")
    return check


def s3_check(endpoint, bucket, prefix):
    import boto3
    from botocore.config import Config
    os.environ.pop("AWS_CA_BUNDLE", None)
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testkey",
                      aws_secret_access_key="testsecret",
                      config=Config(s3={"addressing_style": "path"}))

    def check(files, changed):
        keys = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
            keys += [item["Key"] for item in page.get("Contents", [])]
        site_keys = [key for key in keys if not key.startswith(f"{prefix}/.gantry/")]
        if len(site_keys) != len(files) or f"{prefix}/.gantry/deployed.json" not in keys:
            raise SystemExit(f"s3://{bucket}/{prefix} holds {len(site_keys)} site objects (not {len(files)}) "
                             "or no .gantry/deployed.json")
        if changed:
            path, marker = changed
            body = s3.get_object(Bucket=bucket, Key=f"{prefix}/{path}")["Body"].read().decode()
            if marker and marker not in body:
                raise SystemExit(f"s3://{bucket}/{prefix}/{path}: the change is missing")
            if marker is None and "<!-- changed" in body:
                raise SystemExit(f"s3://{bucket}/{prefix}/{path}: the change is still there after the rollback")
    return check


# ---------------------------------------------------------------------------------
# The report


def machine():
    cpus = os.cpu_count()
    with open("/proc/meminfo") as meminfo:
        mem_kib = int(meminfo.readline().split()[1])
    model = ""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{cpus} cores ({model}), {mem_kib / 1024 / 1024:.0f} GiB"


def versions(binary):
    out = []
    for prefix, args in (("", [binary, "--version"]), ("", ["skopeo", "--version"]),
                         ("", ["docker-registry", "--version"]), ("seaweedfs ", [WEED, "version"])):
        try:
            first = subprocess.run(args, capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
            out.append(prefix + first)
        except (OSError, IndexError, subprocess.TimeoutExpired):
            pass
    return "; ".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", help="a built gantry binary (default: build the release one)")
    parser.add_argument("--quick", action="store_true",
                        help="scaled down: 3 rounds, one 4x25M image, 2 target runs of 4x25M, 1,000 files")
    parser.add_argument("--runs", type=int, default=5, help="copy rounds per image and tool")
    parser.add_argument("--images", default="4x25M;5x100M",
                        help="images for the copy rounds, mkimage.py --layers values separated by ;")
    parser.add_argument("--target-runs", type=int, default=3, help="registry-copy deployments")
    parser.add_argument("--target-image", default="5x100M", help="the registry-copy deployments' image")
    parser.add_argument("--site-files", type=int, default=5000, help="files in the generated site")
    parser.add_argument("--skip-s3", action="store_true", help="no SeaweedFS S3 destination")
    parser.add_argument("--parts", default="copy,target,site", help="which parts to run")
    parser.add_argument("--scratch", default=None,
                        help="directory for the server's deploy work dir and the local-directory destination "
                             "(default: the benchmark's temporary directory; e.g. /dev/shm for tmpfs)")
    args = parser.parse_args()
    args.binary = args.binary or build(log)
    if args.quick:
        args.runs, args.images, args.target_runs = 3, "4x25M", 2
        args.target_image, args.site_files = "4x25M", 1000
    args.images = [i for i in args.images.split(";") if i]
    parts = set(args.parts.split(","))
    if not shutil.which("skopeo") or not os.access("/usr/bin/time", os.X_OK):
        raise SystemExit("needs skopeo and GNU time (/usr/bin/time): apt-get install skopeo time")

    work = tempfile.mkdtemp(prefix="gantry-bench-deploy.")
    peers, server, cleanup = [], None, []
    copy_rows, target_rows, site_rows, notes = [], [], [], []
    load_before = os.getloadavg()
    started = time.time()
    try:
        source_process, source = start_registry(work, "source")
        peers.append(source_process)
        destination_process, destination = start_registry(work, "destination")
        peers.append(destination_process)
        if "copy" in parts:
            bench_copy(args, work, source, destination, copy_rows)

        if parts & {"target", "site"}:
            s3_endpoint = None
            if "site" in parts and not args.skip_s3:
                seaweed, s3_endpoint = start_seaweed(work)
                peers.append(seaweed)
            scratch = tempfile.mkdtemp(prefix="gantry-bench-deploy.", dir=args.scratch) if args.scratch else work
            if scratch != work:
                cleanup.append(scratch)
            site_out = os.path.join(scratch, "site-out")
            target_apps = [(f"rc-{n}", f"{destination}/{deployment_destination(n)}")
                           for n in range(args.target_runs)]
            site_apps = [("site-dir", site_out)] + ([("site-s3", "s3://site/www")] if s3_endpoint else [])
            server = Server("deploy", args.binary, "sqlite", None,
                            server_config(work, scratch, destination, s3_endpoint))
            api = Api(server)
            api.client.expect(200, "POST", "/api/v1/apply", resources_yaml(target_apps, site_apps),
                              {"Content-Type": "application/yaml"})
            if "target" in parts:
                bench_target(args, work, api, source, destination, target_rows, notes)
            if "site" in parts:
                site_dir = os.path.join(work, "site")
                log(f"site: writing {args.site_files} files")
                files = write_site(site_dir, args.site_files, seed=7)
                changed = next(path for path, _ in files if path.endswith(".html") and path != "index.html")
                size = sum(n for _, n in files)
                notes.append(f"site: {len(files)} files, {size / 1e6:.1f} MB, "
                             f"{sum(1 for p, _ in files if p.endswith('.html'))} HTML; changed file {changed}")
                sites = [("site-dir", site_out, directory_check(site_out))]
                if s3_endpoint:
                    sites.append(("site-s3", "s3://site/www", s3_check(s3_endpoint, "site", "www")))
                bench_site(args, work, api, site_dir, changed, files, sites, site_rows, notes)
            notes.append(f"gantry serve peak RSS {server.rss_mib():.1f} MiB")
    finally:
        errors = server.stop() if server else []
        for peer in reversed(peers):
            peer.stop()
        for directory in [work] + cleanup:
            shutil.rmtree(directory, ignore_errors=True)
    load_after = os.getloadavg()

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    scratch_fs = subprocess.run(["df", "--output=fstype", args.scratch or tempfile.gettempdir()],
                                capture_output=True, text=True).stdout.split()[-1]
    print(f"Machine: {machine()}; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after; "
          f"commit {commit} (binary {args.binary}); {versions(args.binary)}; deploy work dir and local "
          f"destination on {scratch_fs}; total {time.time() - started:.0f} s.")
    print()
    if copy_rows:
        print("| image | tool | runs | MB/s, median (range) | s | peak RSS MiB | re-copy, all there, ms | "
              "peak RSS MiB, re-copy |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for r in copy_rows:
            print(f"| {r['image']} | {r['tool']} | {r['runs']} | {r['rate']} | {r['seconds']} | {r['rss']} | "
                  f"{r['again']} | {r['rss_again']} |")
        print()
    if target_rows:
        print("| deployment | runs | promote request | deployment (server) | throughput | gantry CPU |")
        print("|---|---:|---:|---:|---:|---:|")
        for r in target_rows:
            print(f"| {r['what']} | {r['runs']} | {r['request']} | {r['deployment']} | {r['rate']} | {r['cpu']} |")
        print()
    if site_rows:
        print("| destination | step | request s | deployment s (server) | fetch + unpack s | sync s | "
              "record + finish s | sync | server peak RSS MiB so far |")
        print("|---|---|---:|---:|---:|---:|---:|---|---:|")
        for r in site_rows:
            fetch, sync, finish = r["phases"]
            print(f"| {r['destination']} | {r['step']} | {r['request']} | {r['deployment']} | {fetch} | {sync} | "
                  f"{finish} | {r['counts']} | {r['peak']} |")
        print()
    for note in notes:
        print(note)
    print(f"{len(errors)} ERROR/WARN log lines from gantry serve")
    for line in errors[:10]:
        print(f"  log: {line.rstrip()[:300]}")


if __name__ == "__main__":
    main()
