#!/usr/bin/env bash
# Install the Debian packages sanas uses when they are missing (idempotent, quiet when all are there).
#   dataset-fashion-mnist  real data for `make demo` and the tests (/usr/share/datasets/fashion-mnist)
#   libtcmalloc-minimal4   a faster allocator for CPU training (the demo and benchmarks preload it)
set -euo pipefail
missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "need root to install: ${missing[*]} (apt-get install -y ${missing[*]})" >&2; exit 1; }
  sudo="sudo"
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 || {
  $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "${missing[@]}" >/dev/null
}
