#!/usr/bin/env bash
# One call on a GPU host: install what is missing from carried wheels, run the GPU kernel tests on
# the device (not the simulator), time the kernels cpu against gpu at 100k x 1,000 and
# 1M x 2,000 x 4 types, and solve the L instance on --backend gpu. Results go to bench/results/
# (named by host and device) and, when set, to $OUT. Budget: under 8 minutes on an H200 host.
#
#   bash bench/gpu_check.sh            # on the GPU host, from the repository root
#   bash bench/gpu_check.sh --dry-run  # anywhere: the same steps on the CPU at tiny sizes
#
# Wheels: the host reaches no package index. Run `bash bench/gpu_wheels.sh` where pip works; it
# fills .whl/ with what the host's image lacks (pydantic, ortools, highspy, ...), and the call
# carries .whl. WHEELS=DIR overrides the folder.
set -euo pipefail
cd "$(dirname "$0")/.."

DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
if [[ $DRY == 1 ]]; then RESULTS=${RESULTS:-$(mktemp -d)}; else RESULTS=${RESULTS:-bench/results}; fi
LOG_DIR=${OUT:-$RESULTS}
mkdir -p "$RESULTS" "$LOG_DIR"
MARK=$(mktemp)  # results newer than this are this call's
export PYTHONUNBUFFERED=1

step() { printf '\n== %s (%ss)\n' "$1" "$SECONDS"; }

step "packages"
if compgen -G "$WHEELS/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/placement-site "$WHEELS"/*.whl
    export PYTHONPATH="/tmp/placement-site${PYTHONPATH:+:$PYTHONPATH}"
fi
# The import names placement.kernels and placement.solvers map to kernels/ and solvers/ only
# through an install; an editable one builds offline with the image's setuptools.
if ! "$PY" -c "import placement.kernels, placement.solvers" 2>/dev/null; then
    "$PY" -m pip install -q --no-deps --no-build-isolation --no-index -e .
fi
"$PY" - <<'EOF'
import importlib
missing = [m for m in ("numpy", "numba", "pydantic", "pyarrow", "typer", "rich", "yaml", "tomli_w", "ortools", "highspy")
           if importlib.util.find_spec(m) is None]
if missing:
    raise SystemExit(f"gpu_check: missing packages {missing}; run bench/gpu_wheels.sh where pip works and carry .whl")
EOF

if [[ $DRY == 1 ]]; then
    BACKENDS=cpu; KERNEL_SIZES=2kx20; SYNTH_SIZES=2kx20; L_JOBS=2000; L_SITES=20; L_LIMIT=5; SOLVE_BACKEND=cpu
else
    BACKENDS=cpu,gpu; KERNEL_SIZES=100kx1000; SYNTH_SIZES=100kx1000,1Mx2000; L_JOBS=100000; L_SITES=1000
    L_LIMIT=60; SOLVE_BACKEND=gpu
fi

step "device"
DEVICE=$("$PY" -c "from placement.kernels import gpu_status; ok, what = gpu_status(); print(what)")
echo "$DEVICE"
if [[ $DRY == 0 ]] && ! "$PY" -c "from placement.kernels import gpu_status; raise SystemExit(0 if gpu_status()[0] else 1)"; then
    echo "gpu_check: no usable GPU ($DEVICE); --dry-run runs the CPU parts" >&2
    exit 3
fi

step "kernel tests"
if [[ $DRY == 1 ]]; then
    echo "skipped in --dry-run: the GPU kernel tests need a device (CI runs them under the simulator)"
else
    # tests/conftest.py turns the simulator on only where /dev/nvidia* is missing.
    "$PY" -m pytest -q -p no:cacheprovider tests/test_kernels.py 2>&1 | tee "$LOG_DIR/gpu_check_kernel_tests.log"
fi

step "kernel bench: generated instances"
timeout 240 "$PY" -m bench.kernels --backend "$BACKENDS" --sizes "$KERNEL_SIZES" --source generate \
    --repeats 3 --budget-s 60 --out "$RESULTS"
step "kernel bench: 4 GPU types per site"
timeout 240 "$PY" -m bench.kernels --backend "$BACKENDS" --sizes "$SYNTH_SIZES" --source synthetic \
    --repeats 3 --budget-s 60 --out "$RESULTS"

step "L solve on --backend $SOLVE_BACKEND"
INST=/tmp/placement-gpu-check/neocloud-${L_JOBS}x${L_SITES}
"$PY" -m placement.cli.main generate neocloud --jobs "$L_JOBS" --sites "$L_SITES" --seed 0 --out "$INST"
STAMP=$(date -u +%Y-%m-%dT%H%M%S)
SUMMARY="$RESULTS/gpu_check_${STAMP}_$(hostname)_solve_${L_JOBS}x${L_SITES}.json"
timeout $((L_LIMIT * 2 + 60)) "$PY" -m placement.cli.main solve "$INST/portfolio.toml" --jobs "$INST/jobs.parquet" \
    --time-limit "$L_LIMIT" --seed 0 --backend "$SOLVE_BACKEND" --out "$INST/plan.parquet" --summary "$SUMMARY" -q
"$PY" - "$SUMMARY" "$DEVICE" <<'EOF'
import json, sys
path, device = sys.argv[1], sys.argv[2]
s = json.load(open(path))
s["device"] = device
json.dump(s, open(path, "w"), indent=2)
print(f"solve: objective {s['objective']:,.0f} $/h, bound {s['bound']:,.0f}, gap {s['gap']:.2%}, "
      f"{s['seconds']:.1f} s, backend {s['backend']}; stage seconds {s['stats'].get('stage_seconds')}")
EOF
if [[ "$LOG_DIR" != "$RESULTS" ]]; then
    find "$RESULTS" -maxdepth 1 -type f -newer "$MARK" -exec cp {} "$LOG_DIR"/ \;
fi
step "done"
echo "results: $(find "$RESULTS" -maxdepth 1 -type f -newer "$MARK" | sort | tr '\n' ' ')"
