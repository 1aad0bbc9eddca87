#!/usr/bin/env bash
# Sets up, builds and runs the main job: kvtierd plus a long-document QA
# session (SmolLM2-135M over the Debian FAQ, its KV cache held by kvtierd).
# Options go to qa_demo (e.g. --full for the whole FAQ, --questions 8).
set -euo pipefail
exec bash "$(dirname "$0")/demo_qa.sh" "$@"
