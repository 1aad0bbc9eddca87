#!/usr/bin/env bash
# The main job: SmolLM2-135M answers questions about the Debian FAQ with its
# KV cache held by kvtierd (KIVI-2 cold blocks, a small host budget so blocks
# spill to the disk tier), retrieved per question ReKV style.
#   bash scripts/demo_qa.sh [qa_demo options, e.g. --full or --questions 8]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
model=$(bash scripts/fetch_model.sh)
bash scripts/build.sh
tmp=$(mktemp -d)
sock="$tmp/kvtier.sock"
./build/daemon/kvtierd --foreground --socket "$sock" --data-dir "$tmp/data" \
  --host-bytes 8M --log-level warn &
daemon=$!
trap 'kill "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null || true; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { echo "demo_qa: kvtierd did not start" >&2; exit 1; }
./build/examples/llm/qa_demo --model "$model" --socket "$sock" "$@"
