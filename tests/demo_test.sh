#!/usr/bin/env bash
# The README's main command (scripts/quickstart.sh) on the built programs:
# it must copy through one mount and read through the other, and leave no
# mount, process or scratch directory behind — after a normal run and after
# a Ctrl-C in the middle.
#
#   tests/demo_test.sh BUILD_DIR
set -euo pipefail
BUILD_DIR=$(realpath "${1:-build}")
cd "$(dirname "$0")/.."
export DFS_DEMO_SKIP_BUILD=1 BUILD_DIR DFS_DEMO_MIB=16
out=$(mktemp /tmp/dfs-demo-test-XXXXXX)
trap 'rm -f "$out"' EXIT

leftovers() {  # prints what a demo left behind, if anything
  grep -E '/tmp/dfs-demo-[A-Za-z0-9]{6}/' /proc/self/mounts || true
  pgrep -af '/tmp/dfs-demo-[A-Za-z0-9]{6}/' || true
  find /tmp -maxdepth 1 -name 'dfs-demo-??????' -type d -newer "$out" || true
}

# A whole run.
scripts/quickstart.sh > "$out" 2>&1 || { cat "$out"; echo "demo failed" >&2; exit 1; }
for want in "three nodes in one mesh" "hello from node A" "bytes identical through B" \
            "keyless:  yes" "no plaintext in C's data directory" "nothing left mounted or running"; do
  grep -qF "$want" "$out" || { cat "$out"; echo "demo output lacks: $want" >&2; exit 1; }
done
left=$(leftovers)
[ -z "$left" ] || { echo "left behind after a run: $left" >&2; exit 1; }

# Interrupted while both mounts are up: SIGINT to the script, as Ctrl-C does.
: > "$out"
# A background job of a script starts with SIGINT ignored: restore it, as a
# terminal's foreground job has it.
DFS_DEMO_PAUSE=120 setsid env --default-signal=INT scripts/quickstart.sh > "$out" 2>&1 &
demo=$!
for _ in $(seq 300); do grep -qF "Ctrl-C ends it" "$out" && break; sleep 0.1; done
grep -qF "Ctrl-C ends it" "$out" || { cat "$out"; kill -KILL -- -"$demo"; echo "demo did not get going" >&2; exit 1; }
grep -E '/tmp/dfs-demo-[A-Za-z0-9]{6}/mnt-[ab] ' /proc/self/mounts | grep -c fuse | grep -qx 2 ||
  { kill -KILL -- -"$demo"; echo "the two mounts are not up during the pause" >&2; exit 1; }
kill -INT "$demo"
rc=0; wait "$demo" || rc=$?
[ "$rc" = 130 ] || { cat "$out"; echo "interrupted demo exited $rc, want 130" >&2; exit 1; }
left=$(leftovers)
[ -z "$left" ] || { echo "left behind after Ctrl-C: $left" >&2; exit 1; }
echo "demo ok"
