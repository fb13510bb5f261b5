#!/usr/bin/env bash
# Installs Fashion-MNIST (IDX .gz files) into /usr/share/datasets/fashion-mnist
# from the Debian package dataset-fashion-mnist, when apt is available.
# Without apt: put the four *-ubyte.gz files in a folder and pass --data-dir
# (or set KPRUNE_DATA_DIR); on a machine with internet kprune downloads them.
set -euo pipefail
target=/usr/share/datasets/fashion-mnist
if [ -f "$target/t10k-labels-idx1-ubyte.gz" ]; then
  echo "Fashion-MNIST already in $target"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "apt-get not found: fetch Fashion-MNIST yourself and pass --data-dir (see README)." >&2
  exit 1
fi
sudo_cmd=""
if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo_cmd apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || {
  $sudo_cmd apt-get update -q >/dev/null
  $sudo_cmd apt-get install -y -q dataset-fashion-mnist >/dev/null
}
echo "Fashion-MNIST installed in $target"
