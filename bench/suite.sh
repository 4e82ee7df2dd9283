#!/usr/bin/env bash
# The benchmark suite: the same workloads, in one invocation, on
#   plain      a directory on the disk beneath everything else
#   bindfs     a FUSE passthrough of a directory (the FUSE baseline)
#   gocryptfs  an encrypted FUSE filesystem (the encrypted reference)
#   dfs        a one-node dfs mount (R = 1)
# and, for dfs alone, the write with three nodes and R = 3 and a read
# served wholly by peers. Prints one table (each figure, and its ratio to
# bindfs) plus every dfs node's peak RSS, and writes the same as JSON.
#
#   bench/suite.sh [--json FILE] [--quick]
#   SIZE_MIB=1024 RAND_MIB=256 FILES=10000 GIT_FILES=3000 RUNTIME=10 DIR=/var/tmp
#
# Needs root (drop_caches, mounts), fio, bindfs, gocryptfs and git
# (scripts/install-deps.sh --bench installs them). Not a test: figures
# depend on the machine; the ratios from one run are what to compare.
set -euo pipefail
cd "$(dirname "$0")/.."
JSON_OUT=suite.json
SIZE_MIB=${SIZE_MIB:-1024}
RAND_MIB=${RAND_MIB:-256}
FILES=${FILES:-10000}
GIT_FILES=${GIT_FILES:-3000}
RUNTIME=${RUNTIME:-10}
while [ $# -gt 0 ]; do
  case "$1" in
    --json) JSON_OUT=$2; shift 2 ;;
    --quick) SIZE_MIB=64; RAND_MIB=32; FILES=500; GIT_FILES=200; RUNTIME=2; shift ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "suite.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
BIN=$(realpath "${BUILD_DIR:-build}/bin")
for p in dfs dfsd dfsmount; do
  [ -x "$BIN/$p" ] || { echo "suite.sh: build first (missing $BIN/$p)" >&2; exit 1; }
done
for t in fio bindfs gocryptfs git; do
  command -v "$t" >/dev/null || { echo "suite.sh: $t is missing (scripts/install-deps.sh --bench)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "suite.sh: needs root (drop_caches, mounts)" >&2; exit 1; }

work=$(mktemp -d "${DIR:-/var/tmp}/dfs-suite-XXXXXX")
mounts=()
declare -A pid
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for m in "${mounts[@]}"; do
    mountpoint -q "$m" && { fusermount3 -u "$m" 2>/dev/null || umount "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null || true; }
  done
  for p in "${pid[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pid[@]}"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { echo "suite: $*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.3f", b - a}'; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
hwm_mib() { awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo 0; }
wait_mounted() {
  for _ in $(seq 200); do mountpoint -q "$1" && return; sleep 0.05; done
  echo "suite: $1 did not mount" >&2; exit 1
}

"$BIN/dfs" keygen "$work/net.key" >/dev/null 2>&1
"$BIN/dfs" keygen "$work/vol.key" >/dev/null 2>&1

# start_dfs NAME MOUNTPOINT REPLICAS [PEER]: a dfsmount node in the background.
start_dfs() {
  mkdir -p "$2"
  "$BIN/dfsmount" "$2" -f --data "$work/node-$1" --listen 127.0.0.1:0 --replicas "$3" \
    --network-key "$work/net.key" --key "$work/vol.key" ${4:+--peer "$4"} \
    2>>"$work/node-$1.log" &
  pid[$1]=$!
  mounts+=("$2")
  wait_mounted "$2"
}
stop_dfs() {  # NAME MOUNTPOINT
  fusermount3 -u "$2"
  wait "${pid[$1]}" 2>/dev/null || true
  unset "pid[$1]"
}
listen_of() {
  "$BIN/dfs" --data "$work/node-$1" status --json | sed -n 's/.*"listen": "\(.*\)".*/\1/p'
}

# --- the filesystems -------------------------------------------------------
setup_fs() {  # NAME -> sets FS_DIR
  case "$1" in
    plain) mkdir -p "$work/plain"; FS_DIR=$work/plain ;;
    bindfs)
      mkdir -p "$work/bind-src" "$work/bind"
      # libfuse 2 underneath: big_writes, or every write is cut to 4 KiB.
      bindfs -o big_writes "$work/bind-src" "$work/bind"; mounts+=("$work/bind"); FS_DIR=$work/bind ;;
    gocryptfs)
      mkdir -p "$work/gc-cipher" "$work/gc"
      gocryptfs -q -init -extpass "echo dfs-suite" -scryptn 10 "$work/gc-cipher" >/dev/null
      gocryptfs -q -nosyslog -extpass "echo dfs-suite" "$work/gc-cipher" "$work/gc"
      mounts+=("$work/gc"); FS_DIR=$work/gc ;;
    dfs) start_dfs solo "$work/dfs" 1; FS_DIR=$work/dfs ;;
  esac
}
teardown_fs() {  # NAME
  case "$1" in
    plain) rm -rf "$work/plain" ;;
    bindfs) fusermount3 -u "$work/bind"; rm -rf "$work/bind-src" ;;
    gocryptfs) fusermount3 -u "$work/gc"; rm -rf "$work/gc-cipher" ;;
    dfs) rss[solo]=$(hwm_mib "${pid[solo]}"); stop_dfs solo "$work/dfs"; rm -rf "$work/node-solo" ;;
  esac
}

# --- the workloads (each prints one number) --------------------------------
FIO=(fio --ioengine=psync --numjobs=1 --output-format=json)
# The first value of a field in fio's JSON: the read section comes first.
fio_field() { awk -F: -v k="\"$1\"" '$1 ~ k {gsub(/[ ,]/, "", $2); print $2; exit}'; }
seq_write() {  # DIR -> MiB/s, wall time including the final fsync
  local t0; t0=$(now)
  "${FIO[@]}" --name=seq --directory="$1" --filename=seq.bin --rw=write --bs=1M \
    --size="${SIZE_MIB}M" --end_fsync=1 >/dev/null
  awk -v mib="$SIZE_MIB" -v s="$(elapsed "$t0")" 'BEGIN {printf "%.1f", mib / s}'
}
seq_read() {  # DIR -> MiB/s from cold caches (fio's figure)
  drop_caches
  "${FIO[@]}" --name=seq --directory="$1" --filename=seq.bin --rw=read --bs=1M \
    --size="${SIZE_MIB}M" | fio_field bw_bytes | awk '{printf "%.1f", $1 / 1048576}'
}
rand_read() {  # DIR -> 4 KiB random read IOPS from cold caches
  "${FIO[@]}" --name=rand --directory="$1" --filename=rand.bin --rw=write --bs=1M \
    --size="${RAND_MIB}M" --end_fsync=1 >/dev/null
  drop_caches
  "${FIO[@]}" --name=rand --directory="$1" --filename=rand.bin --rw=randread --bs=4k \
    --size="${RAND_MIB}M" --runtime="$RUNTIME" --time_based | fio_field iops |
    awk '{printf "%.0f", $1}'
}
create_files() {  # DIR -> seconds to create FILES small files
  mkdir "$1/small"
  local t0; t0=$(now)
  (cd "$1/small" && for i in $(seq "$FILES"); do echo "small file $i" > "f$i"; done)
  elapsed "$t0"
}
list_files() {  # DIR -> seconds for ls -l of them, cold
  drop_caches
  local t0; t0=$(now)
  ls -l "$1/small" >/dev/null
  elapsed "$t0"
}
remove_files() {  # DIR -> seconds for rm -r of them
  local t0; t0=$(now)
  rm -r "$1/small"
  elapsed "$t0"
}
git_clone() {  # DIR -> seconds to clone the local repository
  local t0; t0=$(now)
  git clone -q --no-hardlinks "$work/gitsrc" "$1/clone"
  elapsed "$t0"
}

log "making a local git repository of $GIT_FILES files"
mkdir -p "$work/gitsrc"
(
  cd "$work/gitsrc"
  git init -q
  for i in $(seq "$GIT_FILES"); do
    d="dir$((i % 50))"
    mkdir -p "$d"
    printf 'file %d\n%s\n' "$i" "$(head -c 600 /dev/urandom | base64 -w 76)" > "$d/file$i.txt"
  done
  git add -A
  git -c user.name=suite -c user.email=suite@dfs.invalid commit -q -m "a few thousand files"
)

WORKLOADS=(seq_write seq_read rand_read create_files list_files remove_files git_clone)
FILESYSTEMS=(plain bindfs gocryptfs dfs)
declare -A result rss
for fs in "${FILESYSTEMS[@]}"; do
  log "$fs"
  setup_fs "$fs"
  for w in "${WORKLOADS[@]}"; do
    result[$fs.$w]=$("$w" "$FS_DIR")
    log "  $w: ${result[$fs.$w]}"
  done
  teardown_fs "$fs"
done

log "dfs with three nodes, R = 3"
start_dfs a "$work/mnt-a" 3
peer=$(listen_of a)
start_dfs b "$work/mnt-b" 3 "$peer"
start_dfs c "$work/mnt-c" 3 "$peer"
for _ in $(seq 200); do
  [ "$("$BIN/dfs" --data "$work/node-a" peers --json | grep -c '"alive": true')" = 2 ] && break
  sleep 0.1
done
sleep 3  # let the first repair pass (membership settled) go by
result[dfs3.seq_write]=$(seq_write "$work/mnt-a")
log "  seq_write R=3: ${result[dfs3.seq_write]}"
# Node c loses its chunks (not its tree): every chunk of a read through its
# mount comes from a or b. Back within the dead time, no repair refills it.
stop_dfs c "$work/mnt-c"
rm -rf "$work/node-c/chunks"
start_dfs c "$work/mnt-c" 3 "$peer"
for _ in $(seq 200); do [ -f "$work/mnt-c/seq.bin" ] && break; sleep 0.1; done
drop_caches
t0=$(now)
cat "$work/mnt-c/seq.bin" >/dev/null
result[dfs3.peer_read]=$(awk -v mib="$SIZE_MIB" -v s="$(elapsed "$t0")" 'BEGIN {printf "%.1f", mib / s}')
log "  read from peers: ${result[dfs3.peer_read]}"
for n in a b c; do rss[$n]=$(hwm_mib "${pid[$n]}"); done
for n in a b c; do stop_dfs "$n" "$work/mnt-$n"; done

# --- the table and the JSON --------------------------------------------------
declare -A label=([seq_write]="seq write ${SIZE_MIB} MiB (MiB/s)" [seq_read]="seq read, cold (MiB/s)"
  [rand_read]="4 KiB random read (IOPS)" [create_files]="create ${FILES} files (s)"
  [list_files]="ls -l ${FILES}, cold (s)" [remove_files]="rm -r ${FILES} (s)"
  [git_clone]="git clone ${GIT_FILES} files (s)")
declare -A higher_better=([seq_write]=1 [seq_read]=1 [rand_read]=1)
ratio() {  # WORKLOAD FS BASE_FS -> speed of FS relative to BASE_FS
  awk -v a="${result[$2.$1]}" -v b="${result[$3.$1]}" -v hb="${higher_better[$1]:-0}" \
    'BEGIN {if (a <= 0 || b <= 0) print "-"; else printf "%.2f", hb ? a / b : b / a}'
}
{
  printf "%-30s %10s %10s %10s %10s %9s %9s\n" workload plain bindfs gocryptfs dfs "dfs/bindfs" "dfs/plain"
  for w in "${WORKLOADS[@]}"; do
    printf "%-30s %10s %10s %10s %10s %8sx %8sx\n" "${label[$w]}" "${result[plain.$w]}" \
      "${result[bindfs.$w]}" "${result[gocryptfs.$w]}" "${result[dfs.$w]}" \
      "$(ratio "$w" dfs bindfs)" "$(ratio "$w" dfs plain)"
  done
  echo
  printf "dfs seq write vs gocryptfs: %sx   dfs 3 nodes R=3: seq write %s MiB/s, read wholly from peers %s MiB/s\n" \
    "$(ratio seq_write dfs gocryptfs)" "${result[dfs3.seq_write]}" "${result[dfs3.peer_read]}"
  printf "dfs peak RSS (MiB): one node %s; three nodes a %s, b %s, c %s (c restarted before its read)\n" \
    "${rss[solo]}" "${rss[a]}" "${rss[b]}" "${rss[c]}"
  echo "(ratios are speed relative to the other column: > 1 is faster; higher is better for every ratio)"
}

{
  echo "{"
  echo "  \"date\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\","
  echo "  \"params\": {\"size_mib\": $SIZE_MIB, \"rand_mib\": $RAND_MIB, \"files\": $FILES, \"git_files\": $GIT_FILES, \"runtime_s\": $RUNTIME},"
  echo "  \"results\": {"
  first=1
  for fs in "${FILESYSTEMS[@]}"; do
    [ $first = 1 ] || echo ","
    first=0
    printf '    "%s": {' "$fs"
    sep=""
    for w in "${WORKLOADS[@]}"; do printf '%s"%s": %s' "$sep" "$w" "${result[$fs.$w]}"; sep=", "; done
    printf '}'
  done
  echo ","
  printf '    "dfs_3_nodes_r3": {"seq_write": %s, "peer_read": %s}\n' "${result[dfs3.seq_write]}" "${result[dfs3.peer_read]}"
  echo "  },"
  echo "  \"units\": {\"seq_write\": \"MiB/s\", \"seq_read\": \"MiB/s\", \"rand_read\": \"IOPS\", \"create_files\": \"s\", \"list_files\": \"s\", \"remove_files\": \"s\", \"git_clone\": \"s\", \"peer_read\": \"MiB/s\"},"
  printf '  "dfs_peak_rss_mib": {"one_node": %s, "a": %s, "b": %s, "c": %s}\n' "${rss[solo]}" "${rss[a]}" "${rss[b]}" "${rss[c]}"
  echo "}"
} > "$JSON_OUT"
log "JSON written to $JSON_OUT"
