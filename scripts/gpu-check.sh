#!/usr/bin/env bash
# The GPU check. Runs on a lent GPU machine from the bundle scripts/build-gpu-bundle.sh
# builds here (the machine has no Rust and no network):
#   bash gpu-bundle/gpu-check.sh [run]    all phases, at most 8 minutes in all
#   bash gpu-bundle/gpu-check.sh plan     the phases and their time caps
#   bash gpu-bundle/gpu-check.sh selftest the whole run on a machine WITHOUT a GPU, then
#                                         checks that every phase said "no GPU" where it
#                                         must and the table and JSON were still made
# Phases, each under its own time cap, each writing its result under $OUT (default
# gpu-out/ beside the bundle) as soon as it has one; gpu-check.json is rewritten after
# every phase, so a run cut short still leaves what it found:
#   a probe   nvidia-smi, driver and CUDA versions, glibc/libstdc++ of the machine
#             against what the executables need, then examples/gpu_probe: how the
#             modules load, driver vs ptxas registers, one launch of every module, an
#             NVRTC compile, cuDNN's version, the libraries actually mapped
#   b tests   the GPU-vs-CPU tests, GPU cases only (`--ignored`: the `gpu_*` tests)
#   c timing  examples/gpu_kernel_timing: CUDA events over 100 back-to-back launches,
#             a same-bytes device-to-device copy as the baseline, L2-resident and
#             beyond-L2 shapes apart
#   d train   ResNet-18 PGD-10 training step: sparta (examples/gpu_train_step) against
#             the PyTorch peer (torch_peer.py) with TF32 off and on; torch runs with
#             the environment this script was started with
#   e report  one table on stdout, and gpu-check.json
# Exit status: 0 every phase ok, 2 no GPU (and nothing else failed), 1 otherwise.
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
mode="${1:-run}"

# name|title|cap in seconds
PHASES=(
    "a|probe: machine, libraries, every module once|30"
    "b|tests: GPU-vs-CPU, GPU cases only|150"
    "c|timing: kernels vs same-bytes copy, CUDA events|60"
    "d|train: ResNet-18 PGD-10 step, sparta vs PyTorch (TF32 off, on)|210"
    "e|report: table and gpu-check.json|15"
)
# Within phase d: each of sparta's two runs, each of PyTorch's four.
CAP_D_SPARTA=45
CAP_D_TORCH=30

plan() {
    local total=0 p name title cap
    echo "| phase | what | cap (s) |"
    echo "|---|---|---:|"
    for p in "${PHASES[@]}"; do
        IFS='|' read -r name title cap <<< "$p"
        echo "| $name | $title | $cap |"
        total=$((total + cap))
    done
    echo "| | all phases (the device call needs ~1 minute more for transfers) | $total |"
    echo
    echo "Phase d: sparta relu and sparta, ${CAP_D_SPARTA} s each; PyTorch relu and sparta with TF32 off and on, ${CAP_D_TORCH} s each."
}

cap_of() {
    local p name title cap
    for p in "${PHASES[@]}"; do
        IFS='|' read -r name title cap <<< "$p"
        [ "$name" = "$1" ] && echo "$cap"
    done
}

total_cap() {
    local p name title cap total=0
    for p in "${PHASES[@]}"; do
        IFS='|' read -r name title cap <<< "$p"
        total=$((total + cap))
    done
    echo "$total"
}

# ---------------------------------------------------------------- shared state

orig_ld_set="${LD_LIBRARY_PATH+set}"
orig_ld="${LD_LIBRARY_PATH:-}"
declare -A STATUS DETAIL SECS
HAVE_GPU=0
GLIBC_OK=1

log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$out/gpu-check.log" >&2; }

json_str() {
    local s="${1//\\/\\\\}"
    s="${s//\"/\\\"}"
    s="${s//$'\n'/ }"
    s="${s//$'\t'/ }"
    printf '"%s"' "$s"
}

# gpu-check.json from what the phases recorded so far (phase e replaces it with the
# full report when python3 is there).
write_json() {
    local p name title cap first=1
    {
        printf '{"bundle": {'
        local k v sep=""
        while IFS='=' read -r k v; do
            [ -n "$k" ] || continue
            printf '%s%s: %s' "$sep" "$(json_str "$k")" "$(json_str "$v")"
            sep=", "
        done < "$here/BUILD_INFO"
        printf '}, "phases": ['
        for p in "${PHASES[@]}"; do
            IFS='|' read -r name title cap <<< "$p"
            [ -n "${STATUS[$name]:-}" ] || continue
            [ $first = 1 ] || printf ', '
            first=0
            printf '{"phase": "%s", "title": %s, "cap_s": %s, "seconds": %s, "status": %s, "detail": %s}' \
                "$name" "$(json_str "$title")" "$cap" "${SECS[$name]}" \
                "$(json_str "${STATUS[$name]}")" "$(json_str "${DETAIL[$name]:-}")"
        done
        printf ']}\n'
    } > "$out/gpu-check.json"
}

record() { # phase status detail started_at
    STATUS[$1]="$2"
    DETAIL[$1]="$3"
    SECS[$1]=$((SECONDS - $4))
    write_json
    log "phase $1: $2${3:+ ($3)}"
}

# Seconds phase $1 may still use: its cap, cut to what is left of the whole run.
left_for() {
    local until_phase=$(( $2 + $(cap_of "$1") - SECONDS ))
    local until_all=$(( run_deadline - SECONDS ))
    local t=$(( until_phase < until_all ? until_phase : until_all ))
    echo $(( t > 1 ? t : 1 ))
}

# Runs one of sparta's executables with the library path built for them.
sparta_exe() {
    env LD_LIBRARY_PATH="$SPARTA_LD" "$@"
}

# The first python3 that has torch (find_spec: no import, so it costs nothing).
find_torch_python() {
    local py
    for py in "${SPARTA_TORCH_PYTHON:-}" python3 /opt/torch/.venv/bin/python3 /opt/*/.venv/bin/python3 /usr/bin/python3; do
        [ -n "$py" ] && command -v "$py" > /dev/null 2>&1 || continue
        if "$py" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is None)' 2> /dev/null; then
            command -v "$py"
            return
        fi
    done
}

# LD_LIBRARY_PATH for sparta's executables only: the lib folders of the NVIDIA wheels
# beside torch (libcudnn, libnvrtc, libcublas), what the caller had, then the toolkit's
# lib64 (never its stubs/ folder: a stub libcuda would shadow the driver's).
sparta_library_path() {
    local dirs=() d
    if [ -n "$TORCH_PY" ]; then
        while read -r d; do dirs+=("$d"); done < <("$TORCH_PY" -c 'import importlib.util, os
spec = importlib.util.find_spec("nvidia")
for base in (spec.submodule_search_locations or []) if spec else []:
    for name in sorted(os.listdir(base)):
        lib = os.path.join(base, name, "lib")
        if os.path.isdir(lib):
            print(lib)' 2> /dev/null)
    fi
    [ -n "$orig_ld" ] && dirs+=("$orig_ld")
    [ -d /usr/local/cuda/lib64 ] && dirs+=(/usr/local/cuda/lib64)
    local IFS=:
    echo "${dirs[*]}" | tr ':' '\n' | grep -v '/stubs/\?$' | paste -sd: -
}

# ---------------------------------------------------------------- phases

phase_a() {
    local t0=$SECONDS required_glibc required_cxx machine_glibc libstdcxx
    required_glibc=$(sed -n 's/^glibc_required=//p' "$here/BUILD_INFO")
    required_cxx=$(sed -n 's/^glibcxx_required=//p' "$here/BUILD_INFO")
    machine_glibc=$(getconf GNU_LIBC_VERSION 2> /dev/null | awk '{print $2}')
    libstdcxx=$({ ldconfig -p || /sbin/ldconfig -p; } 2> /dev/null | awk '/libstdc\+\+\.so\.6 .*x86-64/ {print $NF; exit}')
    local glibc_note cxx_note
    if [ -z "$machine_glibc" ] || [ -z "$required_glibc" ]; then
        glibc_note="glibc: machine ${machine_glibc:-?}, needed ${required_glibc:-?}: not compared"
        GLIBC_OK=0
    elif [ "$(printf '%s\n%s\n' "$required_glibc" "$machine_glibc" | sort -V | head -n 1)" = "$required_glibc" ]; then
        glibc_note="glibc $machine_glibc >= $required_glibc needed"
    else
        glibc_note="glibc $machine_glibc < $required_glibc needed: the executables cannot start"
        GLIBC_OK=0
    fi
    if [ -z "$required_cxx" ]; then
        cxx_note="libstdc++: none needed"
    elif [ -n "$libstdcxx" ] && grep -qa "GLIBCXX_$required_cxx" "$libstdcxx"; then
        cxx_note="libstdc++ $libstdcxx has GLIBCXX_$required_cxx"
    else
        cxx_note="libstdc++ ${libstdcxx:-not found} lacks GLIBCXX_$required_cxx: the tests cannot start"
        GLIBC_OK=0
    fi
    {
        echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "# uname: $(uname -a)"
        echo "# bundle:"; cat "$here/BUILD_INFO"
        echo "# $glibc_note"
        echo "# $cxx_note"
        echo "# python with torch: ${TORCH_PY:-none found}"
        echo "# LD_LIBRARY_PATH at start: ${orig_ld_set:+$orig_ld}${orig_ld_set:-(unset)}"
        echo "# LD_LIBRARY_PATH for sparta's executables: $SPARTA_LD"
        echo "# nvidia-smi:"
        if command -v nvidia-smi > /dev/null; then
            timeout 10 nvidia-smi 2>&1
            timeout 10 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv 2>&1
        else
            echo "not on PATH"
        fi
        echo "# gpu_probe (stderr):"
    } > "$out/a-probe.log" 2>&1
    log "$glibc_note; $cxx_note"
    sparta_exe timeout -k 5 "$(left_for a "$t0")" "$here/bin/gpu_probe" > "$out/a-probe.json" 2>> "$out/a-probe.log"
    local rc=$?
    if [ $rc != 124 ] && [ $rc != 137 ] && ! grep -q '^{' "$out/a-probe.json"; then
        # It did not start (loader, glibc) or crashed: say what it said, and go on if
        # the driver sees a GPU, so the later phases fail with their own reasons.
        timeout 10 nvidia-smi -L > /dev/null 2>&1 && HAVE_GPU=1
        record a FAIL "gpu_probe exited $rc without a report: $(tail -n 1 "$out/a-probe.log")" "$t0"
        return
    fi
    local libs
    libs=$(tr ',' '\n' < "$out/a-probe.json" | grep -o '/[^"]*lib\(cuda\|nvrtc\|cudnn\|cublas\)[^"]*' | xargs -r -n1 basename | sort -u | paste -sd' ' -)
    case $rc in
        0) HAVE_GPU=1; record a ok "mapped: ${libs:-?}" "$t0" ;;
        1) HAVE_GPU=1; record a FAIL "the probe found problems (a-probe.json: problems); mapped: ${libs:-?}" "$t0" ;;
        2) record a "no GPU" "$(grep -o '"why":"[^"]*"' "$out/a-probe.json" | cut -d'"' -f4)" "$t0" ;;
        124|137) HAVE_GPU=1; record a timeout "gpu_probe ran past its cap" "$t0" ;;
        *) HAVE_GPU=1; record a FAIL "gpu_probe exited $rc: $(tail -n 1 "$out/a-probe.log")" "$t0" ;;
    esac
}

phase_b() {
    local t0=$SECONDS t name listed total=0 executables=0
    : > "$out/b-tests.log"
    for t in "$here"/tests/*; do
        [ -x "$t" ] || continue
        listed=$(sparta_exe "$t" --list --ignored 2> /dev/null | grep -c ': test$')
        total=$((total + listed))
        executables=$((executables + 1))
        echo "# $(basename "$t"): $listed GPU tests" >> "$out/b-tests.log"
    done
    if [ "$HAVE_GPU" = 0 ]; then
        record b "no GPU" "$total GPU tests in $executables executables not run" "$t0"
        return
    fi
    local passed=0 failed=0 rc worst=ok failures="" part
    for t in "$here"/tests/*; do
        [ -x "$t" ] || continue
        name=$(basename "$t")
        part="$work/test-$name.log"
        sparta_exe timeout -k 5 "$(left_for b "$t0")" "$t" --ignored --test-threads=4 > "$part" 2>&1
        rc=$?
        { echo "# ---- $name --ignored (exit $rc)"; cat "$part"; } >> "$out/b-tests.log"
        passed=$((passed + $(grep -c '^test .* \.\.\. ok$' "$part")))
        failed=$((failed + $(grep -c '^test .* \.\.\. FAILED$' "$part")))
        failures+=$(sed -n 's/^test \(.*\) \.\.\. FAILED$/ \1/p' "$part" | tr '\n' ' ')
        if [ $rc = 124 ] || [ $rc = 137 ]; then
            worst=timeout
            failures+=" $name(cut at the cap)"
            break
        fi
        [ $rc = 0 ] || worst=FAIL
    done
    local detail="$passed of $total GPU tests passed, $failed failed"
    [ -n "${failures// /}" ] && detail+=":$failures"
    record b "$worst" "$detail" "$t0"
}

phase_c() {
    local t0=$SECONDS
    : > "$out/c-timing.jsonl"
    if [ "$HAVE_GPU" = 0 ]; then
        record c "no GPU" "not run" "$t0"
        return
    fi
    sparta_exe timeout -k 5 "$(left_for c "$t0")" "$here/bin/gpu_kernel_timing" > "$out/c-timing.jsonl" 2>> "$out/gpu-check.log"
    local rc=$? rows
    rows=$(grep -c '^{' "$out/c-timing.jsonl")
    case $rc in
        0) record c ok "$rows rows" "$t0" ;;
        124|137) record c timeout "$rows rows before the cap" "$t0" ;;
        *) record c FAIL "exit $rc after $rows rows (gpu-check.log)" "$t0" ;;
    esac
}

phase_d() {
    local t0=$SECONDS act tf32 rc notes=() worst=ok
    : > "$out/d-train.jsonl"
    : > "$out/d-train.log"
    if [ "$HAVE_GPU" = 0 ]; then
        record d "no GPU" "not run; PyTorch: ${TORCH_PY:-none found}" "$t0"
        return
    fi
    for act in relu sparta; do
        local cap=$(left_for d "$t0")
        [ "$cap" -gt "$CAP_D_SPARTA" ] && cap=$CAP_D_SPARTA
        echo "# sparta $act" >> "$out/d-train.log"
        sparta_exe timeout -k 5 "$cap" "$here/bin/gpu_train_step" --act "$act" --steps 3 --warmup 1 \
            >> "$out/d-train.jsonl" 2>> "$out/d-train.log"
        rc=$?
        [ $rc = 0 ] || { worst=FAIL; notes+=("sparta $act: exit $rc"); }
    done
    if [ -z "$TORCH_PY" ]; then
        notes+=("no python3 with torch found: PyTorch peer not run")
        worst=FAIL
    else
        for tf32 in off on; do
            for act in relu sparta; do
                local cap=$(left_for d "$t0")
                [ "$cap" -gt "$CAP_D_TORCH" ] && cap=$CAP_D_TORCH
                echo "# torch $act tf32=$tf32" >> "$out/d-train.log"
                # torch in the environment it was installed with: the caller's.
                if [ -n "$orig_ld_set" ]; then
                    env LD_LIBRARY_PATH="$orig_ld" PYTHONUNBUFFERED=1 timeout -k 5 "$cap" "$TORCH_PY" "$here/torch_peer.py" train \
                        --act "$act" --tf32 "$tf32" --steps 5 --warmup 2 >> "$out/d-train.jsonl" 2>> "$out/d-train.log"
                else
                    env -u LD_LIBRARY_PATH PYTHONUNBUFFERED=1 timeout -k 5 "$cap" "$TORCH_PY" "$here/torch_peer.py" train \
                        --act "$act" --tf32 "$tf32" --steps 5 --warmup 2 >> "$out/d-train.jsonl" 2>> "$out/d-train.log"
                fi
                rc=$?
                [ $rc = 0 ] || { worst=FAIL; notes+=("torch $act tf32 $tf32: exit $rc"); }
            done
        done
    fi
    local IFS=';'
    record d "$worst" "$(grep -c '^{' "$out/d-train.jsonl") runs${notes[*]:+; ${notes[*]}}" "$t0"
}

# The table and the full JSON. Reads every phase's file defensively: a missing or
# malformed one becomes a cell saying so, never a crash.
phase_e() {
    local t0=$SECONDS
    if ! command -v python3 > /dev/null; then
        echo "| phase | status | seconds | result |"
        echo "|---|---|---:|---|"
        local p name title cap
        for p in "${PHASES[@]}"; do
            IFS='|' read -r name title cap <<< "$p"
            [ -n "${STATUS[$name]:-}" ] && echo "| $name $title | ${STATUS[$name]} | ${SECS[$name]} | ${DETAIL[$name]:-} |"
        done
        record e ok "no python3: plain table, gpu-check.json holds the phases only" "$t0"
        return
    fi
    record e ok "table on stdout" "$t0"
    timeout -k 5 "$(left_for e "$t0")" python3 - "$out" << 'PY'
import json, os, statistics, sys

out = sys.argv[1]

def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except Exception as e:  # missing, empty or malformed: say so
        return {"unreadable": f"{name}: {e}"}

def lines(name):
    rows = []
    try:
        with open(os.path.join(out, name)) as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    pass
    except OSError:
        pass
    return rows

report = load("gpu-check.json")
phases = {p["phase"]: p for p in report.get("phases", [])}
probe = load("a-probe.json")
timing = lines("c-timing.jsonl")
train = lines("d-train.jsonl")
rows = []

def row(phase, check, result):
    p = phases.get(phase, {})
    rows.append([f"{phase} {check}", p.get("status", "not run"), str(p.get("seconds", "")), result])

def section_a():
    if probe.get("gpu"):
        cc = probe.get("compute_capability") or ["?", "?"]
        drv = probe.get("driver_cuda_version")
        drv = f"{drv // 1000}.{drv % 1000 // 10}" if isinstance(drv, int) else "?"
        row("a", "device", f"{probe['gpu']}, cc {cc[0]}.{cc[1]}, {probe.get('multiprocessors')} SMs, "
            f"L2 {(probe.get('l2_bytes') or 0) / 2**20:.0f} MiB, driver CUDA {drv}")
        ks = [k for m in probe.get("modules", []) for k in m.get("kernels", [])]
        same = sum(1 for k in ks if k.get("matches_ptxas"))
        row("a", "kernels", f"{probe.get('kernel_origin')} ({probe.get('nvcc')}); {same} of {len(ks)} kernels: "
            "driver registers and local memory = ptxas'")
        ls = probe.get("launches", [])
        bad = [l["module"] for l in ls if not l.get("ok")]
        row("a", "launches", f"{len(ls) - len(bad)} of {len(ls)} modules launched" + (f"; failed: {', '.join(bad)}" if bad else ""))
        nv = probe.get("nvrtc", {})
        row("a", "NVRTC", "gate.cu compiled and loaded" if nv.get("ok") else f"failed: {nv.get('error')}")
        cd = probe.get("cudnn", {})
        if not cd.get("found"):
            row("a", "cuDNN", "libcudnn not found: convolutions on the implicit-GEMM kernels")
        else:
            choice = "; ".join(cd.get("choices", [])) or cd.get("error")
            v = cd.get("version")
        v = f"{v // 10000}.{v % 10000 // 100}.{v % 100}" if isinstance(v, int) else v
        row("a", "cuDNN", f"version {v}: {choice}")
        row("a", "libraries", " ".join(probe.get("libraries", [])) or "none mapped")
        if probe.get("problems"):
            row("a", "problems", " | ".join(probe["problems"][:5]) + (" …" if len(probe["problems"]) > 5 else ""))
    else:
        row("a", "device", f"no GPU: {probe.get('why') or probe.get('unreadable') or phases.get('a', {}).get('detail', '?')}")
    try:
        with open(os.path.join(out, "a-probe.log")) as f:
            notes = [l[2:].strip() for l in f if l.startswith(("# glibc", "# libstdc++"))]
    except OSError as e:
        notes = [f"a-probe.log: {e}"]
    row("a", "glibc", "; ".join(notes) or "not checked")

def section_b():
    row("b", "GPU tests", phases.get("b", {}).get("detail", "not run"))

def section_c():
    kernels = [t for t in timing if t.get("bench") == "kernel"]
    if not kernels:
        row("c", "kernels", phases.get("c", {}).get("detail", "not run"))
    for placement in ["L2-resident", "near L2 size", "beyond L2"]:
        for op in ["gate_fwd", "gate_unfused_fwd", "relu_fwd", "gate_bwd", "relu_bwd"]:
            sel = [t for t in kernels if t.get("placement") == placement and t.get("op") == op]
            if not sel:
                continue
            gbs = statistics.median(t["gb_per_s"] for t in sel)
            pct = statistics.median(t["percent_of_copy"] for t in sel)
            allocs = sum(t.get("device_allocations_timed", 0) for t in sel)
            shapes = ", ".join(t["shape"] for t in sel)
            row("c", f"{op}, {placement}", f"median {gbs:.0f} GB/s, {pct:.0f} % of copy over {len(sel)} shapes ({shapes})"
                + (f"; {allocs} allocations while timed" if allocs else ""))
    for t in timing:
        if t.get("bench") == "sparta_layer_fwd_bwd":
            row("c", f"layer {t['shape']}", f"SPARTA fwd+bwd {t['sparta_ms']:.3f} ms = {t['sparta_over_relu']:.1f}× ReLU's {t['relu_ms']:.3f} ms")

def section_d():
    ours = {t["act"]: t for t in train if str(t.get("framework", "")).startswith("sparta")}
    peer = {(t["act"], t.get("tf32")): t for t in train if str(t.get("framework", "")).startswith("pytorch")}
    if not ours and not peer:
        row("d", "train step", phases.get("d", {}).get("detail", "not run"))
    for act in ["relu", "sparta"] if ours or peer else []:
        s = ours.get(act)
        cells = []
        if s:
            cells.append(f"sparta {s['images_per_s']:.0f} img/s, {s['peak_memory_bytes'] / 2**20:.0f} MiB, "
                         f"{s['device_allocations_after_warmup']} allocations after warm-up")
        else:
            cells.append("sparta: no result (d-train.log)")
        for tf32 in ["off", "on"]:
            t = peer.get((act, tf32))
            if t and t.get("images_per_s"):
                ratio = f", sparta/torch {s['images_per_s'] / t['images_per_s']:.2f}" if s else ""
                cells.append(f"torch TF32 {tf32} {t['images_per_s']:.0f} img/s{ratio}")
            else:
                cells.append(f"torch TF32 {tf32}: no result")
        row("d", f"ResNet-18 {act}", "; ".join(cells))


for name, section in [("a", section_a), ("b", section_b), ("c", section_c), ("d", section_d)]:
    try:
        section()
    except Exception as e:  # a field missing or of another type: say so, go on
        row(name, "report", f"could not read this phase's results: {e!r}")

row("e", "files", f"gpu-check.json and the phase files in {out}")

print("| check | status | s | result |")
print("|---|---|---:|---|")
for r in rows:
    print("| " + " | ".join(c.replace("|", "/") for c in r) + " |")

report.update({"probe": probe, "timing": timing, "train": train, "table": rows})
with open(os.path.join(out, "gpu-check.json"), "w") as f:
    json.dump(report, f, indent=1)
PY
    local rc=$?
    [ $rc = 0 ] || record e FAIL "report step exited $rc; gpu-check.json holds the phases only" "$t0"
}

run() {
    if [ ! -f "$here/BUILD_INFO" ] || [ ! -d "$here/bin" ]; then
        echo "$here is not a bundle: build one with scripts/build-gpu-bundle.sh and run its gpu-check.sh" >&2
        return 1
    fi
    out="${OUT:-$here/../gpu-out}"
    mkdir -p "$out"
    out="$(cd "$out" && pwd)"
    : > "$out/gpu-check.log"
    work="$(mktemp -d)"
    run_deadline=$((SECONDS + $(total_cap)))
    TORCH_PY="$(find_torch_python)"
    SPARTA_LD="$(sparta_library_path)"
    log "gpu-check: bundle $(sed -n 's/^commit=//p' "$here/BUILD_INFO"), output in $out"
    phase_a
    [ "$GLIBC_OK" = 1 ] || log "the bundle needs a newer glibc or libstdc++ than this machine has (a-probe.log)"
    phase_b
    phase_c
    phase_d
    phase_e
    rm -rf "$work"
    local p name title cap failed=0 nogpu=0
    for p in "${PHASES[@]}"; do
        IFS='|' read -r name title cap <<< "$p"
        case "${STATUS[$name]:-}" in
            ok) ;;
            "no GPU") nogpu=1 ;;
            *) failed=1 ;;
        esac
    done
    [ $failed = 1 ] && return 1
    [ $nogpu = 1 ] && return 2
    return 0
}

# The whole run on a machine without a GPU, then checks of what it left.
selftest() {
    local tmp problems=()
    tmp="$(mktemp -d)"
    mkdir -p "$tmp/out"
    OUT="$tmp/out" run > "$tmp/stdout" 2> "$tmp/stderr"
    local rc=$?
    cat "$tmp/stdout"
    [ $rc = 2 ] || problems+=("run exited $rc, not 2 (no GPU)")
    local p name title cap
    for p in "${PHASES[@]}"; do
        IFS='|' read -r name title cap <<< "$p"
        local want="no GPU"
        [ "$name" = e ] && want=ok
        [ "${STATUS[$name]:-}" = "$want" ] || problems+=("phase $name: '${STATUS[$name]:-missing}', want '$want'")
    done
    grep -q '^| check | status | s | result |$' "$tmp/stdout" || problems+=("no table on stdout")
    grep -q '^| a glibc ' "$tmp/stdout" || problems+=("no glibc row in the table")
    python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); assert [p["phase"] for p in r["phases"]] == list("abcde"), r["phases"]; assert r["table"]' \
        "$tmp/out/gpu-check.json" 2> "$tmp/json-error" || problems+=("gpu-check.json: $(tail -n 1 "$tmp/json-error")")
    local bundled
    bundled=$(sed -n 's/^gpu_tests=//p' "$here/BUILD_INFO")
    [[ "${DETAIL[b]:-}" == "${bundled:-?} GPU tests in "* ]] && [ "${bundled:-0}" -gt 0 ] ||
        problems+=("phase b: '${DETAIL[b]:-}', but the bundle was built with ${bundled:-?} GPU tests")
    local t listed
    for t in "$here"/tests/*; do
        listed=$("$t" --list --ignored 2> /dev/null | grep ': test$' | grep -v '^\(.*::\)\?gpu_[A-Za-z0-9_]*: test$')
        [ -z "$listed" ] || problems+=("$(basename "$t"): ignored tests that are not gpu_*: $listed")
    done
    local files
    files=$(find "$tmp/out" -type f | wc -l)
    [ "$files" -le 8 ] || problems+=("$files files under \$OUT; at most 8 come back from the device")
    [ -z "$(find "$tmp/out" -mindepth 3)" ] || problems+=("files more than 2 folders deep under \$OUT")
    [ -z "$(find "$tmp/out" -type f -printf '%f\n' | grep -v '^[A-Za-z0-9._-]*$')" ] || problems+=("file names outside [A-Za-z0-9._-]")
    if [ ${#problems[@]} = 0 ]; then
        echo "selftest: ok (every phase said what it must without a GPU; $files files; table and gpu-check.json made)"
        rm -rf "$tmp"
        return 0
    fi
    echo "selftest: FAILED (output kept in $tmp)"
    printf '  %s\n' "${problems[@]}"
    cat "$tmp/stderr" >&2
    return 1
}

case "$mode" in
    plan) plan ;;
    run) run ;;
    selftest) selftest ;;
    *) echo "usage: $0 [run|plan|selftest]" >&2; exit 2 ;;
esac
