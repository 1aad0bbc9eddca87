#!/usr/bin/env bash
# Run ON the GPU machine: configures for CUDA arch 90 (H100/H200), builds
# only the GPU targets, runs the GPU tests (each kernel against the CPU
# reference, the GPU tier) and the kernel bench. About 2-4 minutes.
# Build dependencies missing there come from .devdeps (made here by
# scripts/device_bundle.sh, carried along). Logs go to $OUT when set.
# Exit status: 0 when every test passed and the bench ran.
# KVT_USE_DEVDEPS=1 uses .devdeps even where the packages are installed.
set -uo pipefail
cd "$(dirname "$0")/.."
B=build-device
LOG=${OUT:-$B}/device_check.log
mkdir -p "$B" "$(dirname "$LOG")"
exec > >(tee "$LOG") 2>&1

extra=()
mods="criterion liburing lmdb libzstd libxxhash"
if [ -n "${KVT_USE_DEVDEPS:-}" ] || ! pkg-config --exists $mods 2>/dev/null; then
  if [ ! -d .devdeps/lib/pkgconfig ]; then
    echo "device_check: $mods not all installed and no .devdeps;"
    echo "  run scripts/device_bundle.sh on the build machine and carry .devdeps"
    exit 1
  fi
  D=$PWD/.devdeps
  export PKG_CONFIG_PATH="$D/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  if ! command -v pkg-config >/dev/null; then
    export PATH="$D/bin:$PATH"
    extra+=("-DPKG_CONFIG_EXECUTABLE=$D/bin/pkg-config")
  fi
  extra+=("-DCMAKE_EXE_LINKER_FLAGS=-Wl,-rpath-link,$D/lib -Wl,-rpath,$D/lib")
  echo "device_check: using bundled dependencies from .devdeps"
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
nvcc --version | tail -2

t0=$(date +%s)
cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVT_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90 "${extra[@]}" >"$B/configure.log" 2>&1 ||
  { cat "$B/configure.log"; echo "device_check: configure failed"; exit 1; }
tests="test_kernels test_kernels_emu test_gpu_tier test_contract_gpu test_contract_host test_kivi
  test_kernels_fake test_gpu_tier_fake test_contract_gpu_fake test_store_reload_gpu
  test_store_reload_gpu_fake test_retrieve_gpu test_retrieve_gpu_fake test_attn_gpu test_attn_gpu_fake
  test_store_append_gpu test_store_append_gpu_fake"
cmake --build "$B" -j"$(nproc)" --target $tests bench_kernels bench_retrieval bench_reload bench_append ||
  { echo "device_check: build failed"; exit 1; }
echo "device_check: built in $(( $(date +%s) - t0 )) s"

status=0
for t in test_kernels test_gpu_tier test_contract_gpu test_store_reload_gpu test_store_append_gpu \
  test_retrieve_gpu test_attn_gpu; do
  bin=$(find "$B/tests" -name "$t" -type f -perm -u+x | head -1)
  echo "== $t"
  (cd "$B" && "$OLDPWD/$bin" --verbose --jobs 1) 2>&1 | tee "$B/$t.out" | grep -E "^\[(PASS|FAIL|SKIP|----)|Synthesis" || true
  grep -q "Failing: 0 | Crashing: 0" "$B/$t.out" || status=1
  if grep -q "no usable CUDA device\|no usable GPU" "$B/$t.out"; then
    echo "device_check: $t skipped GPU tests: no usable device?"; status=1
  fi
done
(cd "$B" && ctest -R "test_kernels_emu|_fake|test_contract_host|test_kivi" --output-on-failure) || status=1

# Out-of-bounds and misaligned accesses (memcheck) in the kernel tests, when
# compute-sanitizer works on this machine (KVT_SANITIZE=0 skips it).
cs=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if [ -n "$cs" ] && [ "${KVT_SANITIZE:-1}" != 0 ]; then
  echo "== compute-sanitizer memcheck: test_kernels, test_gpu_tier, test_retrieve_gpu"
  for t in test_kernels test_gpu_tier test_retrieve_gpu test_attn_gpu; do
    bin=$(find "$B/tests" -name "$t" -type f -perm -u+x | head -1)
    timeout 240 "$cs" --tool memcheck --error-exitcode 9 --target-processes all \
      "$bin" --jobs 1 >"$B/$t.memcheck" 2>&1
    rc=$?
    tail -3 "$B/$t.memcheck"
    case $rc in
      0) echo "memcheck $t: clean" ;;
      9) echo "memcheck $t: ERRORS (see $B/$t.memcheck)"; status=1;
         grep -m 20 -E "Invalid|Address|at 0x|by thread" "$B/$t.memcheck" ;;
      *) echo "memcheck $t: did not complete (rc $rc), not counted" ;;
    esac
  done
fi

echo "== bench_kernels (default: 16384 blocks of 8x32x64 fp16, KIVI 2-bit group 32)"
"$B/bench/bench_kernels" || status=1
echo "== bench_kernels (the store's default block: 8x16x128 fp16, group 16)"
"$B/bench/bench_kernels" --tokens 16 --dim 128 --reps 3 || status=1
echo "== bench_reload --gpu (the store's kvt_cache_reload into the GPU tier, KIVI-2 and raw)"
"$B/bench/bench_reload" --gpu --blocks 4096 || status=1
"$B/bench/bench_reload" --gpu --blocks 4096 --codec raw || status=1
echo "== bench_append (kvt_cache_append_device vs kvt_cache_append vs a d2h copy; KIVI-2 cold, then raw)"
"$B/bench/bench_append" || status=1
"$B/bench/bench_append" --codec raw || status=1
echo "== bench_retrieval (Quest and ClusterKV selection on the GPU next to the CPU modes, 32k and 128k tokens)"
"$B/bench/bench_retrieval" --trials 1 --reps 20 || status=1
echo "device_check: done in $(( $(date +%s) - t0 )) s, status $status"
exit $status
