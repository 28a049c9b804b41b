# Source me: installs nvcc 13.0 from the pinned PyPI wheels into a cache folder (once)
# and exports NVCC for build.rs. 13.0 matches the lent GPUs' driver; a newer nvcc emits
# PTX that driver cannot load (docs/design.md#cuda-toolchain).
#   source scripts/nvcc-env.sh [CACHE_DIR]
_sparta_cache="${1:-${SPARTA_CACHE:-$HOME/.cache/sparta}}"
_sparta_nvcc_dir="$_sparta_cache/nvcc-13.0"
if [ ! -x "$_sparta_nvcc_dir/nvidia/cu13/bin/nvcc" ]; then
    echo "installing nvcc 13.0 wheels into $_sparta_nvcc_dir" >&2
    python3 -m pip install --quiet --disable-pip-version-check --target "$_sparta_nvcc_dir" \
        "nvidia-cuda-nvcc==13.0.*" "nvidia-cuda-runtime==13.0.*" "nvidia-cuda-crt==13.0.*" \
        "nvidia-nvvm==13.0.*" "nvidia-cuda-cccl==13.0.*" >&2
fi
export NVCC="$_sparta_nvcc_dir/nvidia/cu13/bin/nvcc"
export CUDA_WHEEL_INCLUDE="$_sparta_nvcc_dir/nvidia/cu13/include"
unset _sparta_cache _sparta_nvcc_dir
