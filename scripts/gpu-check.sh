#!/usr/bin/env bash
# Runs on a lent GPU machine, from the bundle scripts/build-gpu-bundle.sh made:
#   device run (carry gpu-bundle):  bash gpu-bundle/gpu-check.sh
# 1. records the machine (nvidia-smi, which CUDA libraries are found);
# 2. runs every GPU test (CUDA vs the CPU reference; they fail, not skip, if the GPU is
#    missing here because SPARTA_REQUIRE_GPU=1);
# 3. runs the benches (CPU and CUDA groups);
# Not yet run on a GPU: the PyTorch peer and the ResNet PGD training step (issue 7) are
# still to be added.
# 4. prints a short table; full logs go to $OUT (or ./gpu-out).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${OUT:-$here/../gpu-out}"; mkdir -p "$out"
# cudarc loads libcuda/libnvrtc by name: add the toolkit and PyTorch's wheel libraries.
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
         $(python3 -c 'import nvidia, os; p = nvidia.__path__[0]; print(" ".join(os.path.join(p, d, "lib") for d in os.listdir(p)))' 2>/dev/null); do
    [ -d "$d" ] && LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$d"
done
export LD_LIBRARY_PATH SPARTA_REQUIRE_GPU=1
{ nvidia-smi; echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"; ldconfig -p | grep -E "libcuda|libnvrtc|libcublas|libcudnn"; } > "$out/machine.txt" 2>&1
head -n 12 "$out/machine.txt"

status=()
for t in "$here"/tests/*; do
    name=$(basename "$t")
    if "$t" --test-threads=1 > "$out/test-$name.log" 2>&1; then r=pass; else r=FAIL; fi
    skipped=$(grep -c "skipped, no GPU" "$out/test-$name.log")
    status+=("| test $name | $r | $(grep -m1 '^test result' "$out/test-$name.log") | skipped: $skipped |")
done
for b in "$here"/benches/*; do
    name=$(basename "$b")
    "$b" --bench --warm-up-time 1 --measurement-time 3 > "$out/bench-$name.log" 2>&1
    status+=("| bench $name | rc=$? | see bench-$name.log | |")
done
echo
echo "| what | result | summary | |"
echo "|---|---|---|---|"
printf '%s\n' "${status[@]}"
echo
echo "Bench lines (time, throughput):"
grep -hE "^(cpu|cuda)/|time:|thrpt:" "$out"/bench-*.log | paste - - - 2>/dev/null | head -n 60
