#!/usr/bin/env bash
# Installs what kvtier needs to build and test, from Debian 12 packages.
# Safe to run again: it installs only what is missing.
set -euo pipefail
pkgs=(build-essential cmake pkg-config liburing-dev liblmdb-dev libzstd-dev
      libxxhash-dev libcriterion-dev python3 python3-pip
      debian-faq)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "setup: dependencies present"
