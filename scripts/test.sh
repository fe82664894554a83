#!/usr/bin/env bash
# The one test command: installs everything the suite needs, then runs all of it.
#   bash scripts/test.sh [pytest arguments]
# Makes a virtualenv (.venv, or $AMLMM_VENV), installs the project with its test extra,
# installs Azurite (the Azure Storage emulator, from npm) under .cache/, and runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/python-env.sh

if ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
    else
        echo "npm is needed to install Azurite (the Azure Storage emulator)" >&2
        exit 1
    fi
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e ".[test,ray]"

AZURITE=.cache/azurite
if [ ! -f "$AZURITE/node_modules/azurite/dist/src/blob/main.js" ]; then
    npm install --prefix "$AZURITE" --no-audit --no-fund --loglevel=error azurite@3
fi

# Chromium (Debian's) for the browser test of the widgets; never `playwright install`.
if [ ! -x "${AMLMM_CHROMIUM:-/usr/bin/chromium}" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null
    else
        echo "chromium is needed for the browser test (tests/test_browser.py)" >&2
        exit 1
    fi
fi

exec "$VENV/bin/python" -m pytest "$@"
