#!/usr/bin/env bash
# Runs on a lent GPU machine, from the bundle scripts/build-gpu-bundle.sh made:
#   device run (carry gpu-bundle):  bash gpu-bundle/gpu-check.sh
# 1. records the machine (nvidia-smi, which CUDA libraries are found);
# 2. runs every GPU test (CUDA vs the CPU reference: the tests a plain `cargo test`
#    ignores as "needs a GPU", run with --ignored; they fail if the GPU is missing);
# 3. runs the benches' CUDA groups;
# 4. runs the PyTorch peer (torch_peer.py, with the python that has torch): the eager
#    gate next to ReLU, and ResNet-18 PGD-10 training steps (batch 128) with ReLU and
#    SPARTA: images/s and peak memory, next to sparta's own step on the device
#    (examples/gpu_train_step: the same model, attack and optimizer);
# 5. prints a short table; full logs go to $OUT (or ./gpu-out).
# Never run on a GPU so far: no GPU has been lent to this project.
#   bash gpu-bundle/gpu-check.sh [all|tests|perf]   (tests: step 2; perf: steps 3-4)
# Split in two calls when one device call's time limit is short.
set -uo pipefail
what="${1:-all}"
here="$(cd "$(dirname "$0")" && pwd)"
out="${OUT:-$here/../gpu-out}"; mkdir -p "$out"
# cudarc loads libcuda/libnvrtc/libcudnn by name: add the toolkit and PyTorch's wheel
# libraries.
LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}"
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
         $(python3 -c 'import nvidia, os; p = nvidia.__path__[0]; print(" ".join(os.path.join(p, d, "lib") for d in os.listdir(p)))' 2>/dev/null); do
    [ -d "$d" ] && LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$d"
done
export LD_LIBRARY_PATH
{ nvidia-smi; echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"; ldconfig -p | grep -E "libcuda|libnvrtc|libcublas|libcudnn"; } > "$out/machine.txt" 2>&1
head -n 12 "$out/machine.txt"

status=()
[ "$what" = perf ] || for t in "$here"/tests/*; do
    name=$(basename "$t")
    if timeout 300 "$t" --ignored --test-threads=1 > "$out/test-$name.log" 2>&1; then r=pass; else r=FAIL; fi
    status+=("| test $name | $r | $(grep -m1 '^test result' "$out/test-$name.log") | |")
done
[ "$what" = tests ] || for b in "$here"/benches/*; do
    name=$(basename "$b")
    # Only the CUDA groups: the CPU groups are this project's CPU numbers, not the GPU's.
    timeout 300 "$b" --bench cuda --warm-up-time 1 --measurement-time 3 > "$out/bench-$name.log" 2>&1
    status+=("| bench $name | rc=$? | see bench-$name.log | |")
done
echo
echo "| what | result | summary | |"
echo "|---|---|---|---|"
printf '%s\n' "${status[@]}"
[ "$what" = tests ] && exit 0
echo
echo "Bench lines (time, throughput):"
grep -hE "^(cpu|cuda)/|time:|thrpt:" "$out"/bench-*.log | paste - - - 2>/dev/null | head -n 60

# sparta's own ResNet-18 PGD-10 step, with cuDNN and with the implicit-GEMM fallback.
for act in relu sparta; do
    timeout 180 "$here/examples/gpu_train_step" --act "$act" --steps 5 >> "$out/sparta-train.jsonl" 2>> "$out/sparta-train.err"
    SPARTA_CONV=implicit-gemm timeout 180 "$here/examples/gpu_train_step" --act "$act" --steps 3 >> "$out/sparta-train-igemm.jsonl" 2>> "$out/sparta-train.err"
done
echo
echo "sparta's step (JSON lines):"
cat "$out"/sparta-train*.jsonl 2>/dev/null
echo
echo "PyTorch peer (eager):"
if python3 -c "import torch" 2>/dev/null; then
    timeout 300 python3 "$here/torch_peer.py" gate > "$out/torch-gate.jsonl" 2> "$out/torch-gate.err"
    for act in relu sparta; do
        timeout 300 python3 "$here/torch_peer.py" train --act "$act" >> "$out/torch-train.jsonl" 2>> "$out/torch-train.err"
    done
    python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
print("| shape | torch ReLU fwd ms | torch gate fwd ms | torch ReLU fwd+bwd ms | torch gate fwd+bwd ms |")
print("|---|---|---|---|---|")
for line in open(f"{out}/torch-gate.jsonl"):
    r = json.loads(line)
    print(f"| {r['shape']} | {r['relu_fwd']:.3f} | {r['gate_fwd']:.3f} | {r['relu_fwd_bwd']:.3f} | {r['gate_fwd_bwd']:.3f} |")
print()
ours = {}
try:
    for line in open(f"{out}/sparta-train.jsonl"):
        r = json.loads(line)
        ours[r["act"]] = r
except FileNotFoundError:
    pass
print("| ResNet-18 PGD-10 train step, batch 128 | params torch / sparta | torch images/s | torch peak MiB | sparta images/s | sparta peak MiB | sparta / torch | allocations after warm-up |")
print("|---|---|---|---|---|---|---|---|")
for line in open(f"{out}/torch-train.jsonl"):
    r = json.loads(line)
    peak = r["peak_memory_bytes"] / 2**20 if r["peak_memory_bytes"] else float("nan")
    s = ours.get(r["act"])
    if s:
        mine = f"{s['images_per_s']:.1f} | {s['peak_memory_bytes'] / 2**20:.0f} | {s['images_per_s'] / r['images_per_s']:.2f} | {s['device_allocations_after_warmup']}"
    else:
        mine = "failed (see sparta-train.err) | | |"
    print(f"| {r['act']} | {r['parameters']} / {s['parameters'] if s else '?'} | {r['images_per_s']:.1f} | {peak:.0f} | {mine} |")
print()
print("sparta's step, every run (conv2d library, images/s, allocator peak MiB, driver-reported MiB in use):")
for name in ["sparta-train.jsonl", "sparta-train-igemm.jsonl"]:
    try:
        for line in open(f"{out}/{name}"):
            r = json.loads(line)
            used = r["driver_memory_used_bytes"]
            print(f"  {r['act']:6} conv2d={r['conv2d']:13} {r['images_per_s']:8.1f} img/s  {r['peak_memory_bytes'] / 2**20:7.0f} MiB  {used / 2**20 if used else float('nan'):7.0f} MiB")
    except FileNotFoundError:
        print(f"  {name}: missing")
PY
else
    echo "no python3 with torch here: peer skipped"
fi
