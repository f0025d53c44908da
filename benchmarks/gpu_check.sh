#!/usr/bin/env bash
# One command for a lent GPU machine (docs/gpu-check.md): the tests of the CUDA code paths, then
# timings of training steps (-O with the tiny random Stable Diffusion, with --vram_O, with the
# exemplar prior) and of the field, with peak GPU memory, beside the same figures on the CPU, then
# one summary. Without CUDA, or with --cpu, the same steps run smaller on the CPU (CI runs that).
#
#   bash benchmarks/gpu_check.sh [--cpu] [--quick] [--out DIR]
#
#   --cpu     the CPU fallback even where CUDA is available
#   --quick   the smallest sizes and a few of the tests (tests/test_gpu_check.py uses it)
#   --out     where the figures go (default: $OUT when set, else workspace/gpu_check)
#
# Writes env.json, pytest.log, pytest.xml, timing.json, timing.log, gpu_check.json and
# gpu_check.md there. Exit code 0 when every part passed, else 1 with one line naming the failed ones.
set -euo pipefail

usage() { sed -n '7,11p' "$0" | sed 's/^# \{0,1\}//'; }

force_cpu=0
quick=0
out="${OUT:-}"
while [ $# -gt 0 ]; do
    case "$1" in
        --cpu) force_cpu=1 ;;
        --quick) quick=1 ;;
        --out) out="${2:?--out needs a folder}"; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "gpu_check: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
if [ -n "$out" ]; then # relative to where the script was called from
    mkdir -p "$out"
    out="$(cd "$out" && pwd)"
fi
cd "$(dirname "$0")/.."
if [ -z "$out" ]; then
    mkdir -p workspace/gpu_check
    out="$PWD/workspace/gpu_check"
fi

# GPU_CHECK_PYTHON: the interpreter to use (tests/test_gpu_check.py passes its own).
if [ -n "${GPU_CHECK_PYTHON:-}" ]; then PY="$GPU_CHECK_PYTHON"; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
for f in env.json pytest.log pytest.xml timing.json timing.log gpu_check.json gpu_check.md; do rm -f "$out/$f"; done
scratch="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
export DREAMFUSION_CACHE="$scratch/cache" # exemplar image sets: rendered once per run, not into ~/.cache
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
started=$SECONDS

# --- device ------------------------------------------------------------------------------------
if ! device="$("$PY" -c 'import sys, torch; print("cuda" if sys.argv[1] == "0" and torch.cuda.is_available() else "cpu")' "$force_cpu")"; then
    echo "gpu_check: $PY cannot import torch; nothing can be checked" >&2
    exit 1
fi
if [ "$device" = cuda ]; then
    # Worst case about 340 s in all (probes ~20 s, tests 150 s, timings 165 s): under 6 minutes.
    mode=gpu size=full pytest_limit=150 timing_limit=165 budget=135
else
    mode="cpu fallback" size=small pytest_limit=150 timing_limit=150 budget=110
    [ "$force_cpu" = 1 ] || echo "gpu_check: no CUDA device here: running the CPU fallback"
fi
if [ "$quick" = 1 ]; then
    mode="$mode, quick" size=tiny pytest_limit=90 timing_limit=90 budget=60
fi
echo "== gpu_check: $mode, python $PY, output $out"

# --- packages: what the GPU machine lacks travels as wheels (make gpu-wheels) --------------------
status_packages=ok
detail_packages=""
find_missing() {
    "$PY" -c 'import importlib.util as u, sys; print(" ".join(m for m in sys.argv[1:] if u.find_spec(m) is None))' "$@"
}
missing="$(find_missing diffusers trimesh xatlas mcubes pymeshlab)"
site=""
wheels=(benchmarks/gpu_wheels/*.whl)
if [ -n "$missing" ] && [ -e "${wheels[0]}" ]; then
    site="$scratch/site"
    # --no-deps: the folder holds exactly the wheels to add; torch and the rest are the machine's own.
    if "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --no-cache-dir \
        --target "$site" "${wheels[@]}"; then
        export PYTHONPATH="$PYTHONPATH:$site"
        echo "installed ${#wheels[@]} carried wheels ($(du -sh benchmarks/gpu_wheels | cut -f1)) into $site (missing here: $missing)"
        missing="$(find_missing diffusers trimesh xatlas mcubes pymeshlab)"
    else
        status_packages=failed
        detail_packages="pip could not install benchmarks/gpu_wheels/*.whl; "
    fi
fi
for module in $missing; do
    case "$module" in
        diffusers | trimesh)
            status_packages=failed
            detail_packages+="$module missing (run 'make gpu-wheels' here and carry benchmarks/gpu_wheels); "
            echo "MISSING: $module, needed by the SDS/training checks; carry it: make gpu-wheels" ;;
        *)
            detail_packages+="$module not here (skipped); "
            echo "skipped: $module is not installed and not carried (compiled; nothing this check runs imports it)" ;;
    esac
done
"$PY" benchmarks/gpu_check.py env --out "$out" ${site:+--carried "$site"} || status_packages=failed

# --- tests of the device code paths --------------------------------------------------------------
tests=(tests/test_device_paths.py)
if [ "$device" = cuda ]; then
    # The CPU tests of the same parts, under this machine's torch/transformers and carried diffusers.
    tests+=(tests/test_encoders.py tests/test_fields.py tests/test_renderers.py tests/test_occupancy_grid.py
        tests/test_rasterizer.py tests/guidance/test_sds.py tests/guidance/test_stable_diffusion_prior.py)
fi
only=()
[ "$quick" = 1 ] && only=(-k "hash_grid or rasterizer or sds_gradient")
echo "== pytest (DREAMFUSION_TEST_DEVICE=$device, at most $pytest_limit s): ${tests[*]}"
status_pytest=ok
set +e
DREAMFUSION_TEST_DEVICE="$device" timeout "$pytest_limit" "$PY" -m pytest -q -p no:cacheprovider -m "not slow" \
    --junitxml="$out/pytest.xml" ${only[@]+"${only[@]}"} "${tests[@]}" 2>&1 | tee "$out/pytest.log"
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" = 124 ]; then status_pytest="failed (timed out after $pytest_limit s)"; elif [ "$rc" != 0 ]; then status_pytest="failed (exit $rc)"; fi

# --- timings ------------------------------------------------------------------------------------
timing_args=(time --device "$device" --size "$size" --out "$out" --budget-s "$budget")
[ "$device" = cuda ] && timing_args+=(--cpu-column)
echo "== timing ($size, at most $timing_limit s): python benchmarks/gpu_check.py ${timing_args[*]}"
status_timing=ok
set +e
timeout "$timing_limit" "$PY" benchmarks/gpu_check.py "${timing_args[@]}" 2>&1 | tee "$out/timing.log"
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" = 124 ]; then status_timing="failed (timed out after $timing_limit s)"; elif [ "$rc" != 0 ]; then status_timing="failed (exit $rc)"; fi

# --- summary ------------------------------------------------------------------------------------
echo "== summary ($((SECONDS - started)) s)"
"$PY" benchmarks/gpu_check.py report --out "$out" --mode "$mode" --device "$device" \
    --status "packages=$status_packages" --status "pytest=$status_pytest" --status "timing=$status_timing" \
    --detail "packages=${detail_packages%; }" || echo "gpu_check: the summary could not be written" >&2
failed=()
[ "$status_packages" = ok ] || failed+=(packages)
[ "$status_pytest" = ok ] || failed+=("pytest: $status_pytest")
[ "$status_timing" = ok ] || failed+=("timing: $status_timing")
if [ ${#failed[@]} -gt 0 ]; then
    echo "gpu_check FAILED: $(IFS=';'; echo "${failed[*]}" | sed 's/;/; /g') (logs in $out)"
    exit 1
fi
echo "gpu_check passed: $mode, $((SECONDS - started)) s; figures in $out"
