#!/bin/sh
# Check archsim's Triton kernels on a lent GPU, time them and PyTorch's paths, and validate the GPU model on those
# rows, in one call of the workplace's `device` tool (issue 14: "archsim measure on it, the CSV committed under
# reports/measured/ with the device's name, and the model validated on it"):
#
#   run(command="sh kernels/measure_on_device.sh", timeout_s=540)
#
# then copy the returned measured-*.csv to reports/measured/ and commit it with validate.txt's figures in the note.
# GRID=heldout times the shapes no calibration has seen (`archsim measure --grid heldout`) into
# measured-heldout-<device>.csv; CHECK_LIMIT_S=0 leaves the kernel tests out.
# Steps, each bounded so that the ones after it still run:
# 1. kernel-tests.txt: tests/test_kernels.py and tests/test_sparse_kernels.py with TRITON_INTERPRET=0, i.e. the
#    kernels compiled for this GPU against the float64 reference (CHECK_LIMIT_S).
# 2. measure.txt: `archsim measure` for each of KERNELS in a process of its own (a kernel that fails to compile
#    leaves the others' rows), all within MEASURE_LIMIT_S. Rows are appended case by case, so a run stopped by its
#    time limit keeps every finished row.
# 3. validate.txt (+ validation.csv, validation.png, skipped.csv): the model against every row measured.
# The device image has python3 with torch, triton, numpy, pandas, click, PyYAML, networkx, matplotlib, pytest and
# pytest-xdist; archsim itself is installed without its dependencies (neither measure nor validate imports simpy
# or dask). Locally, to check the script (tiny shapes under the Triton interpreter, rows marked as not timings):
#   OUT=/tmp/m PYTHON=.venv/bin/python MEASURE_FLAGS=--interpret sh kernels/measure_on_device.sh
set -eu
OUT=${OUT:-/tmp/archsim-measure}
PYTHON=${PYTHON:-python3}
MEASURE_FLAGS=${MEASURE_FLAGS:-}
CHECK_LIMIT_S=${CHECK_LIMIT_S:-150}
MEASURE_LIMIT_S=${MEASURE_LIMIT_S:-270}
GRID=${GRID:-published}
KERNELS=${KERNELS:-flash_fwd,flash_bwd,decode,sdpa_flash,pytorch,naive,lightning,block_sparse,vertical_slash}
repo=$(pwd)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PYTHON=$(command -v "$PYTHON" || { echo "PYTHON=$PYTHON: not found" >&2; exit 127; })
case $PYTHON in /*) ;; *) PYTHON="$repo/$PYTHON" ;; esac  # a relative path would not survive `cd "$site"` below
site=$(mktemp -d)
trap 'rm -rf "$site"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM  # through the EXIT trap: `timeout` ends a run with TERM
"$PYTHON" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target "$site" .
export PYTHONPATH="$site" PYTHONUNBUFFERED=1
cd "$site"  # `python -m` puts the working directory first on sys.path: the installed archsim, not the checkout's
name=$("$PYTHON" -c "import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')")
prefix=measured; [ "$GRID" = published ] || prefix="measured-$GRID"
csv="$OUT/$prefix-$(echo "$name" | tr -c 'A-Za-z0-9.\n' '-').csv"

if [ -z "$MEASURE_FLAGS" ] && [ "$CHECK_LIMIT_S" -gt 0 ]; then  # on the GPU only: the interpreter is what the CPU test suite runs already
    { nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv || true
      (TRITON_INTERPRET=0 timeout "$CHECK_LIMIT_S" "$PYTHON" -m pytest -q -p no:cacheprovider -n 8 \
          "$repo/tests/test_kernels.py" "$repo/tests/test_sparse_kernels.py") || echo "kernel tests exit $?"
    } > "$OUT/kernel-tests.txt" 2>&1
fi

deadline=$(( $(date +%s) + MEASURE_LIMIT_S ))
: > "$OUT/measure.txt"
for kernel in $(echo "$KERNELS" | tr ',' ' '); do
    left=$(( deadline - $(date +%s) ))
    if [ "$left" -le 5 ]; then
        echo "$kernel: not measured, MEASURE_LIMIT_S=$MEASURE_LIMIT_S spent" >> "$OUT/measure.txt"
        continue
    fi
    # shellcheck disable=SC2086  # MEASURE_FLAGS holds several words on purpose
    timeout "$left" "$PYTHON" -m archsim measure $MEASURE_FLAGS --kernels "$kernel" --grid "$GRID" --out "$csv" \
        >> "$OUT/measure.txt" 2>&1 \
        || echo "$kernel stopped (exit $?): the rows appended so far are kept" >> "$OUT/measure.txt"
done
rm -f "$csv.lock"  # `archsim measure`'s lock: no run into the CSV is left, and the device tool returns 8 files
"$PYTHON" -m archsim validate --measurements "$csv" --out "$OUT" > "$OUT/validate.txt" 2>&1 \
    || echo "validate exit $?" >> "$OUT/validate.txt"
grep -E "stopped|not measured|Error|error" "$OUT/measure.txt" | head -n 20 || true
[ -f "$OUT/kernel-tests.txt" ] && tail -n 15 "$OUT/kernel-tests.txt"
tail -n 30 "$OUT/validate.txt"
