#!/usr/bin/env bash
# Flat memory with a huge layer: streams a SIZE blob (default 10 GiB) into a fresh
# release build of Gantry as one streamed PATCH plus the finishing PUT, downloads it,
# and reports throughput and the server's peak RSS (VmHWM) before and after.
# Usage: bench/big-blob.sh [SIZE_GIB]          Needs ~SIZE free on the temp disk.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GIB="${1:-10}"
(cd "$ROOT" && cargo build --release -q -p gantry)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/gantry"
DIR="$(mktemp -d -t gantry-bigblob.XXXXXX)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$DIR/data" >"$DIR/stdout" 2>"$DIR/stderr" &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -rf "$DIR"' EXIT
for _ in $(seq 1 100); do grep -q 'listening on' "$DIR/stdout" 2>/dev/null && break; sleep 0.1; done
TOKEN="$(awk '/admin token:/ {print $4}' "$DIR/stdout")"
hwm() { awk '/^VmHWM/ {printf "%.1f", $2/1024}' "/proc/$PID/status"; }
echo "# $GIB GiB of zeros; digest computed first" >&2
DIGEST="sha256:$(head -c "${GIB}G" /dev/zero | openssl dgst -sha256 -r | awk '{print $1}')"
echo "peak RSS after start:    $(hwm) MiB"
LOC="$(curl -s -u "admin:$TOKEN" -D - -o /dev/null -X POST "http://127.0.0.1:$PORT/v2/big/layer/blobs/uploads/" | awk -F': ' 'tolower($1)=="location"{print $2}' | tr -d '\r')"
T0=$(date +%s%N)
head -c "${GIB}G" /dev/zero | curl -s -f -o /dev/null -u "admin:$TOKEN" -X PATCH -H 'Content-Type: application/octet-stream' -T - "http://127.0.0.1:$PORT$LOC"
curl -s -f -o /dev/null -u "admin:$TOKEN" -X PUT "http://127.0.0.1:$PORT$LOC?digest=$DIGEST"
T1=$(date +%s%N)
echo "upload:   $(python3 -c "print('%.0f' % ($GIB*1073741824/(($T1-$T0)/1e9)/1e6))") MB/s; peak RSS $(hwm) MiB"
T0=$(date +%s%N)
GOT="sha256:$(curl -s -f -u "admin:$TOKEN" "http://127.0.0.1:$PORT/v2/big/layer/blobs/$DIGEST" | openssl dgst -sha256 -r | awk '{print $1}')"
T1=$(date +%s%N)
[ "$GOT" = "$DIGEST" ] || { echo "downloaded digest $GOT != $DIGEST" >&2; exit 1; }
echo "download: $(python3 -c "print('%.0f' % ($GIB*1073741824/(($T1-$T0)/1e9)/1e6))") MB/s (through openssl sha256); peak RSS $(hwm) MiB"
