#!/usr/bin/env bash
# Everything a short visit to a GPU machine should do, in one go (about 6 minutes on one H200), most
# important first, each step with its own time limit:
#   1. specs/day6.yaml as a user types it (runs that need more GPUs than the machine has are skipped);
#   2. FSDP through accelerate launch's own path (tests/test_gpu_fsdp.py: sharded parameters observed);
#   3. examples/compile.yaml: eager, compiled and compiled with a fused AdamW, on the GPU;
#   4. the GPU tests (`make gpu-check`: Day 6 at full size on 1 and all GPUs, fp32 and bf16, decided;
#      the attribution probe and the second clock on real kernels);
#   5. the transformer example's single-process runs;
#   6. the time to the first CUDA kernel with both launchers (benchmarks/first_kernel.py), where
#      GPU_CHECK_FIRST_KERNEL=1;
#   7. the result folders (results.tar.gz, refreshed after each step), the log and the reports,
#      collected into $OUT (or gpu-check-out/ where OUT is unset).
#
# It runs from the repository as it is copied to such a machine, with no install of the project and
# no network: torch with CUDA and accelerate are already there, and this project's other
# dependencies come as wheels in .whl/ (`make gpu-wheels` downloads them here; carry .whl along).
# Set PYTHON to choose the interpreter (default python3). GPU_CHECK_ALLOW_CPU=1 runs it on a machine
# without CUDA, and GPU_CHECK_DAY6=specs/day6-quick.yaml a smaller Day 6 (to try the script itself on
# a CPU; the GPU tests are then skipped).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=${OUT:-$root/gpu-check-out}
mkdir -p "$out"
results=$(mktemp -d)
exec > >(tee "$out/gpu-check.log") 2>&1
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

step() { printf '\n== %s (%s)\n' "$1" "$(date +%T)"; }

step "set-up"
if compgen -G ".whl/*.whl" >/dev/null; then
  site=$(mktemp -d)
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl \
    || { echo "gpu-check: the wheels in .whl/ did not install"; exit 2; }
  export PYTHONPATH="$site:$root${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
fi
"$py" - <<'EOF' || exit 2
import os, sys
import accelerate, pydantic, torch
from ruamel import yaml  # noqa: F401
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, accelerate {accelerate.__version__}, "
      f"pydantic {pydantic.__version__}")
if torch.cuda.is_available():
    print(f"CUDA {torch.version.cuda}: " + ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())))
elif os.environ.get("GPU_CHECK_ALLOW_CPU") == "1":
    print("no CUDA GPU here: running on the CPU (GPU_CHECK_ALLOW_CPU=1)")
else:
    sys.exit("gpu-check: torch sees no CUDA GPU here (set GPU_CHECK_ALLOW_CPU=1 to try the script on a CPU)")
EOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv

status=0
collect() { tar -czf "$out/results.tar.gz" -C "$results" . 2>/dev/null; }

day6=${GPU_CHECK_DAY6:-specs/day6.yaml}
step "1. $day6, as a user types it (runs that need more GPUs than this machine has are skipped)"
timeout "${GPU_CHECK_DAY6_S:-110}" "$py" -m runner "$day6" --output "$results" --no-progress
echo "exit code: $? (0: every expectation held; 1: a measured result, some did not; 2 or more: an error)"
collect

step "2. FSDP through accelerate launch (tests/test_gpu_fsdp.py)"
timeout 100 "$py" -m pytest -m gpu -s -ra -p no:cacheprovider tests/test_gpu_fsdp.py || status=1

step "3. examples/compile.yaml on the GPU"
timeout 120 "$py" -m runner examples/compile.yaml --output "$results" --no-progress
echo "exit code: $?"
collect

step "4. the GPU tests (make gpu-check, and the second clock on real kernels)"
timeout 130 "$py" -m pytest -m gpu -s -ra -p no:cacheprovider tests/test_gpu.py tests/test_gpu_clock.py || status=1

step "5. examples/transformer.yaml (single-process runs)"
timeout 100 "$py" -m runner examples/transformer.yaml --only single,accum-2,single-bf16 --output "$results" \
  --no-progress
echo "exit code: $?"
collect

if [ "${GPU_CHECK_FIRST_KERNEL:-0}" = 1 ]; then
  step "6. time to the first CUDA kernel, fork server against accelerate launch"
  timeout 120 "$py" benchmarks/first_kernel.py --repeats 2 || status=1
fi

step "7. collect"
collect
find "$results" -name report.md | head -3 | while read -r report; do
  cp "$report" "$out/$(basename "$(dirname "$(dirname "$report")")")-report.md"
done
ls -l "$out"
exit $status
