#!/bin/sh
# Measure archsim's Triton kernels on a lent GPU and validate the GPU model on those rows, in one call of the
# workplace's `device` tool (issue 14: "archsim measure on it, the CSV committed under reports/measured/ with the
# device's name, and the model validated on it"):
#
#   run(command="sh kernels/measure_on_device.sh", timeout_s=570)
#
# then copy the returned measured-*.csv to reports/measured/ and commit it with validate.txt's figures in the note.
# The device image has python3 with torch, triton, numpy, pandas, click, PyYAML, networkx and matplotlib; archsim
# itself is installed without its dependencies (neither measure nor validate imports simpy or dask). Rows are
# appended case by case, so a run stopped by its time limit keeps every finished row and validate still runs.
# Locally, to check the script (tiny shapes under the Triton interpreter, rows marked as not timings):
#   OUT=/tmp/m PYTHON=.venv/bin/python MEASURE_FLAGS=--interpret sh kernels/measure_on_device.sh
set -eu
OUT=${OUT:-/tmp/archsim-measure}
PYTHON=${PYTHON:-python3}
MEASURE_FLAGS=${MEASURE_FLAGS:-}
MEASURE_LIMIT_S=${MEASURE_LIMIT_S:-420}
mkdir -p "$OUT"
site=$(mktemp -d)
"$PYTHON" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target "$site" .
export PYTHONPATH="$site" PYTHONUNBUFFERED=1
name=$("$PYTHON" -c "import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')")
csv="$OUT/measured-$(echo "$name" | tr -c 'A-Za-z0-9.\n' '-').csv"
# shellcheck disable=SC2086  # MEASURE_FLAGS holds several words on purpose
timeout "$MEASURE_LIMIT_S" "$PYTHON" -m archsim measure $MEASURE_FLAGS --out "$csv" > "$OUT/measure.txt" 2>&1 \
    || echo "measure stopped (exit $?): the rows appended so far are kept" >> "$OUT/measure.txt"
"$PYTHON" -m archsim validate --measurements "$csv" --out "$OUT" > "$OUT/validate.txt" 2>&1 \
    || echo "validate exit $?" >> "$OUT/validate.txt"
tail -n 40 "$OUT/validate.txt"
