"""What the benchmark scripts share: `gantry serve` on a fresh data directory (and a
fresh PostgreSQL database), one keep-alive HTTP connection per client thread, client
threads released together, unexpected answers kept for the report, the server's CPU
time and peak RSS, the common options, and the pieces of the tables and of the
report beneath them.

The scripts run as `python3 bench/NAME.py`, which puts this directory first on
sys.path, so they import it as `harness`.
"""
import argparse
import http.client
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def logger(name):
    """A function that writes progress to stderr as `[name] message`, so stdout holds
    only the tables."""
    def log(message):
        print(f"[{name}] {message}", file=sys.stderr, flush=True)
    return log


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def answers_ready(port):
    """Whether GET /readyz on the port answers 200 now."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        conn.request("GET", "/readyz")
        return conn.getresponse().status == 200
    except OSError:
        return False


def cpu_seconds(pid):
    """User and system CPU seconds process `pid` has used (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime and stime are fields 14 and 15 of the whole line (11 and 12 after the name).
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class Failures:
    """Unexpected answers, kept with their bodies so they can be reported exactly."""

    def __init__(self):
        self.lock = threading.Lock()
        self.items = []

    def add(self, what, status, body):
        with self.lock:
            self.items.append((what, status, body[:300]))


class Client:
    """One keep-alive HTTP connection (one per thread)."""

    def __init__(self, port, authorization=None):
        self.port = port
        self.authorization = authorization
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        all_headers = {"Authorization": self.authorization} if self.authorization else {}
        all_headers.update(headers or {})
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        try:
            self.conn.request(method, path, body=body, headers=all_headers)
            response = self.conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        except OSError:
            # No silent retry (neither a promotion without a key nor an exchange, which
            # spends its job token, is idempotent): reconnect next time and let the
            # caller see the error.
            self.conn.close()
            self.conn = None
            raise

    def expect(self, status, method, path, body=None, headers=None):
        got, response_headers, data = self.request(method, path, body, headers)
        if got != status:
            raise SystemExit(f"{method} {path}: expected {status}, got {got}: {data[:500]!r}")
        return response_headers, data


def run_in_threads(port, authorization, plans, work, meters=(time.perf_counter,)):
    """Runs `work(client, plan)` in one thread per plan, each thread on its own
    keep-alive connection, opened (GET /readyz) before the clock starts. Returns how
    far each of `meters` moved from every thread being ready to the last one
    finishing: by default the wall time in seconds."""
    ready = threading.Barrier(len(plans) + 1, timeout=60)

    def worker(plan):
        client = Client(port, authorization)
        client.expect(200, "GET", "/readyz")
        ready.wait()
        work(client, plan)

    workers = [threading.Thread(target=worker, args=(plan,)) for plan in plans]
    for thread in workers:
        thread.start()
    ready.wait()
    before = [meter() for meter in meters]
    for thread in workers:
        thread.join()
    return [meter() - start for meter, start in zip(meters, before)]


class Server:
    """`gantry serve` on loopback with a fresh data directory, for one benchmark
    (`bench` names its temporary directory and database) and one backend. With the
    postgres backend it creates a fresh database and drops it on stop; with
    `config_toml` it writes that to gantry.toml and passes it with --config.
    `token` is the admin token the first start prints."""

    def __init__(self, bench, binary, backend, postgres_base, config_toml=None):
        self.backend = backend
        self.dir = tempfile.mkdtemp(prefix=f"gantry-{bench}-{backend}.")
        self.port = free_port()
        self.database = None
        args = [binary, "serve", "--listen", f"127.0.0.1:{self.port}",
                "--data-dir", os.path.join(self.dir, "data")]
        if config_toml is not None:
            config = os.path.join(self.dir, "gantry.toml")
            with open(config, "w") as file:
                file.write(config_toml)
            args += ["--config", config]
        if backend == "postgres":
            self.postgres_base = postgres_base.rstrip("/")
            self.database = f"gantry_bench_{bench}_{os.getpid()}"
            self.psql(f"CREATE DATABASE {self.database}")
            args += ["--database-url", f"{self.postgres_base}/{self.database}"]
        # No GANTRY_* from the caller's environment, no gantry.toml from its directory.
        env = {k: v for k, v in os.environ.items() if not k.startswith("GANTRY_")}
        self.stdout_path = os.path.join(self.dir, "stdout")
        self.stderr_path = os.path.join(self.dir, "stderr")
        self.proc = subprocess.Popen(args, cwd=self.dir, env=env,
                                     stdout=open(self.stdout_path, "w"),
                                     stderr=open(self.stderr_path, "w"))
        try:
            self.token = self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def psql(self, sql):
        url = urllib.parse.urlsplit(self.postgres_base)
        subprocess.run(["psql", "-q", "-h", url.hostname or "127.0.0.1", "-p", str(url.port or 5432),
                        "-U", url.username or "postgres", "-d", "postgres", "-c", sql],
                       check=True, stdout=subprocess.DEVNULL)

    def wait_ready(self):
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"gantry exited: {open(self.stderr_path).read()[-2000:]}")
            if answers_ready(self.port):
                match = re.search(r"admin token:\s*(\S+)", open(self.stdout_path).read())
                if match:
                    return match.group(1)
            time.sleep(0.02)
        raise SystemExit("gantry did not become ready within 60 s")

    def cpu_seconds(self):
        return cpu_seconds(self.proc.pid)

    def rss_mib(self, field="VmHWM"):
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self):
        """Stops the server, removes its directory (and database) and returns the
        ERROR and WARN lines it logged."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        errors = [line for line in open(self.stderr_path) if re.search(r"\b(ERROR|WARN)\b", line)]
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.database:
            self.psql(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
        return errors


# ---------------------------------------------------------------------------------
# Options and the report


def argument_parser(doc):
    """A parser with the options that open every server benchmark's list: --binary
    and --backends. The script adds its own, then calls `parse_arguments`."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--binary", help="a built gantry binary (default: build the release one)")
    parser.add_argument("--backends", default="sqlite,postgres")
    return parser


def parse_arguments(parser, log):
    """Adds --postgres, which closes every server benchmark's list, parses, and
    builds the release binary when --binary is absent."""
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432",
                        help="PostgreSQL server; a fresh database is created and dropped")
    args = parser.parse_args()
    args.binary = args.binary or build(log)
    return args


def build(log):
    log("building gantry (release)")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "gantry"], cwd=ROOT, check=True)
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    return os.path.join(target, "release", "gantry")


def backend_report(backend, load, detail, peak, failures, errors):
    """The lines after the tables for one backend: the machine's load, what the
    benchmark adds (`detail`), the server's peak RSS, and the first unexpected
    answers and ERROR/WARN log lines."""
    return [f"{backend}: load average {load[0]:.1f} before, {load[1]:.1f} after; {detail}; "
            f"server peak RSS {peak:.1f} MiB; {len(failures)} unexpected answers; "
            f"{len(errors)} ERROR/WARN log lines"] + problem_lines(failures, errors)


def problem_lines(failures, errors):
    """The first unexpected answers and ERROR/WARN log lines, indented, for a report."""
    return ([f"  {what}: HTTP {status}: {body}" for what, status, body in failures[:10]]
            + [f"  log: {line.rstrip()[:300]}" for line in errors[:10]])


def percentile(values, p):
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    # Linear interpolation between closest ranks (the "inclusive" method).
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_columns(times):
    """The median, p99 and max columns of a table row (ms)."""
    return f"{statistics.median(times):.2f} | {percentile(times, 99):.2f} | {max(times):.2f}"
