#!/usr/bin/env bash
# The quickstart: install, then run notebooks/01-quickstart.ipynb headless and print what it
# shows (the score among it).
#   bash scripts/quickstart.sh [run_notebook.py options, e.g. --quiet]
# Makes a virtualenv (.venv, or $AMLMM_VENV; the same one scripts/test.sh uses), installs the
# project with its notebooks extra, and runs the notebook top to bottom in a kernel of that
# virtualenv with scripts/run_notebook.py. Exits non-zero, with the failing cell's one-line
# error, if a cell fails. The notebook cleans up after itself: no process is left running.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/python-env.sh

# pip's output goes to a log, shown only if the install fails.
LOG=.cache/quickstart-install.log
mkdir -p .cache
started=$SECONDS
echo "Installing amlmm_magics with its notebooks extra into $VENV ..."
if ! {
    { [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"; } &&
    "$VENV/bin/python" -m pip install --quiet --upgrade pip uv &&
    # uv installs the same packages in seconds (pip took 63-78 s of a 90 s quickstart);
    # pip is the fallback where uv cannot reach an index.
    { "$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" -e ".[notebooks]" ||
      "$VENV/bin/python" -m pip install --quiet -e ".[notebooks]"; }
} >"$LOG" 2>&1; then
    cat "$LOG" >&2
    echo "Installing failed (the log above is in $LOG)." >&2
    exit 1
fi
echo "Installed in $((SECONDS - started)) s. Running notebooks/01-quickstart.ipynb ..."

exec "$VENV/bin/python" scripts/run_notebook.py notebooks/01-quickstart.ipynb "$@"
