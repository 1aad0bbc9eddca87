#!/usr/bin/env bash
# Sets up, builds and runs the main job: a small cache stored and read back.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
./build/examples/store_roundtrip
