#!/usr/bin/env bash
# Builds, here, what a lent GPU machine runs (it has no Rust toolchain and no network):
# the test and bench executables and examples/gpu_train_step, with nvcc so the PTX is
# embedded, stripped, copied into
# gpu-bundle/ (git-ignored; carry it with the device tool, 64 MiB at most) together with
# scripts/gpu-check.sh and the PyTorch peer scripts/torch_peer.py.
#   scripts/build-gpu-bundle.sh && du -sh gpu-bundle
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/nvcc-env.sh
rm -rf gpu-bundle && mkdir -p gpu-bundle/tests gpu-bundle/benches
# Prints "name path" of each executable of the given kind that `cargo ARGS` builds.
list_executables() {
    kind="$1"; shift
    cargo "$@" --message-format=json 2>/dev/null |
        python3 -c 'import json,sys
kind = sys.argv[1]
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and kind in m["target"]["kind"]:
        print(m["target"]["name"], m["executable"])' "$kind"
}
# Only the tests that touch CUDA and the CPU references they compare with.
list_executables test test --workspace --release --no-run | while read -r name exe; do
    case "$name" in cuda_*|gate|sparta_layer|sparta|device_resnet) cp "$exe" "gpu-bundle/tests/$name";; esac
done
mkdir -p gpu-bundle/examples
list_executables example build --release --example gpu_train_step | while read -r name exe; do
    cp "$exe" "gpu-bundle/examples/$name"
done
list_executables bench bench --workspace --no-run | while read -r name exe; do
    cp "$exe" "gpu-bundle/benches/$name"
done
strip gpu-bundle/tests/* gpu-bundle/benches/* gpu-bundle/examples/*
cp scripts/gpu-check.sh scripts/torch_peer.py gpu-bundle/
du -sh gpu-bundle
