#!/usr/bin/env python3
"""One replica against three behind a load balancer, on PostgreSQL + S3 (SeaweedFS).

For each replica count (default 1 and 3) it creates a fresh PostgreSQL database and a
fresh prefix in one SeaweedFS bucket, starts that many `gantry serve` replicas on
them (`[deploy] replica = "rN"`, `--external-url` the balancer) and HAProxy in front,
balancing every request round robin (`option http-server-close`, as the README's
sample does), then measures through the balancer:

  1. manifest GET requests/s: `wrk` (C connections, D seconds) on one tag, with the
     admin's Basic credentials, as `docker pull` asks;
  2. small-image pushes/s: T client threads, each pushing N images into its own
     repository (a unique 1 KiB layer uploaded monolithically, then the manifest;
     the config blob is uploaded once per repository beforehand);
  3. promotions/s: T threads, each promoting N digests into its own application's
     `dev` (the `record` target: the deployment runs inside the request).

Every answer is checked. For each workload it reads the CPU time that the replicas,
PostgreSQL (all its processes), SeaweedFS, HAProxy and the clients (this script and
wrk) used, to say where the time went; the machine's cores bound the sum.

Usage: replicas.py [--binary PATH] [--replicas 1,3] [--threads 32] [--pushes 20]
                   [--promotions 10] [--wrk-seconds 10] [--wrk-connections 32]
                   [--postgres postgres://postgres@127.0.0.1:5432]
Needs haproxy, wrk, psql, and SeaweedFS (GANTRY_SHARED_TOOLS/start-seaweed-s3.sh).
Without --binary it builds the release binary (honours CARGO_TARGET_DIR).
"""
import argparse
import base64
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.parse

from harness import (ROOT, Client, Failures, answers_ready, build, cpu_seconds, free_port, logger,
                     percentile, problem_lines, run_in_threads)
from promotion import promote, resources_yaml, sha256, upload_small_blob

log = logger("replicas")
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
ACCESS, SECRET = "benchkey", "benchsecret"


def postgres_cpu():
    total = 0.0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/comm") as comm:
                    if comm.read().strip() == "postgres":
                        total += cpu_seconds(pid)
            except OSError:
                pass
    return total


def client_cpu():
    own = os.times()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.user + own.system + children.ru_utime + children.ru_stime


class SeaweedFS:
    def __init__(self, tools):
        self.dir = tempfile.mkdtemp(prefix="gantry-bench-replicas-weed.")
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        env.update(S3_BUCKETS="gantry", S3_ACCESS_KEY=ACCESS, S3_SECRET_KEY=SECRET,
                   WEED_PORT_BASE=str(10000 + os.getpid() % 1200 * 10))  # below the ephemeral ports
        out = subprocess.run([os.path.join(tools, "start-seaweed-s3.sh"), str(self.port), self.dir],
                             env=env, capture_output=True, text=True, check=True)
        self.pid = int(out.stdout.strip())
        self.endpoint = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 60
        while subprocess.run(["curl", "-s", "-o", "/dev/null", self.endpoint + "/"]).returncode != 0:
            if time.time() > deadline:
                raise SystemExit("SeaweedFS did not answer within 60 s")
            time.sleep(0.2)
        time.sleep(2)

    def stop(self):
        try:
            os.kill(self.pid, 15)
        except OSError:
            pass
        time.sleep(1)
        shutil.rmtree(self.dir, ignore_errors=True)


class Cluster:
    """`count` replicas on one fresh database and one fresh bucket prefix, and HAProxy."""

    def __init__(self, binary, count, postgres, endpoint, label):
        self.dir = tempfile.mkdtemp(prefix=f"gantry-bench-replicas-{count}.")
        self.postgres = postgres.rstrip("/")
        self.database = f"gantry_bench_replicas_{count}_{os.getpid()}"
        self.psql(f"CREATE DATABASE {self.database}")
        self.port = free_port()
        self.front = f"127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("GANTRY_")}
        env.update(AWS_ACCESS_KEY_ID=ACCESS, AWS_SECRET_ACCESS_KEY=SECRET)
        self.replicas, self.token = [], None
        for i in range(count):
            home = os.path.join(self.dir, f"r{i}")
            os.makedirs(home)
            with open(os.path.join(home, "gantry.toml"), "w") as config:
                config.write(f'[deploy]\nreplica = "r{i}"\n')
            port = free_port()
            proc = subprocess.Popen(
                [binary, "serve", "--config", "gantry.toml", "--listen", f"127.0.0.1:{port}",
                 "--data-dir", "data", "--database-url", f"{self.postgres}/{self.database}",
                 "--blob-store", f"s3://gantry/{label}?endpoint={endpoint}",
                 "--external-url", f"http://{self.front}"],
                cwd=home, env=env, stdout=open(os.path.join(home, "stdout"), "w"),
                stderr=open(os.path.join(home, "stderr"), "w"))
            self.replicas.append((proc, port, home))
            deadline = time.time() + 60
            while not answers_ready(port):
                if proc.poll() is not None or time.time() > deadline:
                    raise SystemExit(f"replica {i} did not start: {open(os.path.join(home, 'stderr')).read()[-2000:]}")
                time.sleep(0.05)
            if i == 0:
                self.token = re.search(r"admin token:\s*(\S+)", open(os.path.join(home, "stdout")).read()).group(1)
        servers = "".join(f"    server r{i} 127.0.0.1:{port}\n" for i, (_, port, _) in enumerate(self.replicas))
        config = os.path.join(self.dir, "haproxy.cfg")
        with open(config, "w") as file:
            file.write("global\n    maxconn 1024\n"
                       "defaults\n    mode http\n    option http-server-close\n    option redispatch\n"
                       "    retries 3\n    timeout connect 5s\n    timeout client 120s\n    timeout server 120s\n"
                       f"frontend gantry\n    bind {self.front}\n    default_backend replicas\n"
                       f"backend replicas\n    balance roundrobin\n{servers}")
        self.haproxy = subprocess.Popen(["haproxy", "-db", "-f", config], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.time() + 20
        while not answers_ready(self.port):
            if time.time() > deadline:
                raise SystemExit("haproxy did not answer")
            time.sleep(0.05)

    def psql(self, sql):
        url = urllib.parse.urlsplit(self.postgres)
        subprocess.run(["psql", "-q", "-h", url.hostname or "127.0.0.1", "-p", str(url.port or 5432),
                        "-U", url.username or "postgres", "-d", "postgres", "-c", sql],
                       check=True, stdout=subprocess.DEVNULL)

    def cpu(self, seaweed):
        return dict(gantry=sum(cpu_seconds(proc.pid) for proc, _, _ in self.replicas), postgres=postgres_cpu(),
                    seaweed=cpu_seconds(seaweed.pid), haproxy=cpu_seconds(self.haproxy.pid), clients=client_cpu())

    def requests_per_replica(self):
        counts = []
        for _, port, _ in self.replicas:
            client = Client(port)
            _, _, data = client.request("GET", "/metrics")
            counts.append(sum(float(line.rsplit(" ", 1)[1]) for line in data.decode().splitlines()
                              if line.startswith("gantry_http_requests_total")))
        return counts

    def stop(self):
        self.haproxy.terminate()
        errors = []
        for proc, _, home in self.replicas:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
            errors += [line for line in open(os.path.join(home, "stderr")) if re.search(r"\b(ERROR|WARN)\b", line)]
        self.haproxy.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.psql(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
        return errors


def manifest(config, layer, n):
    return json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config[0], "size": config[1]},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer[0],
                    "size": layer[1]}],
        "annotations": {"bench.gantry/n": str(n)},
    }, separators=(",", ":")).encode()


def measured(cluster, seaweed, run):
    """Runs `run()` -> (operations, latencies ms, extra) and returns a result row's
    numbers: rate, latencies, CPU seconds by component, wall."""
    before = cluster.cpu(seaweed)
    started = time.perf_counter()
    operations, times, extra = run()
    wall = time.perf_counter() - started
    after = cluster.cpu(seaweed)
    cpu = {k: after[k] - before[k] for k in before}
    return dict(rate=operations / wall, times=times, cpu=cpu, wall=wall, extra=extra)


def bench(args, seaweed, count):
    log(f"{count} replica(s): starting")
    cluster = Cluster(args.binary, count, args.postgres, seaweed.endpoint, f"run{count}-{os.getpid()}")
    failures, rows = Failures(), {}
    try:
        authorization = f"Bearer {cluster.token}"
        admin = Client(cluster.port, authorization)
        apps = [f"app-{i}" for i in range(args.threads)]
        admin.expect(200, "POST", "/api/v1/apply", resources_yaml(apps), {"Content-Type": "application/yaml"})
        configs = {a: upload_small_blob(admin, f"bench/{a}", f'{{"os":"linux","n":"{a}"}}'.encode()) for a in apps}
        layer = upload_small_blob(admin, "bench/app-0", os.urandom(1024))
        admin.expect(201, "PUT", "/v2/bench/app-0/manifests/v1", manifest(configs["app-0"], layer, 0),
                     {"Content-Type": MANIFEST_TYPE})

        # 1. Manifest GET, by wrk.
        basic = base64.b64encode(f"admin:{cluster.token}".encode()).decode()
        before = cluster.requests_per_replica()

        def wrk():
            out = subprocess.run(
                ["wrk", "-t2", f"-c{args.wrk_connections}", f"-d{args.wrk_seconds}s", "--latency",
                 "-H", f"Authorization: Basic {basic}", "-H", f"Accept: {MANIFEST_TYPE}",
                 f"http://{cluster.front}/v2/bench/app-0/manifests/v1"],
                capture_output=True, text=True, check=True).stdout
            total = int(re.search(r"(\d+) requests in", out).group(1))
            bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            if bad:
                failures.add("manifest GET (wrk)", "non-2xx", f"{bad.group(1)} answers")
            latency = {p: m for p, m in re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M)}
            return total, [], latency
        log(f"{count} replica(s): manifest GET for {args.wrk_seconds} s")
        rows["manifest GET"] = measured(cluster, seaweed, wrk)
        after = cluster.requests_per_replica()
        rows["manifest GET"]["extra"]["spread"] = [round(a - b) for a, b in zip(after, before)]

        # 2. Small-image pushes, one repository per thread.
        def pushes():
            lock, times = threading.Lock(), []

            def work(client, a):
                for n in range(args.pushes):
                    started = time.perf_counter()
                    data = os.urandom(1024)
                    digest = sha256(data)
                    status, _, body = client.request("POST", f"/v2/bench/{a}/blobs/uploads/?digest={digest}", data,
                                                     {"Content-Type": "application/octet-stream"})
                    if status != 201:
                        failures.add("blob upload", status, body.decode("utf-8", "replace"))
                        continue
                    status, _, body = client.request("PUT", f"/v2/bench/{a}/manifests/p{n}",
                                                     manifest(configs[a], (digest, 1024), n),
                                                     {"Content-Type": MANIFEST_TYPE})
                    if status != 201:
                        failures.add("manifest push", status, body.decode("utf-8", "replace"))
                        continue
                    with lock:
                        times.append((time.perf_counter() - started) * 1000)
            run_in_threads(cluster.port, authorization, apps, work)
            return len(times), times, {}
        log(f"{count} replica(s): {args.threads} threads × {args.pushes} small-image pushes")
        rows["small-image push"] = measured(cluster, seaweed, pushes)

        # 3. Promotions, one application per thread.
        digests = {}
        for a in apps:
            digests[a] = []
            for n in range(args.promotions):
                body = manifest(configs[a], layer if a == "app-0" else configs[a], 1000 + n)
                admin.expect(201, "PUT", f"/v2/bench/{a}/manifests/r{n}", body, {"Content-Type": MANIFEST_TYPE})
                digests[a].append(sha256(body))

        def promotions():
            lock, times = threading.Lock(), []

            def work(client, a):
                for digest in digests[a]:
                    answer = promote(client, failures, a, "dev", digest)
                    if answer is not None:
                        with lock:
                            times.append(answer[0])
            run_in_threads(cluster.port, authorization, apps, work)
            return len(times), times, {}
        log(f"{count} replica(s): {args.threads} threads × {args.promotions} promotions")
        rows["promotion"] = measured(cluster, seaweed, promotions)
        verdict = json.loads(admin.expect(200, "GET", "/api/v1/audit/verify")[1])
        if verdict.get("intact") is not True:
            failures.add("audit verify", 200, json.dumps(verdict))
    finally:
        errors = cluster.stop()
    return rows, failures.items, errors


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary")
    parser.add_argument("--replicas", default="1,3")
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--pushes", type=int, default=20, help="small-image pushes per thread")
    parser.add_argument("--promotions", type=int, default=10, help="promotions per thread")
    parser.add_argument("--wrk-seconds", type=int, default=10)
    parser.add_argument("--wrk-connections", type=int, default=32)
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    args.binary = args.binary or build(log)
    tools = os.environ.get("GANTRY_SHARED_TOOLS") or os.path.join(ROOT, "..", "shared", "tools")
    seaweed = SeaweedFS(tools)
    results = []
    try:
        for count in [int(c) for c in args.replicas.split(",")]:
            results.append((count, *bench(args, seaweed, count)))
    finally:
        seaweed.stop()

    print("| replicas | workload | /s | median | p99 | CPU s: gantry | postgres | seaweedfs | haproxy "
          "| clients | cores busy |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    notes = []
    for count, rows, failures, errors in results:
        for workload, r in rows.items():
            if r["times"]:
                median = f"{statistics.median(r['times']):.1f} ms"
                p99 = f"{percentile(r['times'], 99):.1f} ms"
            else:
                median, p99 = r["extra"].get("50", ""), r["extra"].get("99", "")
            cpu = r["cpu"]
            busy = sum(cpu.values()) / r["wall"]
            print(f"| {count} | {workload} | {r['rate']:.0f} | {median} | {p99} | {cpu['gantry']:.1f} | "
                  f"{cpu['postgres']:.1f} | {cpu['seaweed']:.1f} | {cpu['haproxy']:.1f} | {cpu['clients']:.1f} | "
                  f"{busy:.2f} |")
        spread = rows["manifest GET"]["extra"].get("spread")
        notes.append(f"{count} replica(s): manifest GETs answered per replica {spread}; "
                     f"{len(failures)} unexpected answers; {len(errors)} ERROR/WARN log lines")
        notes += problem_lines(failures, errors)
    print()
    print(f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} at the end")
    for line in notes:
        print(line)


if __name__ == "__main__":
    main()
