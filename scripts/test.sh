#!/usr/bin/env bash
# Fresh venv, CPU torch, the package with its test extras and the test-only parity references, then the
# default (fast) test suite. Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${ANYRESTORE_VENV:-.venv}
python3 -m venv "$VENV"
. "$VENV/bin/activate"
pip install -q torch==2.13.0
pip install -q -e ".[test]"
# spandrel declares torchvision as a dependency; it is only a test-time parity reference, so install without deps.
pip install -q --no-deps spandrel==0.4.2 spandrel_extra_arches==0.2.0 einops typing_extensions
python -m pytest "$@"
