#!/usr/bin/env bash
# Times `dfs put` and `dfs get` of one file against `cp` (+ sync) of the same
# file on the same disk, `get` to /dev/null against the unseal
# microbenchmark (build/bin/core_bench) run in the same invocation, and
# prints ratios and peak RSS. Not a test: figures depend on the machine; the
# ratios are what to compare.
#
#   bench/put_get.sh [SIZE_MIB] [RUNS]      (default 1024 MiB, 3 runs; medians)
#   BUILD_DIR=build DIR=/var/tmp bench/put_get.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
RUNS=${2:-3}
DFS=${BUILD_DIR:-build}/bin/dfs
[ -x "$DFS" ] || { echo "build first: scripts/build.sh" >&2; exit 1; }
DFS=$(realpath "$DFS")
BASE=${DIR:-/var/tmp}
work=$(mktemp -d "$BASE/dfs-bench-XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "writing a ${SIZE_MIB} MiB random file in $work" >&2
head -c $((SIZE_MIB << 20)) /dev/urandom > "$work/in.bin"
"$DFS" keygen "$work/key" 2>/dev/null

# Runs a command, prints "seconds max_rss_kib".
measure() {
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>"$work/err" || {
    cat "$work/err" >&2
    exit 1
  }
  cat "$work/time"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

: > "$work/cp" ; : > "$work/put" ; : > "$work/get" ; : > "$work/getnull"
for i in $(seq "$RUNS"); do
  # Each run puts into a store of its own; the old one is removed only at
  # exit, so that no run pays for ext4 skipping inodes freed seconds ago.
  data="$work/data$i"
  rm -f "$work/copy" "$work/out.bin"; sync
  measure sh -c "cp '$work/in.bin' '$work/copy' && sync '$work/copy'" | awk '{print $1}' >> "$work/cp"
  rm -f "$work/copy"; sync
  measure "$DFS" --data "$data" --key "$work/key" put big "$work/in.bin" >> "$work/put"
  sync
  measure "$DFS" --data "$data" --key "$work/key" get big "$work/out.bin" >> "$work/get"
  cmp -s "$work/in.bin" "$work/out.bin" || { echo "bytes differ!" >&2; exit 1; }
  /usr/bin/time -f "%e %M" -o "$work/time" "$DFS" --data "$data" --key "$work/key" get big > /dev/null
  cat "$work/time" >> "$work/getnull"
  sleep 2  # let writeback settle between runs
done

# Unseal and chunker throughput on this machine, now (bytes/s, medians).
BENCH=$(dirname "$DFS")/core_bench
unseal_gbs=0; chunk_gbs=0; cuts_gbs=0; sha_gbs=0
if [ -x "$BENCH" ]; then
  "$BENCH" --benchmark_filter='BM_(Unseal|Chunker|ChunkerCuts|Sha256)$' --benchmark_repetitions=3 \
    --benchmark_report_aggregates_only=true --benchmark_format=csv 2>/dev/null > "$work/micro.csv"
  rate() { grep "^\"$1_median\"" "$work/micro.csv" | awk -F, '{print $6/1e9}'; }
  unseal_gbs=$(rate BM_Unseal); chunk_gbs=$(rate BM_Chunker); cuts_gbs=$(rate BM_ChunkerCuts)
  sha_gbs=$(rate BM_Sha256)
fi

cp_s=$(median < "$work/cp")
put_s=$(awk '{print $1}' "$work/put" | median)
get_s=$(awk '{print $1}' "$work/get" | median)
put_rss=$(awk '{print $2}' "$work/put" | sort -n | tail -1)
get_rss=$(awk '{print $2}' "$work/get" | sort -n | tail -1)
getnull_s=$(awk '{print $1}' "$work/getnull" | median)
awk -v mib="$SIZE_MIB" -v cp="$cp_s" -v put="$put_s" -v get="$get_s" \
    -v prss="$put_rss" -v grss="$get_rss" -v runs="$RUNS" -v gn="$getnull_s" \
     -v unseal="$unseal_gbs" -v chunk="$chunk_gbs" -v cuts="$cuts_gbs" -v sha="$sha_gbs" 'BEGIN {
  printf "%-22s %9s %10s %12s %14s\n", "operation (" mib " MiB)", "seconds", "MiB/s", "ratio to cp", "peak RSS MiB"
  printf "%-22s %9.2f %10.0f %12s %14s\n", "cp + sync", cp, mib/cp, "1.00", "-"
  printf "%-22s %9.2f %10.0f %12.2f %14.1f\n", "dfs put", put, mib/put, cp/put, prss/1024
  printf "%-22s %9.2f %10.0f %12.2f %14.1f\n", "dfs get (fsync)", get, mib/get, cp/get, grss/1024
  gnr = mib * 1048576 / gn / 1e9
  printf "%-22s %9.2f %10.0f %12s %14s\n", "dfs get > /dev/null", gn, mib/gn, "-", "-"
  if (unseal > 0) {
    printf "\nget > /dev/null: %.2f GB/s = %.2fx the unseal microbenchmark (%.2f GB/s)\n", gnr, gnr/unseal, unseal
    printf "chunker (cut search): %.2f GB/s = %.2fx plain SHA-256 (%.2f GB/s)\n", cuts, cuts/sha, sha
    printf "chunk stream (reads into chunk buffers + cuts): %.2f GB/s = %.2fx plain SHA-256\n", chunk, chunk/sha
  }
  printf "(medians of %d runs)\n", runs
}'
