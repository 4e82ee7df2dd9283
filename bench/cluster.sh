#!/usr/bin/env bash
# Network benchmark: three dfsd nodes on 127.0.0.1 sharing this machine's
# CPUs and disk. Times a put of one file with R = 1 and with R = 3, a get
# on the writer (every chunk local) and a get on a node whose chunks were
# removed (every chunk fetched from peers), beside raw loopback TCP
# throughput of the same bytes measured in the same run, and prints the
# ratios and every node's peak RSS. Not a test: the ratios are what to read.
#
#   bench/cluster.sh [SIZE_MIB]          (default 1024)
#   BUILD_DIR=build DIR=/var/tmp bench/cluster.sh 256
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
BIN=${BUILD_DIR:-build}/bin
for p in dfs dfsd loopback_copy; do
  [ -x "$BIN/$p" ] || { echo "build first: scripts/build.sh (missing $BIN/$p)" >&2; exit 1; }
done
DFS=$(realpath "$BIN/dfs"); DFSD=$(realpath "$BIN/dfsd"); LOOP=$(realpath "$BIN/loopback_copy")
work=$(mktemp -d "${DIR:-/var/tmp}/dfs-cluster-XXXXXX")
declare -A pid
cleanup() {
  for p in "${pid[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "writing a ${SIZE_MIB} MiB random file in $work" >&2
head -c $((SIZE_MIB << 20)) /dev/urandom > "$work/in.bin"
"$DFS" keygen "$work/net.key" 2>/dev/null
"$DFS" keygen "$work/vol.key" 2>/dev/null

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b - a}'; }
hwm_mib() { awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }

start() {  # name port replicas [peer]
  "$DFSD" --data "$work/$1" --listen "127.0.0.1:$2" --network-key "$work/net.key" \
    --key "$work/vol.key" --replicas "$3" ${4:+--peer "$4"} 2>>"$work/$1.log" &
  pid[$1]=$!
  for _ in $(seq 100); do [ -S "$work/$1/control.sock" ] && return; sleep 0.05; done
  echo "node $1 did not start:" >&2; cat "$work/$1.log" >&2; exit 1
}
stop() { kill -TERM "${pid[$1]}"; wait "${pid[$1]}" || true; unset "pid[$1]"; }
alive() { "$DFS" --data "$work/$1" peers --json | grep -c '"alive": true' || true; }
wait_mesh() {
  for _ in $(seq 200); do
    [ "$(alive a)" = 2 ] && [ "$(alive b)" = 2 ] && [ "$(alive c)" = 2 ] && return
    sleep 0.1
  done
  echo "the mesh did not form" >&2; exit 1
}
# A node's repair loop is idle once a pass ran and made every copy. A pass
# copies every chunk a member lacks: one running during a timed put or get
# would compete with it (a restarted node without chunks is sent them all).
repair_idle() {
  "$DFS" --data "$work/$1" status --json | awk '
    /"repair": \{/ {r = 1}
    r && /"passes":/ {p = $2 + 0}
    r && /"running": true/ {run = 1}
    r && /"last_failed":/ {f = $2 + 0}
    r && /^  \}/ {r = 0}
    END {exit !(p >= 1 && !run && f == 0)}'
}
wait_repaired() {
  for _ in $(seq 1200); do
    repair_idle a && repair_idle b && repair_idle c && return
    sleep 0.1
  done
  echo "the repair passes did not settle" >&2; exit 1
}
timed() { local t0; t0=$(now); "$@" >/dev/null; secs "$t0" "$(now)"; }
# CPU seconds (user + system, all threads) a process has used so far.
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; }
nodes_cpu() { local t=0 n; for n in a b c; do t=$(awk -v a="$t" -v b="$(cpu_of "${pid[$n]}")" 'BEGIN {print a + b}'); done; echo "$t"; }
# Times a get as `timed` does and sets cpu_s to the CPU seconds it cost:
# every node's plus the dfs client's own (what /usr/bin/time reports).
timed_get() {
  local c0 t0 tf; c0=$(nodes_cpu); tf=$(mktemp); t0=$(now)
  /usr/bin/time -f "%U %S" -o "$tf" "$DFS" --data "$work/$1" get big - >/dev/null
  wall_s=$(secs "$t0" "$(now)")
  cpu_s=$(awk -v c0="$c0" -v c1="$(nodes_cpu)" '{printf "%.2f", c1 - c0 + $1 + $2}' "$tf")
  rm -f "$tf"
}

loop_s=$("$LOOP" "$work/in.bin" | awk '{print $1}')

declare -A put rss
for r in 1 3; do
  rm -rf "$work/a" "$work/b" "$work/c"
  start a 4601 "$r"; start b 4602 "$r" 127.0.0.1:4601; start c 4603 "$r" 127.0.0.1:4601
  wait_mesh; wait_repaired
  sync
  put[$r]=$(timed "$DFS" --data "$work/a" put big "$work/in.bin")
  if [ "$r" = 3 ]; then
    wait_repaired
    timed_get a; local_get=$wall_s; local_cpu=$cpu_s
    # Node c loses its chunks (not its index): every chunk comes from peers.
    stop c; rm -rf "$work/c/chunks"; start c 4603 3 127.0.0.1:4601; wait_mesh
    # c's first pass (over no chunks) done; a and b knew c before: no pass
    # of theirs refills it, so every chunk of this get comes from them.
    wait_repaired
    timed_get c; peer_get=$wall_s; peer_cpu=$cpu_s
    held=$("$DFS" --data "$work/c" status --json | awk '/^  "chunks":/ {print $2 + 0}')
    [ "$held" = 0 ] || echo "warning: c held $held chunks after its get (not all from peers)" >&2
    "$DFS" --data "$work/c" get big "$work/out.bin" >/dev/null
    cmp -s "$work/in.bin" "$work/out.bin" || { echo "bytes differ!" >&2; exit 1; }
    rm -f "$work/out.bin"
  fi
  for n in a b c; do rss[$r$n]=$(hwm_mib "${pid[$n]}"); done
  for n in a b c; do stop "$n"; done
done

awk -v mib="$SIZE_MIB" -v loop="$loop_s" -v p1="${put[1]}" -v p3="${put[3]}" \
    -v lg="$local_get" -v pg="$peer_get" -v lc="$local_cpu" -v pc="$peer_cpu" \
    -v cores="$(nproc)" 'BEGIN {
  printf "%-36s %9s %9s %s\n", "operation (" mib " MiB, 3 local nodes)", "seconds", "MiB/s", "ratio"
  printf "%-36s %9.2f %9.0f %s\n", "raw loopback TCP copy", loop, mib/loop, "1.00 (baseline)"
  printf "%-36s %9.2f %9.0f %.2fx loopback\n", "put, R = 1", p1, mib/p1, loop/p1
  printf "%-36s %9.2f %9.0f %.2fx loopback, %.2fx put R = 1\n", "put, R = 3", p3, mib/p3, loop/p3, p1/p3
  printf "%-36s %9.2f %9.0f %.2fx loopback\n", "get, every chunk local", lg, mib/lg, loop/lg
  printf "%-36s %9.2f %9.0f %.2fx loopback, %.2fx local get\n", "get, every chunk from peers", pg, mib/pg, loop/pg, lg/pg
  # With every core busy a get cannot take less than its CPU time / cores:
  # the best ratio this CPU cost allows, whatever the scheduling.
  best = pc / cores > lg ? lg / (pc / cores) : 1
  printf "CPU seconds (all nodes + client): local get %.2f, peer get %.2f (%.2fx);\n", lc, pc, pc / lc
  printf "  on %d cores the peer get takes at least %.2f s: at best %.2fx local get\n", cores, pc / cores, best
}'
printf "peak RSS (MiB):  R=1: a %s, b %s, c %s   R=3: a %s, b %s, c %s (c restarted before its get)\n" \
  "${rss[1a]}" "${rss[1b]}" "${rss[1c]}" "${rss[3a]}" "${rss[3b]}" "${rss[3c]}"
