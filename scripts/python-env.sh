# Sourced by quickstart.sh and test.sh (from the checkout's root): the Python they build the
# virtualenv with, where that virtualenv is, and the refusal of a Python older than 3.11.
PYTHON=${PYTHON:-python3}
VENV=${AMLMM_VENV:-.venv}

"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"Python 3.11 or newer is needed, not {sys.version.split()[0]}")
PY
