#!/usr/bin/env bash
# Side-by-side benchmark of Gantry and the CNCF reference registry (Debian
# `docker-registry`, its s3-aws driver) with their blobs in the same S3-compatible
# store (SeaweedFS on loopback, one bucket each), in one interleaved run of the shared
# bench-registry.sh workloads (compare-registries.sh). Both proxy blob downloads, or
# with REDIRECT=1 both answer them with a 307 to a presigned URL of the bucket.
#
# Usage: bench/compare-s3.sh          (from the repository root or anywhere)
# Env:   ROUNDS=3 BIG_LAYERS=512M SMALL_COUNT=100 RAW_SIZE=512M WRK_DUR=10s WRK_CONN=32
#        REDIRECT=0   GANTRY_SHARED_TOOLS=<dir with bench-registry.sh>   OUT=<results dir>
#        POSTGRES=<server URL, e.g. postgres://postgres@127.0.0.1:5432>
# Gantry keeps its metadata in SQLite (the embedded default), or with POSTGRES in a
# fresh database on that server (dropped at the end): the several-replica setup.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
TOOLS="${GANTRY_SHARED_TOOLS:-$ROOT/../shared/tools}"
[ -x "$TOOLS/compare-registries.sh" ] || { echo "shared tools not found at $TOOLS" >&2; exit 2; }
export ROUNDS="${ROUNDS:-3}" BIG_LAYERS="${BIG_LAYERS:-512M}" SMALL_COUNT="${SMALL_COUNT:-100}" \
       RAW_SIZE="${RAW_SIZE:-512M}" WRK_DUR="${WRK_DUR:-10s}" WRK_CONN="${WRK_CONN:-32}"
REDIRECT="${REDIRECT:-0}"
OUT="${OUT:-$(mktemp -d -t gantry-bench-s3.XXXXXX)}"
mkdir -p "$OUT"

echo "[bench] building gantry (release)" >&2
(cd "$ROOT" && cargo build --release -q -p gantry)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/gantry"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# SeaweedFS with a bucket for each registry.
S3_PORT="$(free_port)"
WEED_PID="$(env -u AWS_CA_BUNDLE S3_BUCKETS=registry,gantry S3_ACCESS_KEY=benchkey S3_SECRET_KEY=benchsecret \
  WEED_PORT_BASE="${WEED_PORT_BASE:-21000}" "$TOOLS/start-seaweed-s3.sh" "$S3_PORT" "$OUT/weed" 2>"$OUT/weed.err")"
PIDS+=("$WEED_PID")
ENDPOINT="http://127.0.0.1:$S3_PORT"
for _ in $(seq 1 300); do
  curl -s -o /dev/null "$ENDPOINT/" && break; sleep 0.2
done
sleep 2

# Gantry, release build, SQLite (or PostgreSQL) metadata, blobs in the `gantry` bucket.
GDIR="$(mktemp -d -t gantry-bench-data.XXXXXX)"
GPORT="$(free_port)"
GSTORE="s3://gantry/registry?endpoint=$ENDPOINT"
[ "$REDIRECT" = 1 ] && GSTORE="$GSTORE&redirect=true"
METADATA=()
if [ -n "${POSTGRES:-}" ]; then
  DB="gantry_bench_s3_$$"
  psql -q "${POSTGRES%/}/postgres" -c "CREATE DATABASE $DB"
  trap 'cleanup; psql -q "${POSTGRES%/}/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"' EXIT
  METADATA=(--database-url "${POSTGRES%/}/$DB")
fi
env -u AWS_CA_BUNDLE AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=benchsecret \
  "$BIN" serve --listen "127.0.0.1:$GPORT" --data-dir "$GDIR/data" --blob-store "$GSTORE" \
  "${METADATA[@]}" >"$GDIR/stdout" 2>"$GDIR/stderr" &
GPID=$!; PIDS+=("$GPID")
for _ in $(seq 1 100); do grep -q 'listening on' "$GDIR/stdout" 2>/dev/null && break; sleep 0.1; done
TOKEN="$(awk '/admin token:/ {print $4}' "$GDIR/stdout")"
[ -n "$TOKEN" ] || { echo "gantry did not start: $(cat "$GDIR/stderr")" >&2; exit 3; }

# The reference registry, s3-aws driver, the `registry` bucket.
PDIR="$(mktemp -d -t peer-bench-data.XXXXXX)"
PPORT="$(free_port)"
PPID_="$(env -u AWS_CA_BUNDLE PEER_STORAGE=s3 PEER_S3_ENDPOINT="$ENDPOINT" PEER_S3_BUCKET=registry \
  PEER_S3_ACCESS_KEY=benchkey PEER_S3_SECRET_KEY=benchsecret PEER_S3_REDIRECT="$REDIRECT" \
  "$TOOLS/start-peer-registry.sh" "$PPORT" "$PDIR")"; PIDS+=("$PPID_")
sleep 1

CREDS="admin:$TOKEN" A_LABEL="docker-registry-s3" B_LABEL="gantry-s3" OUT="$OUT" \
  "$TOOLS/compare-registries.sh" "127.0.0.1:$PPORT" "$PPID_" "127.0.0.1:$GPORT" "$GPID" | tee "$OUT/compare.txt"
echo "# SeaweedFS at $ENDPOINT (pid $WEED_PID); results in $OUT" >&2
