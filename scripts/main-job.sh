#!/usr/bin/env bash
# The main job: standard vs PGD-10 adversarial training of the small ResNet on
# Fashion-MNIST on the CPU, for ReLU and for SPARTA with the same seed, then each
# model's clean error, the paper's targeted PGD-10/30/50 error, APGD-CE and APGD-T
# (`--suite quick`) and Square at a small query budget, the worst case over all of them
# and the gradient-masking checks (one table, robustness.md), the PGD-10 loss curves of
# all models on one chart, and their feature maps before and after each activation for
# clean and PGD-10 images (how much of the attack each activation passes on). A subset
# keeps it to minutes; every size is an environment variable. An
# activation this build cannot construct (SPARTA before the SPARTA layer is wired into
# the ResNet) is skipped with the reason.
#
#   scripts/main-job.sh                 # defaults below
#   TRAIN=10000 TEST=1000 EPOCHS=3 BATCH=128 scripts/main-job.sh   # docs/experiments.md
set -euo pipefail

DATA=${DATA:-/usr/share/datasets/fashion-mnist}
OUT=${OUT:-runs/main-job}
TRAIN=${TRAIN:-1000}     # training images (the first N of the 60,000)
TEST=${TEST:-100}        # test images attacked (the first N of the 10,000)
EPOCHS=${EPOCHS:-4}
BATCH=${BATCH:-32}
LR=${LR:-0.1}
SCHEDULE=${SCHEDULE:-linear}   # lr from LR down to 0 over the run (`step`: the paper's)
SEED=${SEED:-0}
ACTS=${ACTS:-relu sparta}
SQUARE=${SQUARE:-500}    # Square's queries per image

cd "$(dirname "$0")/.."

if [ ! -d "$DATA" ]; then
    echo "== $DATA missing: installing the Debian package dataset-fashion-mnist"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
    $SUDO apt-get update
    $SUDO apt-get install -y dataset-fashion-mnist
fi

cargo build --release --bin sparta
SPARTA=target/release/sparta
COMMON=(--dataset fashion-mnist --data-dir "$DATA" --device cpu --seed "$SEED"
        --test-limit "$TEST" --batch-size "$BATCH")

start=$(date +%s)
mkdir -p "$OUT"
: > "$OUT/summary.md"
models=()
for act in $ACTS; do
    if ! "$SPARTA" info --model small --act "$act" --dataset fashion-mnist > /dev/null 2>"$OUT/info-$act.err"; then
        echo "== skipping --act $act: $(cat "$OUT/info-$act.err")"
        continue
    fi
    for mode in standard adversarial; do
        run="$OUT/$act-$mode"
        flags=()
        if [ "$mode" = standard ]; then flags=(--standard); fi
        echo "== train $act $mode"
        "$SPARTA" train "${COMMON[@]}" --model small --act "$act" --epochs "$EPOCHS" \
            --lr "$LR" --schedule "$SCHEDULE" --train-limit "$TRAIN" --out "$run" --fresh "${flags[@]}"
        echo "== eval $act $mode"
        "$SPARTA" eval "${COMMON[@]}" --checkpoint "$run/model.safetensors" \
            --suite paper,quick --iterations 10,30,50 --square-queries "$SQUARE" --out "$run"
        { echo "### $act, $mode training"; echo; cat "$run/eval.md"; echo; } >> "$OUT/summary.md"
        models+=(--checkpoint "$run/model.safetensors" --label "$act, $mode")
    done
done

# One row per model from its eval.json: the paper's protocol beside the worst case.
python3 - "${models[@]}" > "$OUT/robustness.md" <<'PY'
import json, os, sys
args = sys.argv[1:]
pairs = [(args[i + 1], args[i + 3]) for i in range(0, len(args), 4)]
print("| model | clean | targeted PGD-50 (paper) | APGD-CE | APGD-T | Square | worst case | sanity |")
print("|---|---:|---:|---:|---:|---:|---:|---|")
for checkpoint, label in pairs:
    r = json.load(open(os.path.join(os.path.dirname(checkpoint), "eval.json")))
    def err(prefix):
        rows = [a for a in r["attacks"] if a["name"].startswith(prefix)]
        rows.sort(key=lambda a: a["attack"].get("iterations", a["attack"].get("queries", 0)))
        return f"{100 * rows[-1]['adversarial_error']:.0f}%" if rows else ""
    failed = [c["id"] for c in r["sanity"]["checks"] if c["status"] == "failed"]
    sanity = "possible gradient masking: " + ", ".join(failed) if failed else "passed"
    print(f"| {label} | {100 * r['clean_error']:.0f}% | {err('targeted PGD-50')} | {err('APGD-CE-')} "
          f"| {err('APGD-T-')} | {err('Square-')} | **{100 * r['worst_case_error']:.0f}%** | {sanity} |")
PY
{ echo "### Robustness: the paper's protocol and the worst case over attacks"; echo;
  cat "$OUT/robustness.md"; echo; } >> "$OUT/summary.md"

echo "== PGD-10 loss curves"
"$SPARTA" attack "${COMMON[@]}" "${models[@]}" --iterations 10 --out "$OUT/attack"
{ echo "### PGD-10 loss per iteration"; echo; cat "$OUT/attack/attack.md"; } >> "$OUT/summary.md"

echo "== feature maps before and after each activation, clean vs PGD-10"
"$SPARTA" features "${COMMON[@]}" "${models[@]}" --iterations 10 --out "$OUT/features"
{ echo; echo "### Feature maps: how much of the attack each activation passes on"; echo;
  cat "$OUT/features/features.md"; } >> "$OUT/summary.md"

echo
cat "$OUT/summary.md"
echo "main job done in $(( $(date +%s) - start )) s; results in $OUT"
