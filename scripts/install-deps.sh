#!/usr/bin/env bash
# Installs what dfs needs to build and test on Debian 12, from Debian's own
# packages. Safe to run again: it installs only what is missing.
#   scripts/install-deps.sh [--bench]
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libcrypto++-dev libfuse3-dev fuse3 libboost-dev libfmt-dev libspdlog-dev
  libcli11-dev libsqlite3-dev nlohmann-json3-dev libisal-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  sqlite3 attr util-linux procps time iproute2
)

# --bench: also what bench/suite.sh compares against and drives.
if [ "${1:-}" = "--bench" ]; then
  PACKAGES+=(fio bindfs gocryptfs git)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; then
  $SUDO apt-get update -q >&2
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi
