#!/usr/bin/env python3
"""Access latency and throughput: OIDC exchange and the registry token endpoint.

The benchmark runs its own OIDC issuer on loopback (a small HTTP server serving
`/.well-known/openid-configuration` and a JWKS with one RSA key, `kid` k1) and signs
RS256 job tokens for it (iss = the issuer, aud `gantry`, sub
`repo:acme/web:ref:refs/heads/main`, repository `acme/web`, ref `refs/heads/main`,
a fresh `jti` each). For each backend (SQLite, PostgreSQL) it starts `gantry serve` on
a fresh data directory (and a fresh PostgreSQL database) with a config file trusting
that issuer (GitHub Actions off, credential rate limits raised out of the way),
applies a pipeline `standard` (stage `dev`, auto), an application `web` (container,
repository acme/web, `dev: { target: { record: {} } }`) and a TrustPolicy `web-ci`
granting `developer` on `web` to tokens from that issuer for acme/web on main, then:

  1. times one cold exchange (`POST /api/v1/auth/oidc`, the first after start, which
     fetches the discovery document and the JWKS), then a few warm-up exchanges;
  2. the sequential latency of N exchanges with the JWKS cached, and exchanges/s
     with C client threads. A job token id is exchanged at most once, so every
     request carries its own token; all are signed before the clock starts;
  3. the sequential latency of N `GET /token?service=…&scope=repository:acme/web:pull,push`
     with Basic `admin:ADMIN_TOKEN`, then with the exchanged token
     (`oidc/web-ci:TOKEN`), and requests/s with C threads for both;
  4. for reference, N `GET /v2/` with Basic `admin:ADMIN_TOKEN` (a credential check
     and nothing else).

Every answer is checked (201 with a `token` for an exchange, 200 with a `token` from
/token, 200 from /v2/); anything else is counted and shown. Connections are
keep-alive, one per client thread. The server's CPU time per request (from
/proc/PID/stat at clock-tick resolution, the gantry process only, not PostgreSQL)
is shown beside the timings.

Needs the `cryptography` package (`pip install cryptography`) to sign RS256 tokens.

Usage: access.py [--binary PATH] [--backends sqlite,postgres] [-n 500]
                 [--concurrency 8] [--burst 2000] [--warmup 10]
                 [--postgres postgres://postgres@127.0.0.1:5432]
Without --binary it builds the release binary (honours CARGO_TARGET_DIR).
"""
import base64
import http.server
import json
import os
import threading
import time
import urllib.parse
import uuid

from harness import (Client, Failures, Server, argument_parser, backend_report, free_port, latency_columns,
                     logger, parse_arguments, run_in_threads)

try:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
except ImportError:
    raise SystemExit("access.py signs RS256 tokens with the `cryptography` package: "
                     "pip install cryptography (or run it with a Python that has it)")

AUDIENCE = "gantry"
KEY_ID = "k1"
POLICY = "web-ci"
SCOPE = "repository:acme/web:pull,push"

log = logger("access")


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# ---------------------------------------------------------------------------------
# The OIDC issuer


class Issuer:
    """A CI platform's token issuer on loopback: discovery document, JWKS, and RS256
    signing with the one key the JWKS publishes. Counts the key fetches it serves."""

    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        numbers = self.key.public_key().public_numbers()
        jwk = {"kty": "RSA", "kid": KEY_ID, "use": "sig", "alg": "RS256",
               "n": b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
               "e": b64url(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big"))}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.header = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": KEY_ID},
                                        separators=(",", ":")).encode())
        self.lock = threading.Lock()
        self.fetches = {}
        documents = {
            "/.well-known/openid-configuration": json.dumps(
                {"issuer": self.url, "jwks_uri": self.url + "/.well-known/jwks"}).encode(),
            "/.well-known/jwks": json.dumps({"keys": [jwk]}).encode(),
        }
        issuer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = documents.get(self.path)
                with issuer.lock:
                    issuer.fetches[self.path] = issuer.fetches.get(self.path, 0) + 1
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def fetch_counts(self):
        with self.lock:
            return dict(self.fetches)

    def sign(self):
        now = int(time.time())
        claims = {"iss": self.url, "aud": AUDIENCE, "sub": "repo:acme/web:ref:refs/heads/main",
                  "repository": "acme/web", "ref": "refs/heads/main",
                  "iat": now, "nbf": now, "exp": now + 600, "jti": str(uuid.uuid4())}
        payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = f"{self.header}.{payload}".encode()
        signature = self.key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return f"{self.header}.{payload}.{b64url(signature)}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------------
# The server


def config_toml(issuer_url):
    return (
        # The issuer listens on loopback, which outbound requests reach only when allowed.
        "[outbound]\n"
        'allow = ["127.0.0.1"]\n'
        "\n"
        "[access]\n"
        "github_actions = false\n"
        "failed_credentials_per_minute = 1000000\n"
        "failed_credentials_burst = 1000000\n"
        "\n"
        "[[access.oidc_issuers]]\n"
        f'issuer = "{issuer_url}"\n'
        'algorithms = ["RS256"]\n'
    )


def resources_yaml(issuer_url):
    return (
        "kind: Pipeline\nname: standard\nstages:\n  - name: dev\n    auto: true\n"
        "---\n"
        "kind: Application\nname: web\ntype: container\nrepository: acme/web\n"
        "pipeline: standard\nenvironments:\n  dev: { target: { record: {} } }\n"
        "---\n"
        f"kind: TrustPolicy\nname: {POLICY}\nissuer: {issuer_url}\naudience: {AUDIENCE}\n"
        "claims:\n  repository: acme/web\n  ref: refs/heads/main\n"
        "role: developer\napplications: [web]\nmax_token_lifetime: 15m\n"
    )


# ---------------------------------------------------------------------------------
# Requests


def timed(client, failures, what, method, path, body, headers, status):
    """Times one request. Returns (ms, answer as JSON) when it answered `status` with
    a `token` (or just `status` for /v2/), else records the failure and returns None."""
    started = time.perf_counter()
    try:
        got, _, data = client.request(method, path, body, headers)
    except OSError as error:
        failures.add(what, "connection", repr(error))
        return None
    elapsed = (time.perf_counter() - started) * 1000
    if path.startswith("/v2/"):
        answer = {}
        ok = got == status
    else:
        try:
            answer = json.loads(data)
        except ValueError:
            answer = {}
        ok = got == status and isinstance(answer, dict) and bool(answer.get("token"))
    if not ok:
        failures.add(what, got, data.decode("utf-8", "replace"))
        return None
    return elapsed, answer


def exchange(client, failures, job_token):
    body = json.dumps({"token": job_token})
    return timed(client, failures, "POST /api/v1/auth/oidc", "POST", "/api/v1/auth/oidc", body,
                 {"Content-Type": "application/json"}, 201)


def token_request(service):
    path = "/token?" + urllib.parse.urlencode({"service": service, "scope": SCOPE})

    def request(client, failures, _):
        return timed(client, failures, "GET /token", "GET", path, None, None, 200)
    return request


def v2_request(client, failures, _):
    return timed(client, failures, "GET /v2/", "GET", "/v2/", None, None, 200)


def check_granted(client, failures, send, label):
    """The token endpoint leaves out scopes the caller may not have, so a 200 alone
    does not say the work was done: decode one registry token (`gnr.PAYLOAD.TAG`)
    and check it grants pull and push on acme/web."""
    answer = send(client, failures, None)
    if answer is None:
        return
    payload = answer[1]["token"].removeprefix("gnr.").rsplit(".", 1)[0]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    granted = {action for access in claims.get("access", [])
               if access.get("type") == "repository" and access.get("name") == "acme/web"
               for action in access.get("actions", [])}
    if not {"pull", "push"} <= granted:
        failures.add(f"{label}: granted access", 200, json.dumps(claims.get("access")))


def sequential(server, client, failures, send, items):
    """Sends one request per item on one connection; returns (latencies, wall s,
    server cpu s)."""
    cpu = server.cpu_seconds()
    started = time.perf_counter()
    times = []
    for item in items:
        answer = send(client, failures, item)
        if answer is not None:
            times.append(answer[0])
    return times, time.perf_counter() - started, server.cpu_seconds() - cpu


def concurrent(server, authorization, failures, send, plans):
    """One thread per plan (a list of items, one request each), each on its own
    keep-alive connection opened before the clock starts. Returns (latencies, wall s,
    server cpu s, client cpu s)."""
    lock = threading.Lock()
    times = []

    def work(client, plan):
        mine = []
        for item in plan:
            answer = send(client, failures, item)
            if answer is not None:
                mine.append(answer[0])
        with lock:
            times.extend(mine)

    wall, server_cpu, client_cpu = run_in_threads(server.port, authorization, plans, work,
                                                  (time.perf_counter, server.cpu_seconds, time.process_time))
    return times, wall, server_cpu, client_cpu


def row(workload, clients, times, wall=None, server_cpu=None, note=""):
    return dict(workload=workload, clients=clients, times=times,
                per_second=len(times) / wall if wall and times else None,
                cpu_ms=server_cpu * 1000 / len(times) if server_cpu is not None and times else None,
                note=note)


def bench_backend(args, issuer, backend):
    log(f"{backend}: starting gantry")
    load_before = os.getloadavg()[0]
    fetches_before = issuer.fetch_counts()
    server = Server("access", args.binary, backend, args.postgres, config_toml(issuer.url))
    failures = Failures()
    rows = []
    peak = float("nan")
    try:
        admin = basic("admin", server.token)
        client = Client(server.port, f"Bearer {server.token}")
        client.expect(200, "POST", "/api/v1/apply", resources_yaml(issuer.url),
                      {"Content-Type": "application/yaml"})
        anonymous = Client(server.port)

        # 1. One cold exchange (fetches discovery and JWKS), then warm-up ones.
        cold = exchange(anonymous, failures, issuer.sign())
        if cold is None:
            raise SystemExit(f"{backend}: the first exchange failed: {failures.items[-1]}")
        rows.append(row("cold: first exchange after start (fetches discovery + JWKS)", 1, [cold[0]]))
        oidc_token = cold[1]["token"]
        oidc_user = cold[1]["user"]
        if oidc_user != f"oidc/{POLICY}":
            failures.add("exchange user", 201, f"user {oidc_user}, expected oidc/{POLICY}")
        for job_token in [issuer.sign() for _ in range(args.warmup)]:
            exchange(anonymous, failures, job_token)

        # 2. Exchanges with the JWKS cached: sequential, then C threads.
        log(f"{backend}: signing {args.n} job tokens")
        job_tokens = [issuer.sign() for _ in range(args.n)]
        log(f"{backend}: {args.n} sequential exchanges")
        times, wall, cpu = sequential(server, anonymous, failures, exchange, job_tokens)
        rows.append(row("OIDC exchange, JWKS cached", 1, times, wall, cpu))
        for threads in args.concurrency:
            each = -(-args.burst // threads)
            plans = [[issuer.sign() for _ in range(each)] for _ in range(threads)]
            log(f"{backend}: {threads * each} exchanges, {threads} threads")
            times, wall, cpu, client_cpu = concurrent(server, None, failures, exchange, plans)
            rows.append(row("OIDC exchange, JWKS cached", threads, times, wall, cpu,
                            f"client CPU {client_cpu / wall:.0%} of one core"))

        # 3. The registry token endpoint, as admin and as the exchanged CI identity.
        service = f"127.0.0.1:{server.port}"
        send_token = token_request(service)
        for label, authorization in (("GET /token, Basic admin:ADMIN_TOKEN", admin),
                                     (f"GET /token, Basic oidc/{POLICY}:exchanged token",
                                      basic(oidc_user, oidc_token))):
            with_credentials = Client(server.port, authorization)
            sequential(server, with_credentials, failures, send_token, range(args.warmup))
            check_granted(with_credentials, failures, send_token, label)
            log(f"{backend}: {args.n} sequential {label}")
            times, wall, cpu = sequential(server, with_credentials, failures, send_token, range(args.n))
            rows.append(row(label, 1, times, wall, cpu))
            for threads in args.concurrency:
                each = -(-args.burst // threads)
                plans = [range(each) for _ in range(threads)]
                log(f"{backend}: {threads * each} × {label}, {threads} threads")
                times, wall, cpu, client_cpu = concurrent(server, authorization, failures, send_token, plans)
                rows.append(row(label, threads, times, wall, cpu,
                                f"client CPU {client_cpu / wall:.0%} of one core"))

        # 4. Reference: a request that only checks the credentials.
        with_credentials = Client(server.port, admin)
        sequential(server, with_credentials, failures, v2_request, range(args.warmup))
        times, wall, cpu = sequential(server, with_credentials, failures, v2_request, range(args.n))
        rows.append(row("baseline: GET /v2/, Basic admin:ADMIN_TOKEN (credential check only)", 1,
                        times, wall, cpu))
        peak = server.rss_mib()
    finally:
        errors = server.stop()
    fetches = {path: n - fetches_before.get(path, 0) for path, n in issuer.fetch_counts().items()
               if n - fetches_before.get(path, 0)}
    load = (load_before, os.getloadavg()[0])
    return rows, failures.items, errors, fetches, peak, load


def print_table(backend, rows):
    print(f"### {backend}")
    print()
    print("| workload | clients | n | median ms | p99 ms | max ms | requests/s | server cpu ms/req |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        times = r["times"]
        if not times:
            print(f"| {r['workload']} | {r['clients']} | 0 | – | – | – | – | – |")
            continue
        per_second = f"{r['per_second']:,.0f}" if r["per_second"] is not None else "–"
        cpu = f"{r['cpu_ms']:.2f}" if r["cpu_ms"] is not None else "–"
        print(f"| {r['workload']} | {r['clients']} | {len(times)} | "
              f"{latency_columns(times)} | {per_second} | {cpu} |")
    print()
    for r in rows:
        if r["note"]:
            print(f"{r['workload']}, {r['clients']} clients: {r['note']}")
    print()


def main():
    parser = argument_parser(__doc__)
    parser.add_argument("-n", type=int, default=500, help="sequential requests per workload")
    parser.add_argument("--concurrency", default="8", help="client thread counts")
    parser.add_argument("--burst", type=int, default=2000, help="requests per concurrent run")
    parser.add_argument("--warmup", type=int, default=10, help="untimed requests before each workload")
    args = parse_arguments(parser, log)
    args.concurrency = [int(c) for c in args.concurrency.split(",")]

    issuer = Issuer()
    log(f"issuer at {issuer.url}")
    report = []
    try:
        for backend in args.backends.split(","):
            rows, failures, errors, fetches, peak, load = bench_backend(args, issuer, backend)
            print_table(backend, rows)
            fetched = ", ".join(f"{path} ×{n}" for path, n in sorted(fetches.items())) or "nothing"
            report += backend_report(backend, load, f"issuer served {fetched}", peak, failures, errors)
    finally:
        issuer.stop()
    for line in report:
        print(line)


if __name__ == "__main__":
    main()
