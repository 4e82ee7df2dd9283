#!/usr/bin/env bash
# The real thing on one machine: install what is missing, build, start three
# local nodes (A and B mount the volume, C is a keyless storage peer that
# holds sealed chunks it cannot read), copy a file in through A's mount,
# read it back through B's, print `dfs status`, and unmount. Everything
# lives under a scratch directory; the mounts are unmounted and the nodes
# stopped on every way out, Ctrl-C included.
#
#   scripts/quickstart.sh                 (installs and builds first)
#   DFS_DEMO_SKIP_BUILD=1 BUILD_DIR=build scripts/quickstart.sh
#   DFS_DEMO_MIB=64                       size of the file copied (default 64)
#   DFS_DEMO_PAUSE=120                    keep the mounts up that many seconds
#                                         to look around before cleaning up
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${DFS_DEMO_SKIP_BUILD:-}" ]; then
  scripts/install-deps.sh
  scripts/build.sh
fi
BIN=$(realpath "${BUILD_DIR:-build}/bin")
for p in dfs dfsd dfsmount; do
  [ -x "$BIN/$p" ] || { echo "quickstart: $BIN/$p is missing (build first)" >&2; exit 1; }
done
MIB=${DFS_DEMO_MIB:-64}

scratch=$(mktemp -d /tmp/dfs-demo-XXXXXX)
pids=()
mounts=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for m in "${mounts[@]}"; do
    if mountpoint -q "$m"; then
      fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null || true
    fi
  done
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$scratch"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step() { printf '\n+ %s\n' "$*"; }
fail() { echo "quickstart: $*" >&2; for n in a b c; do [ -f "$scratch/$n.log" ] && tail -5 "$scratch/$n.log" >&2; done; exit 1; }

"$BIN/dfs" keygen "$scratch/net.key" >/dev/null 2>&1
"$BIN/dfs" keygen "$scratch/volume.key" >/dev/null 2>&1

# A node's listening address, once its control socket answers.
listen_of() {
  for _ in $(seq 100); do
    if addr=$("$BIN/dfs" --data "$scratch/$1" status --json 2>/dev/null | sed -n 's/.*"listen": "\(.*\)".*/\1/p') && [ -n "$addr" ]; then
      echo "$addr"
      return
    fi
    sleep 0.1
  done
  fail "node $1 did not start"
}
wait_mounted() {
  for _ in $(seq 100); do mountpoint -q "$1" && return; sleep 0.1; done
  fail "$1 was not mounted"
}
alive_peers() { "$BIN/dfs" --data "$scratch/$1" peers --json | grep -c '"alive": true' || true; }

step "node A: dfsmount $scratch/mnt-a (holds the volume key)"
mkdir -p "$scratch/mnt-a" "$scratch/mnt-b"
"$BIN/dfsmount" "$scratch/mnt-a" -f --data "$scratch/a" --listen 127.0.0.1:0 \
  --network-key "$scratch/net.key" --key "$scratch/volume.key" 2>"$scratch/a.log" &
pids+=($!)
mounts+=("$scratch/mnt-a")
wait_mounted "$scratch/mnt-a"
a_addr=$(listen_of a)
echo "  listening on $a_addr"

step "node C: dfsd without --key (a storage peer: sealed chunks only)"
"$BIN/dfsd" --data "$scratch/c" --listen 127.0.0.1:0 --network-key "$scratch/net.key" \
  --peer "$a_addr" 2>"$scratch/c.log" &
pids+=($!)
echo "  listening on $(listen_of c)"

step "node B: dfsmount $scratch/mnt-b --peer $a_addr"
"$BIN/dfsmount" "$scratch/mnt-b" -f --data "$scratch/b" --listen 127.0.0.1:0 \
  --network-key "$scratch/net.key" --key "$scratch/volume.key" --peer "$a_addr" 2>"$scratch/b.log" &
pids+=($!)
mounts+=("$scratch/mnt-b")
wait_mounted "$scratch/mnt-b"
listen_of b >/dev/null
for _ in $(seq 200); do
  [ "$(alive_peers a)" = 2 ] && [ "$(alive_peers b)" = 2 ] && [ "$(alive_peers c)" = 2 ] && break
  sleep 0.1
done
[ "$(alive_peers a)" = 2 ] || fail "the three nodes did not find each other"
echo "  three nodes in one mesh"

step "cp sample.bin ($MIB MiB) into A's mount"
head -c $((MIB << 20)) /dev/urandom > "$scratch/sample.bin"
mkdir -p "$scratch/mnt-a/demo"
cp "$scratch/sample.bin" "$scratch/mnt-a/demo/sample.bin"
echo "hello from node A" > "$scratch/mnt-a/demo/hello.txt"
ls -l "$scratch/mnt-a/demo"

step "read them back through B's mount"
for _ in $(seq 200); do [ -f "$scratch/mnt-b/demo/sample.bin" ] && [ -f "$scratch/mnt-b/demo/hello.txt" ] && break; sleep 0.1; done
cat "$scratch/mnt-b/demo/hello.txt"
cmp "$scratch/sample.bin" "$scratch/mnt-b/demo/sample.bin" || fail "the bytes read through B differ"
echo "  sample.bin: bytes identical through B"

step "dfs status (node A)"
"$BIN/dfs" --data "$scratch/a" status
step "dfs status (node C, keyless)"
"$BIN/dfs" --data "$scratch/c" status
if grep -rqF "hello from node A" "$scratch/c"; then fail "plaintext found in C's data directory"; fi
echo "  no plaintext in C's data directory"

if [ -n "${DFS_DEMO_PAUSE:-}" ]; then
  step "mounted at $scratch/mnt-a and $scratch/mnt-b for ${DFS_DEMO_PAUSE}s (Ctrl-C ends it)"
  sleep "$DFS_DEMO_PAUSE" &
  wait $! || true
fi

step "unmount and stop"
for m in "${mounts[@]}"; do fusermount3 -u "$m"; done
for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
pids=()
mounts=()
echo "  done: nothing left mounted or running"
