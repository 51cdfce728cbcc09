#!/usr/bin/env bash
# Side-by-side benchmark of Gantry and the CNCF reference registry (Debian
# `docker-registry`) on this machine, in one run: the shared bench-registry.sh
# workloads interleaved by compare-registries.sh (push/pull of a big single-layer
# image, many small images, raw blob upload/download, manifest and blob GET under
# wrk), plus server memory (idle and peak) and Gantry's cold start to ready.
#
# Usage: bench/compare.sh            (from the repository root or anywhere)
# Env:   ROUNDS=3 BIG_LAYERS=1G SMALL_COUNT=200 RAW_SIZE=1G WRK_DUR=10s WRK_CONN=32
#        GANTRY_SHARED_TOOLS=<dir with bench-registry.sh>   OUT=<results dir>
# Prints the comparison table; raw per-round tables stay in $OUT.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
TOOLS="${GANTRY_SHARED_TOOLS:-$ROOT/../shared/tools}"
[ -x "$TOOLS/compare-registries.sh" ] || { echo "shared tools not found at $TOOLS" >&2; exit 2; }
export ROUNDS="${ROUNDS:-3}" BIG_LAYERS="${BIG_LAYERS:-1G}" SMALL_COUNT="${SMALL_COUNT:-200}" \
       RAW_SIZE="${RAW_SIZE:-1G}" WRK_DUR="${WRK_DUR:-10s}" WRK_CONN="${WRK_CONN:-32}"
OUT="${OUT:-$(mktemp -d -t gantry-bench.XXXXXX)}"
mkdir -p "$OUT"

echo "[bench] building gantry (release)" >&2
(cd "$ROOT" && cargo build --release -q -p gantry)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/gantry"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# Gantry, release build, embedded default (SQLite + local directory).
GDIR="$(mktemp -d -t gantry-bench-data.XXXXXX)"
GPORT="$(free_port)"
"$BIN" serve --listen "127.0.0.1:$GPORT" --data-dir "$GDIR/data" >"$GDIR/stdout" 2>"$GDIR/stderr" &
GPID=$!; PIDS+=("$GPID")
for _ in $(seq 1 100); do grep -q 'listening on' "$GDIR/stdout" 2>/dev/null && break; sleep 0.1; done
TOKEN="$(awk '/admin token:/ {print $4}' "$GDIR/stdout")"
[ -n "$TOKEN" ] || { echo "gantry did not start: $(cat "$GDIR/stderr")" >&2; exit 3; }

# The reference registry, filesystem storage.
PDIR="$(mktemp -d -t peer-bench-data.XXXXXX)"
PPORT="$(free_port)"
PPID_="$("$TOOLS/start-peer-registry.sh" "$PPORT" "$PDIR")"; PIDS+=("$PPID_")

sleep 1
G_IDLE="$(rss_kb "$GPID")"; P_IDLE="$(rss_kb "$PPID_")"

# Both get the same credentials; the reference registry has no auth and ignores them.
CREDS="admin:$TOKEN" A_LABEL="docker-registry" B_LABEL="gantry" OUT="$OUT" \
  "$TOOLS/compare-registries.sh" "127.0.0.1:$PPORT" "$PPID_" "127.0.0.1:$GPORT" "$GPID" | tee "$OUT/compare.txt"

G_PEAK="$(hwm_kb "$GPID")"; P_PEAK="$(hwm_kb "$PPID_")"
COLD="$(python3 "$HERE/coldstart.py" "$BIN" 10)"
{
  echo
  printf '%-66s %12s %12s %7s  %s\n' "server memory" "docker-reg" "gantry" "B/A" "unit"
  python3 - "$P_IDLE" "$G_IDLE" "$P_PEAK" "$G_PEAK" <<'PY'
import sys
pi, gi, pp, gp = (int(x) / 1024 for x in sys.argv[1:])
print("%-66s %12.1f %12.1f %7.2f  %s" % ("RSS idle (after start)", pi, gi, gi / pi, "MiB"))
print("%-66s %12.1f %12.1f %7.2f  %s" % ("RSS peak during the benchmark (VmHWM)", pp, gp, gp / pp, "MiB"))
PY
  echo "$COLD"
} | tee -a "$OUT/compare.txt"
echo "# results in $OUT" >&2
