#!/usr/bin/env bash
# Builds the Debian package from an existing build tree, unpacks it into a
# scratch root with dpkg -x (nothing is installed on the machine), checks its
# metadata and runs the unpacked programs.
#   tests/package_test.sh BUILD_DIR
set -euo pipefail
build=$(realpath "$1")
scratch=$(mktemp -d /tmp/dfs-pkg-XXXXXX)
trap 'rm -rf "$scratch"' EXIT

(cd "$build" && cpack -G DEB -B "$scratch/out" >/dev/null)
deb=$(ls "$scratch"/out/*.deb)
echo "built $(basename "$deb")"
dpkg-deb --info "$deb" > "$scratch/info"
grep -q '^ Package: dfs' "$scratch/info"
grep -q '^ Depends:.*fuse3' "$scratch/info" || { echo "missing fuse3 dependency" >&2; exit 1; }
grep -q '^ Depends:.*libcrypto++' "$scratch/info" || { echo "missing libcrypto++ dependency" >&2; exit 1; }
dpkg -x "$deb" "$scratch/root"
for p in dfs dfsd dfsmount; do
  test -x "$scratch/root/usr/bin/$p" || { echo "missing /usr/bin/$p" >&2; exit 1; }
  "$scratch/root/usr/bin/$p" --help >/dev/null
done
test -f "$scratch/root/usr/share/doc/dfs/architecture.md"
# The unpacked program does real work.
export XDG_DATA_HOME=$scratch/data XDG_CONFIG_HOME=$scratch/config
echo "hello from the package" | "$scratch/root/usr/bin/dfs" put hello 2>/dev/null
test "$("$scratch/root/usr/bin/dfs" get hello)" = "hello from the package"
echo "package ok"
