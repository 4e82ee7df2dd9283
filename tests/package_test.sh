#!/usr/bin/env bash
# Builds the Debian package from an existing build tree, unpacks it into a
# scratch root with dpkg -x (nothing is installed on the machine), checks its
# metadata and contents (units, man pages, completion, config), and runs the
# unpacked programs: a put/get, dfsd from a config file, real FUSE mounts
# through mount(8) -> mount.fuse3 -> dfsmount (by type, and from a scratch
# fstab with mount -T) in a private mount namespace, and the dfsmount@
# unit's command line stopped with SIGTERM.
#   tests/package_test.sh BUILD_DIR
set -euo pipefail
build=$(realpath "$1")
scratch=$(mktemp -d /tmp/dfs-pkg-XXXXXX)
root=$scratch/root
mnt=$scratch/mnt
started=()  # PIDs this script started (dfsd)

fail() { echo "FAIL: $*" >&2; exit 1; }
# PIDs of processes running the unpacked dfsmount (only ours: it lives in $scratch).
our_dfsmounts() {
  local exe
  for exe in /proc/[0-9]*/exe; do
    [[ $(readlink "$exe" 2>/dev/null) == "$root/usr/bin/dfsmount" ]] && { p=${exe#/proc/}; echo "${p%/exe}"; }
  done
  return 0
}
cleanup() {
  local p
  if mountpoint -q "$mnt" 2>/dev/null; then fusermount3 -uz "$mnt" || true; fi
  for p in "${started[@]}" $(our_dfsmounts); do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$scratch"
}
trap cleanup EXIT

(cd "$build" && cpack -G DEB -B "$scratch/out" >/dev/null)
deb=$(ls "$scratch"/out/*.deb)
echo "built $(basename "$deb")"
dpkg-deb --info "$deb" > "$scratch/info"
grep -q '^ Package: dfs' "$scratch/info"
grep -q '^ Depends:.*fuse3' "$scratch/info" || fail "missing fuse3 dependency"
grep -q '^ Depends:.*libcrypto++' "$scratch/info" || fail "missing libcrypto++ dependency"
grep -q '^ Depends:.*libisal' "$scratch/info" || fail "missing libisal (CRC32C) dependency"
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles | grep -qx /etc/dfs/dfsd.conf ||
  fail "/etc/dfs/dfsd.conf is not a conffile"
dpkg -x "$deb" "$root"
for p in dfs dfsd dfsmount; do
  test -x "$root/usr/bin/$p" || fail "missing /usr/bin/$p"
  "$root/usr/bin/$p" --help >/dev/null
done
test -f "$root/usr/share/doc/dfs/architecture.md"

# --- contents: units, config, man pages, completion --------------------------
units=(usr/lib/systemd/system/dfsd.service usr/lib/systemd/system/dfsmount@.service)
pages=(usr/share/man/man1/dfs.1 usr/share/man/man8/dfsd.8 usr/share/man/man1/dfsmount.1)
for f in "${units[@]}" "${pages[@]}" usr/share/bash-completion/completions/dfs etc/dfs/dfsd.conf \
         usr/share/doc/dfs/examples/mount.conf usr/share/doc/dfs/examples/dfsd.conf; do
  test -f "$root/$f" || fail "the package lacks /$f"
done

# Every long option of each program's --help is in its man page.
for pair in dfs:man1/dfs.1 dfsd:man8/dfsd.8 dfsmount:man1/dfsmount.1; do
  prog=${pair%%:*} page=$root/usr/share/man/${pair#*:}
  text=$(sed 's/\\-/-/g' "$page")
  for opt in $("$root/usr/bin/$prog" --help | grep -o -- '--[a-z][a-z-]*' | sort -u); do
    grep -qF -- "$opt" <<< "$text" || fail "$(basename "$page") does not document $prog $opt"
  done
done

if command -v man >/dev/null; then
  for page in "${pages[@]}"; do
    warnings=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$root/$page" 2>&1 >/dev/null)
    [[ -z $warnings ]] || fail "man -l $page: $warnings"
  done
  echo "man pages render without warnings"
else
  echo "skipped: man is not installed (man pages not rendered)"
fi

if command -v systemd-analyze >/dev/null; then
  # The units as installed, but naming the unpacked programs; the template
  # is verified as the instance for /mnt/dfs. Documentation= man pages are
  # looked up in the package.
  mkdir "$scratch/units"
  for u in "${units[@]}"; do
    sed "s|/usr/bin/|$root/usr/bin/|g" "$root/$u" > "$scratch/units/$(basename "$u")"
  done
  ln -s dfsmount@.service "$scratch/units/dfsmount@mnt-dfs.service"
  out=$(cd "$scratch/units" && MANPATH=$root/usr/share/man SYSTEMD_LOG_COLOR=0 \
        systemd-analyze verify --man=yes ./dfsd.service ./dfsmount@mnt-dfs.service 2>&1) ||
    fail "systemd-analyze verify: $out"
  if [[ -n $out ]]; then fail "systemd-analyze verify: $out"; fi
  echo "systemd-analyze verify: units ok"
else
  echo "skipped: systemd-analyze is not installed (units not verified)"
fi

# The completion offers exactly the subcommands of `dfs --help` (it reads
# them from there), the options of each level, and files where a PATH goes
# (bash-completion's helpers stubbed: it may not be installed).
complete_words() {
  bash -c '
    _init_completion() { cur=${COMP_WORDS[COMP_CWORD]}; prev=${COMP_WORDS[COMP_CWORD-1]};
                         words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD; }
    _filedir() { COMPREPLY=(FILE); }
    source "$1"; shift
    COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _dfs
    printf "%s\n" "${COMPREPLY[@]}" | sort' _ "$root/usr/share/bash-completion/completions/dfs" \
    "$root/usr/bin/dfs" "$@"
}
want=$("$root/usr/bin/dfs" --help | sed -n '/^Subcommands:/,$p' | awk 'NR > 1 && /^  [a-z]/ {print $1}' | sort)
[[ $want == *put* && $want == *ls* && $(complete_words "") == "$want" ]] || fail "completion of 'dfs ': $(complete_words "" | xargs)"
[[ $(complete_words --data /x "") == "$want" ]] || fail "completion after --data DIR"
[[ $(complete_words --d) == "--data" ]] || fail "completion of --d: $(complete_words --d | xargs)"
[[ $(complete_words --data /x --k) == "--key" ]] || fail "completion of --k"
[[ $(complete_words ls --j) == "--json" ]] || fail "completion of ls --j: $(complete_words ls --j | xargs)"
[[ $(complete_words --key k put docs/a "") == "FILE" ]] || fail "completion of put's PATH"
[[ -z $(complete_words put "") ]] || fail "completion of put's KEY offers files"
echo "bash completion ok"

# --- the unpacked programs do real work ---------------------------------------
export XDG_DATA_HOME=$scratch/data XDG_CONFIG_HOME=$scratch/config
echo "hello from the package" | "$root/usr/bin/dfs" put hello 2>/dev/null
test "$("$root/usr/bin/dfs" get hello)" = "hello from the package"

"$root/usr/bin/dfs" keygen "$scratch/network.key" >/dev/null 2>&1
"$root/usr/bin/dfs" keygen "$scratch/volume.key" >/dev/null 2>&1

# dfsd from a config file in the shipped format (comments, quoting, repeats).
sed -e "s|^data = .*|data = \"$scratch/dfsd-data\"|" -e "s|/etc/dfs/|$scratch/|" \
    -e 's|^listen = .*|listen = 127.0.0.1:0|' -e 's|^# replicas = 3|replicas = 1|' \
    "$root/etc/dfs/dfsd.conf" > "$scratch/dfsd.conf"
"$root/usr/bin/dfsd" --config "$scratch/dfsd.conf" 2>"$scratch/dfsd.log" &
started+=($!)
for _ in $(seq 100); do
  [[ -S $scratch/dfsd-data/control.sock ]] && break
  kill -0 "${started[0]}" 2>/dev/null || fail "dfsd (config file) exited: $(cat "$scratch/dfsd.log")"
  sleep 0.1
done
echo "through dfsd" | "$root/usr/bin/dfs" --data "$scratch/dfsd-data" put via/dfsd
"$root/usr/bin/dfs" --data "$scratch/dfsd-data" status --json | grep -q '"peers"' ||
  fail "dfs status through dfsd (config file): $(cat "$scratch/dfsd.log")"
kill -TERM "${started[0]}"
wait "${started[0]}" || fail "dfsd did not stop cleanly: $(cat "$scratch/dfsd.log")"
started=()
echo 'bogus-option = 1' >> "$scratch/dfsd.conf"
if timeout 20 "$root/usr/bin/dfsd" --config "$scratch/dfsd.conf" 2>/dev/null; then fail "dfsd took an unknown config key"; fi
echo "dfsd --config ok"

# --- mounts through mount(8) and mount.fuse3 -----------------------------------
skip=""
[[ $(id -u) == 0 ]] || skip="not root"
[[ -c /dev/fuse ]] || skip="no /dev/fuse"
command -v mount.fuse3 >/dev/null || skip="mount.fuse3 is not installed"
unshare -m true 2>/dev/null || skip="unshare -m is not permitted"
if [[ -n $skip ]]; then
  echo "skipped: mounts ($skip)"
  echo "package ok"
  exit 0
fi
mkdir "$mnt"
cat > "$scratch/mount.conf" <<CONF
# a scratch dfsmount config, as /etc/dfs/mount-*.conf
data = $scratch/mount-data
network-key = $scratch/network.key
key = $scratch/volume.key
listen = 127.0.0.1:0
replicas = 1
fuse-options = default_permissions
CONF
cat > "$scratch/fstab" <<TAB
# SOURCE is only a name; the node's options are mount options.
dfs-pkg-test $mnt fuse.dfsmount _netdev,nofail,x-systemd.after=network-online.target,noatime,nodiratime,data=$scratch/mount-data,network-key=$scratch/network.key,key=$scratch/volume.key,listen=127.0.0.1:0,replicas=1 0 0
TAB
sed "s|^network-key = .*|network-key = $scratch/missing.key|" "$scratch/mount.conf" > "$scratch/bad.conf"

# mount(8) runs its helpers without PATH, so sh finds dfsmount on its default
# path, which starts with /usr/local/sbin: in a private mount namespace a
# tmpfs there holds a link to the unpacked dfsmount (the host sees neither).
export root mnt scratch
unshare -m --propagation private bash -euo pipefail -c '
  trap "mountpoint -q \"\$mnt\" && fusermount3 -uz \"\$mnt\"" EXIT
  mount -t tmpfs -o size=1m,mode=0755 dfs-pkg-test /usr/local/sbin
  ln -s "$root/usr/bin/dfsmount" /usr/local/sbin/dfsmount
  dfs=$root/usr/bin/dfs
  gone() {  # waits for the unmounted dfsmount to exit
    for _ in $(seq 300); do
      pids=$(for e in /proc/[0-9]*/exe; do [[ $(readlink "$e" 2>/dev/null) == "$root/usr/bin/dfsmount" ]] && echo "$e"; done; true)
      [[ -z $pids ]] && return 0
      sleep 0.1
    done
    echo "FAIL: dfsmount still runs after umount" >&2; return 1
  }

  # 1. By type, with a config file as the source and the options mount(8),
  #    mount.fuse3 and systemd add.
  mount -t fuse.dfsmount -o nosuid,nodev,_netdev,x-systemd.automount "$scratch/mount.conf" "$mnt"
  [[ $(findmnt -n -o SOURCE,FSTYPE "$mnt" | xargs) == "$scratch/mount.conf fuse.dfsmount" ]] ||
    { echo "FAIL: mount table: $(findmnt -n "$mnt")" >&2; exit 1; }
  findmnt -n -o OPTIONS "$mnt" | grep -q nosuid || { echo "FAIL: nosuid not applied" >&2; exit 1; }
  mkdir -p "$mnt/docs"
  head -c 3000000 /dev/urandom > "$scratch/in.bin"
  cp "$scratch/in.bin" "$mnt/docs/in.bin"
  echo "written through the mount" > "$mnt/docs/note.txt"
  cmp "$scratch/in.bin" "$mnt/docs/in.bin"
  # The mount runs a node: dfs works through its control socket.
  [[ $("$dfs" --data "$scratch/mount-data" get docs/note.txt) == "written through the mount" ]]
  umount "$mnt"
  gone
  if mountpoint -q "$mnt"; then echo "FAIL: still mounted" >&2; exit 1; fi

  # 1b. mount.fuse3 run directly passes on what mount(8) strips (defaults,
  #     x-*, comment=): dfsmount drops those too.
  mount.fuse3 "$scratch/mount.conf" "$mnt" -t fuse.dfsmount -o defaults,x-systemd.automount,comment=dfs,relatime
  [[ $(cat "$mnt/docs/note.txt") == "written through the mount" ]]
  umount "$mnt"
  gone

  # 2. A bad config: mount fails with the reason, nothing is mounted or left running.
  if mount -t fuse.dfsmount "$scratch/bad.conf" "$mnt" 2>"$scratch/bad.log"; then
    echo "FAIL: mounted with a missing network key" >&2; umount "$mnt"; exit 1
  fi
  grep -q "network key" "$scratch/bad.log" || { echo "FAIL: no reason: $(cat "$scratch/bad.log")" >&2; exit 1; }
  if mountpoint -q "$mnt"; then echo "FAIL: mounted" >&2; exit 1; fi
  gone

  # 3. From a scratch fstab line (mount -T), the node options as -o options.
  mount -T "$scratch/fstab" "$mnt"
  # mount -a finds it mounted (the source shown is the fstab source): no second mount.
  mount -a -T "$scratch/fstab"
  [[ $(findmnt -n "$mnt" | wc -l) == 1 ]] || { echo "FAIL: mount -a mounted again" >&2; exit 1; }
  [[ $(findmnt -n -o SOURCE,FSTYPE "$mnt" | xargs) == "dfs-pkg-test fuse.dfsmount" ]] ||
    { echo "FAIL: mount table: $(findmnt -n "$mnt")" >&2; exit 1; }
  cmp "$scratch/in.bin" "$mnt/docs/in.bin"
  echo "second mount" > "$mnt/second.txt"
  [[ $(cat "$mnt/second.txt") == "second mount" ]]
  umount "$mnt"
  gone
' || { status=$?; pids=$(our_dfsmounts); [[ -z $pids ]] || kill -KILL $pids; fail "mounts (status $status)"; }
[[ -z $(our_dfsmounts) ]] || fail "a dfsmount is left running"
if mountpoint -q "$mnt"; then fail "$mnt is left mounted"; fi
# What the mounts wrote is in the volume.
cmp <("$root/usr/bin/dfs" --data "$scratch/mount-data" --key "$scratch/volume.key" get second.txt) \
    <(echo "second mount") || fail "second.txt not stored"
echo "mounts through mount.fuse3 ok"

# 4. What dfsmount@mnt-dfs.service runs (its ExecStart, with the unpacked
#    program, the scratch mount point and config), stopped as systemd stops
#    it: SIGTERM to the main process commits, unmounts and exits 0.
exec_start=$(sed -n 's/^ExecStart=//p' "$root/usr/lib/systemd/system/dfsmount@.service")
exec_start=${exec_start//\/usr\/bin\//$root/usr/bin/}
exec_start=${exec_start//\/etc\/dfs\/mount-%i.conf/$scratch/mount.conf}
exec_start=${exec_start//%f/$mnt}
read -r -a unit_argv <<< "$exec_start"
"${unit_argv[@]}" 2>"$scratch/unit.log" &
started+=($!)
for _ in $(seq 100); do
  mountpoint -q "$mnt" && break
  kill -0 "${started[0]}" 2>/dev/null || fail "the unit's dfsmount exited: $(cat "$scratch/unit.log")"
  sleep 0.1
done
mountpoint -q "$mnt" || fail "the unit's dfsmount did not mount: $(cat "$scratch/unit.log")"
echo "written before the stop" > "$mnt/before-stop.txt"
exec 7<"$mnt/before-stop.txt"  # a file still open when the unit stops
cmp "$scratch/in.bin" "$mnt/docs/in.bin"
kill -TERM "${started[0]}"
wait "${started[0]}" || fail "the unit's dfsmount ended with status $?: $(cat "$scratch/unit.log")"
started=()
exec 7<&-
if mountpoint -q "$mnt"; then fail "$mnt is still mounted after the unit's SIGTERM"; fi
[[ -z $(our_dfsmounts) ]] || fail "the unit's dfsmount is left running"
[[ $("$root/usr/bin/dfs" --data "$scratch/mount-data" --key "$scratch/volume.key" get before-stop.txt) == \
   "written before the stop" ]] || fail "before-stop.txt was not stored"
echo "the dfsmount@ unit's command stops cleanly on SIGTERM"
echo "package ok"
