#!/usr/bin/env bash
# Builds, here, what a lent GPU machine runs (it has no Rust toolchain and no network):
# the test executables that hold GPU tests (`gpu_*`, ignored without --ignored), the
# examples gpu_probe, gpu_kernel_timing and gpu_train_step, all with the pinned nvcc so
# the fatbins are embedded, stripped, into one folder with scripts/gpu-check.sh,
# scripts/torch_peer.py and BUILD_INFO (commit, nvcc, the newest glibc and libstdc++
# symbol versions the executables need, which gpu-check.sh compares with the machine's).
#   scripts/build-gpu-bundle.sh [--profile release|test] [DEST]   (DEST: gpu-bundle)
# Carry DEST with the device tool; the working tree and what is carried travel together
# and must stay within 64 MiB, which this script checks. CI builds it with
# `--profile test` (the executables `cargo test` already built) for gpu-check.sh selftest.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
if [ "${1:-}" = --profile ]; then profile="$2"; shift 2; fi
dest="${1:-gpu-bundle}"
case "$profile" in release|test) ;; *) echo "unknown profile $profile (release or test)" >&2; exit 2;; esac
source scripts/nvcc-env.sh "${SPARTA_CACHE:-$HOME/.cache/sparta}"
rm -rf "$dest" && mkdir -p "$dest/tests" "$dest/bin"

# Prints "name path" of each executable of the given kind that `cargo ARGS` builds.
list_executables() {
    local kind="$1"; shift
    cargo "$@" --message-format=json |
        python3 -c 'import json,sys
kind = sys.argv[1]
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and kind in m["target"]["kind"]:
        print(m["target"]["name"], m["executable"])' "$kind"
}

list_executables test test --workspace --profile "$profile" --no-run > "$dest/.tests"
gpu_tests=0
while read -r name exe; do
    # Only executables with GPU tests: every ignored test there must be one (gpu-check.sh
    # runs them with --ignored). grep -c reads the whole list: grep -q would stop early
    # and, under pipefail, fail the pipeline on the test binary's SIGPIPE.
    count=$("$exe" --list --ignored 2> /dev/null | grep -c '^\(.*::\)\?gpu_[A-Za-z0-9_]*: test$' || true)
    if [ "$count" -gt 0 ]; then
        cp "$exe" "$dest/tests/$name"
        gpu_tests=$((gpu_tests + count))
    fi
done < "$dest/.tests"
rm "$dest/.tests"
list_executables example build --profile "$profile" \
    --example gpu_probe --example gpu_kernel_timing --example gpu_train_step > "$dest/.examples"
while read -r name exe; do cp "$exe" "$dest/bin/$name"; done < "$dest/.examples"
rm "$dest/.examples"
strip "$dest"/tests/* "$dest"/bin/*
# The build must have embedded the fatbins (nvcc found): the probe says, GPU or not.
probe_json=$("$dest/bin/gpu_probe" 2> /dev/null || true) # exit 2 without a GPU
if ! grep -q '"fatbins":true' <<< "$probe_json"; then
    echo "the executables have no fatbins: nvcc was not used (NVCC=$NVCC)" >&2
    exit 1
fi
cp scripts/gpu-check.sh scripts/torch_peer.py "$dest/"

newest() { objdump -T "$@" | grep -o "$PATTERN[0-9.]*" | sort -Vu | tail -n 1; }
{
    echo "commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo +changes)"
    echo "profile=$profile"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nvcc=$("$NVCC" --version | sed -n 's/.*release [0-9.]*, //p')"
    echo "build_glibc=$(getconf GNU_LIBC_VERSION | awk '{print $2}')"
    echo "glibc_required=$(PATTERN=GLIBC_ newest "$dest"/tests/* "$dest"/bin/* | sed 's/GLIBC_//')"
    echo "glibcxx_required=$(PATTERN=GLIBCXX_ newest "$dest"/tests/* "$dest"/bin/* | sed 's/GLIBCXX_//')"
    echo "gpu_tests=$gpu_tests"
} > "$dest/BUILD_INFO"
cat "$dest/BUILD_INFO"
ls "$dest/tests" "$dest/bin"

# What travels: the tracked and untracked-not-ignored files, plus the bundle.
tree_bytes=$( (git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s -- 2>/dev/null || true) | awk '{s += $1} END {print s + 0}')
bundle_bytes=$(du -sb "$dest" | cut -f1)
total=$((tree_bytes + bundle_bytes))
awk -v b="$bundle_bytes" -v t="$tree_bytes" 'BEGIN {
    printf "bundle %.1f MiB + working tree %.1f MiB = %.1f MiB (limit 64 MiB)\n",
        b / 1048576, t / 1048576, (b + t) / 1048576 }'
if [ "$total" -gt $((64 * 1048576)) ]; then
    echo "too large to carry: over 64 MiB" >&2
    exit 1
fi
