# Source me: installs the CUDA 13.0 compilers from pinned PyPI wheels into a cache
# folder (once) and exports what the build and the tests need:
#   NVCC             nvcc, for build.rs (fatbins; sm_90 machine code and compute_90 PTX)
#   LD_LIBRARY_PATH  prefixed with the wheels' lib folder, so cudarc finds libnvrtc.so.13
#                    (the NVRTC fallback's test, tests/nvrtc.rs)
# 13.0 matches the lent GPUs' driver; a newer toolkit emits PTX that driver cannot load
# (docs/design.md#cuda-toolchain). The versions are exact so that the ptxas report in docs/gpu.md is
# reproducible: a new pin is a new cache folder.
#   source scripts/nvcc-env.sh [CACHE_DIR]
_sparta_cache="${1:-${SPARTA_CACHE:-$HOME/.cache/sparta}}"
_sparta_cuda_dir="$_sparta_cache/cuda-13.0.88"
if [ ! -x "$_sparta_cuda_dir/nvidia/cu13/bin/nvcc" ] || [ ! -e "$_sparta_cuda_dir/nvidia/cu13/lib/libnvrtc.so.13" ]; then
    echo "installing the CUDA 13.0 compiler wheels into $_sparta_cuda_dir" >&2
    # One pip call: `--target` does not merge a second install into the shared nvidia/.
    python3 -m pip install --quiet --disable-pip-version-check --upgrade --target "$_sparta_cuda_dir" \
        nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
        nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 nvidia-cuda-nvrtc==13.0.88 >&2
fi
export NVCC="$_sparta_cuda_dir/nvidia/cu13/bin/nvcc"
export LD_LIBRARY_PATH="$_sparta_cuda_dir/nvidia/cu13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
unset _sparta_cache _sparta_cuda_dir
