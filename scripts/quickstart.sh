#!/usr/bin/env bash
# The embedded default, end to end: install what is missing, build, make a
# volume key, put a file in, get it back out, compare, and list the store.
# Everything lives under a scratch directory that is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
DFS=$PWD/build/bin/dfs

scratch=$(mktemp -d /tmp/dfs-quickstart-XXXXXX)
trap 'rm -rf "$scratch"' EXIT
export XDG_DATA_HOME=$scratch/data XDG_CONFIG_HOME=$scratch/config

head -c $((64 << 20)) /dev/urandom > "$scratch/sample.bin"
echo "+ dfs put sample.bin  (64 MiB; a volume key is created on first use)"
"$DFS" put sample.bin "$scratch/sample.bin"
echo "+ dfs get sample.bin"
"$DFS" get sample.bin "$scratch/back.bin"
cmp "$scratch/sample.bin" "$scratch/back.bin" && echo "bytes identical"
echo "+ dfs ls"
"$DFS" ls
echo "+ dfs stat sample.bin"
"$DFS" stat sample.bin
