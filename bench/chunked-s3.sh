#!/usr/bin/env bash
# Chunked uploads on S3, side by side with the CNCF reference registry (its s3-aws
# driver) on the same SeaweedFS: a blob of SIZE_MIB sent as PATCHes of CHUNK_MIB
# (Content-Range, one after another, as a resumable client sends them) and finished
# by an empty PUT ?digest=, ROUNDS times each, interleaved. Prints, per registry, the
# median time of the PATCHes, of the finishing PUT (the commit) and of the whole
# upload, with its throughput.
#
# Usage: bench/chunked-s3.sh
# Env:   SIZE_MIB=512 CHUNK_MIB=20 ROUNDS=3 BIN=<gantry binary, default: release build>
#        GANTRY_SHARED_TOOLS=<dir with start-seaweed-s3.sh and start-peer-registry.sh>
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
TOOLS="${GANTRY_SHARED_TOOLS:-$ROOT/../shared/tools}"
[ -x "$TOOLS/start-seaweed-s3.sh" ] || { echo "shared tools not found at $TOOLS" >&2; exit 2; }
SIZE_MIB="${SIZE_MIB:-512}" CHUNK_MIB="${CHUNK_MIB:-20}" ROUNDS="${ROUNDS:-3}"
OUT="$(mktemp -d -t gantry-bench-chunked.XXXXXX)"

if [ -z "${BIN:-}" ]; then
  echo "[bench] building gantry (release)" >&2
  (cd "$ROOT" && cargo build --release -q -p gantry)
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/gantry"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

S3_PORT="$(free_port)"
WEED_PID="$(env -u AWS_CA_BUNDLE S3_BUCKETS=registry,gantry S3_ACCESS_KEY=benchkey S3_SECRET_KEY=benchsecret \
  WEED_PORT_BASE="${WEED_PORT_BASE:-21000}" "$TOOLS/start-seaweed-s3.sh" "$S3_PORT" "$OUT/weed" 2>"$OUT/weed.err")"
PIDS+=("$WEED_PID")
ENDPOINT="http://127.0.0.1:$S3_PORT"
for _ in $(seq 1 300); do curl -s -o /dev/null "$ENDPOINT/" && break; sleep 0.2; done
sleep 2

GPORT="$(free_port)"
env -u AWS_CA_BUNDLE AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=benchsecret \
  "$BIN" serve --listen "127.0.0.1:$GPORT" --data-dir "$OUT/gantry" \
  --blob-store "s3://gantry/registry?endpoint=$ENDPOINT" >"$OUT/gantry.out" 2>"$OUT/gantry.err" &
PIDS+=("$!")
for _ in $(seq 1 100); do grep -q 'listening on' "$OUT/gantry.out" 2>/dev/null && break; sleep 0.1; done
TOKEN="$(awk '/admin token:/ {print $4}' "$OUT/gantry.out")"
[ -n "$TOKEN" ] || { echo "gantry did not start: $(cat "$OUT/gantry.err")" >&2; exit 3; }

PPORT="$(free_port)"
PPID_="$(env -u AWS_CA_BUNDLE PEER_STORAGE=s3 PEER_S3_ENDPOINT="$ENDPOINT" PEER_S3_BUCKET=registry \
  PEER_S3_ACCESS_KEY=benchkey PEER_S3_SECRET_KEY=benchsecret PEER_S3_REDIRECT=0 \
  "$TOOLS/start-peer-registry.sh" "$PPORT" "$OUT/peer")"; PIDS+=("$PPID_")
sleep 1

python3 - "$SIZE_MIB" "$CHUNK_MIB" "$ROUNDS" "127.0.0.1:$PPORT" "" "127.0.0.1:$GPORT" "admin:$TOKEN" <<'PY'
import base64, hashlib, http.client, os, statistics, sys, time

size, chunk, rounds = int(sys.argv[1]) << 20, int(sys.argv[2]) << 20, int(sys.argv[3])
targets = [("docker-registry-s3", sys.argv[4], sys.argv[5]), ("gantry-s3", sys.argv[6], sys.argv[7])]

def call(conn, creds, method, path, body=b"", headers=None):
    headers = dict(headers or {})
    if creds:
        headers["Authorization"] = "Basic " + base64.b64encode(creds.encode()).decode()
    headers.setdefault("Content-Length", str(len(body)))
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    return response

def upload(address, creds, seed):
    # A fresh blob each time: the commit of a known digest would be skipped.
    block = hashlib.sha256(seed.encode()).digest() * (chunk // 32)
    conn = http.client.HTTPConnection(address, timeout=600)
    response = call(conn, creds, "POST", "/v2/bench/chunked/blobs/uploads/")
    assert response.status == 202, response.status
    location = response.getheader("Location")
    path = location.split(address, 1)[-1] if location.startswith("http") else location
    hasher, offset, started = hashlib.sha256(), 0, time.perf_counter()
    while offset < size:
        piece = block[: min(chunk, size - offset)]
        hasher.update(piece)
        response = call(conn, creds, "PATCH", path, piece, {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{offset}-{offset + len(piece) - 1}"})
        assert response.status == 202, (response.status, address)
        location = response.getheader("Location")
        path = location.split(address, 1)[-1] if location.startswith("http") else location
        offset += len(piece)
    patched = time.perf_counter()
    sep = "&" if "?" in path else "?"
    response = call(conn, creds, "PUT", f"{path}{sep}digest=sha256:{hasher.hexdigest()}")
    assert response.status == 201, (response.status, address)
    done = time.perf_counter()
    return patched - started, done - patched, done - started

results = {label: [] for label, _, _ in targets}
for n in range(rounds):
    for label, address, creds in targets:
        results[label].append(upload(address, creds, f"{label}-{n}-{os.getpid()}"))
print(f"chunked upload of {size >> 20} MiB in {chunk >> 20} MiB PATCHes, median of {rounds}")
print(f"{'registry':<20} {'PATCHes s':>10} {'commit s':>9} {'total s':>8} {'MB/s':>7}")
for label, runs in results.items():
    patches, commit, total = (statistics.median(r[i] for r in runs) for i in range(3))
    print(f"{label:<20} {patches:>10.2f} {commit:>9.2f} {total:>8.2f} {size / total / 1e6:>7.1f}")
PY
