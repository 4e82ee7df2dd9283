#!/usr/bin/env bash
# The mount's first targets, measured against the plain directory beneath
# it in the same invocation (medians of RUNS): `cp` of one file into the
# mount through close (plain: cp + sync), `cat` of it back with cold caches
# (the mount is remounted and the kernel's caches dropped), `ls -l` of a
# 10,000-entry directory (cold the same way), and creating then removing
# 10,000 empty files. One node, R = 1. Needs root (mounts, drop_caches).
#
#   bench/mount.sh [SIZE_MIB] [RUNS]        (default 1024 MiB, 3 runs)
#   BUILD_DIR=build DIR=/var/tmp bench/mount.sh 256 1
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
RUNS=${2:-3}
BIN=${BUILD_DIR:-build}/bin
for p in dfs dfsmount; do
  [ -x "$BIN/$p" ] || { echo "build first: scripts/build.sh (missing $BIN/$p)" >&2; exit 1; }
done
DFS=$(realpath "$BIN/dfs"); MOUNT=$(realpath "$BIN/dfsmount")
work=$(mktemp -d "${DIR:-/var/tmp}/dfs-mountbench-XXXXXX")
mnt="$work/mnt"
mkdir -p "$mnt"
cleanup() {
  fusermount3 -u "$mnt" 2>/dev/null || fusermount3 -uz "$mnt" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$DFS" keygen "$work/nk" 2>/dev/null
"$DFS" keygen "$work/vk" 2>/dev/null
echo "writing a ${SIZE_MIB} MiB random file in $work" >&2
head -c $((SIZE_MIB << 20)) /dev/urandom > "$work/in.bin"

# A fresh store each run, so that no run pays for ext4 skipping inodes that
# an earlier run freed seconds ago.
mount_fresh() {
  "$MOUNT" "$mnt" --data "$work/data$1" --network-key "$work/nk" --key "$work/vk" \
    --listen 127.0.0.1:0 --replicas 1 --log-level warn
}
remount() {
  fusermount3 -u "$mnt"
  "$MOUNT" "$mnt" --data "$work/data$1" --network-key "$work/nk" --key "$work/vk" \
    --listen 127.0.0.1:0 --replicas 1 --log-level warn
}
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
secs() {  # runs a command, prints its wall seconds
  local t0 t1
  t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}
median() { sort -n | awk '{a[NR]=$1} END {printf "%.3f", a[int((NR+1)/2)]}'; }
make_files() { (cd "$1" && seq -f "f%05g" 10000 | xargs touch); }

declare -A t
for i in $(seq "$RUNS"); do
  plain="$work/plain$i"; mkdir -p "$plain/many"
  mount_fresh "$i"
  cold
  cat "$work/in.bin" > /dev/null  # the source cached for both copies
  # Which copy goes first alternates: the VM's disk is the host's page
  # cache, and the host writing back the first copy's gigabyte slowed the
  # second (dfs after plain: 2.0-3.3 s; dfs alone: 1.6 s).
  cp_plain() { t[cp_plain]+="$(secs sh -c "cp '$work/in.bin' '$plain/big' && sync '$plain/big'") "; }
  cp_dfs() { t[cp_dfs]+="$(secs cp "$work/in.bin" "$mnt/big") "; }
  if [ $((i % 2)) = 1 ]; then cp_plain; cp_dfs; else cp_dfs; cp_plain; fi
  cmp -s "$work/in.bin" "$mnt/big" || { echo "bytes differ!" >&2; exit 1; }
  remount "$i"; cold
  t[cat_plain]+="$(secs cat "$plain/big") "
  t[cat_dfs]+="$(secs cat "$mnt/big") "
  mkdir "$mnt/many"
  t[create_plain]+="$(secs make_files "$plain/many") "
  t[create_dfs]+="$(secs make_files "$mnt/many") "
  remount "$i"; cold
  t[ls_plain]+="$(secs ls -l "$plain/many") "
  t[ls_dfs]+="$(secs ls -l "$mnt/many") "
  t[rm_plain]+="$(secs rm -rf "$plain/many") "
  t[rm_dfs]+="$(secs rm -rf "$mnt/many") "
  fusermount3 -u "$mnt"
  rm -rf "$plain"
done

printf '%-34s %10s %10s %8s\n' "workload" "plain s" "dfs s" "ratio"
row() {  # name, key, "speed" (plain/dfs: higher is better) or "time" (dfs/plain)
  local p d
  p=$(echo "${t[$2_plain]}" | tr ' ' '\n' | grep . | median)
  d=$(echo "${t[$2_dfs]}" | tr ' ' '\n' | grep . | median)
  if [ "$3" = speed ]; then
    printf '%-34s %10s %10s %7.2fx\n' "$1" "$p" "$d" "$(echo "$p / $d" | bc -l)"
  else
    printf '%-34s %10s %10s %7.2fx slower\n' "$1" "$p" "$d" "$(echo "$d / $p" | bc -l)"
  fi
}
row "cp ${SIZE_MIB} MiB in (plain: + sync)" cp speed
row "cat ${SIZE_MIB} MiB out, cold" cat speed
row "create 10,000 empty files" create speed
row "ls -l of 10,000 entries, cold" ls time
row "rm -rf of 10,000 files" rm speed
echo "(medians of $RUNS runs; speed ratios are plain time / dfs time)"
