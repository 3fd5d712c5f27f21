"""LLM throughput: completions per minute and output tokens/s of the backends on SmolLM2, on this machine.

    .venv-vllm/bin/python benchmarks/llm_throughput.py [--completions 8] [--max-tokens 256]

Runs in .venv-vllm (vLLM pins its own torch; transformers is installed there too). Every row
answers the real edit prompt of templates/fractalnet.py, the prompt a search round sends:

- vllm, batch 1: `--completions` sequential calls of one completion each (seeds 0, 1, …);
- vllm, batch 8: the same number of completions, 8 per call (`SamplingParams(n=8)`, one `chat`);
- transformers, batch 1 and 8: the same, through `model.generate` on the same weights
  (`--batches "vllm=1,8;transformers=1"` leaves out its slow batch 8 on two cores).

Both backends load the safetensors copy of SmolLM2-135M-Instruct (runs/models/smollm2) in the
same dtype, so the rows differ by engine only. Engine start-up is timed apart from generation.
A completion "yields a Net" when its code, spliced into the template, parses and defines
class Net; "valid" when it also passes the static validator (policy, contract, regions).
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas_agent.device import cpu_name  # noqa: E402


@dataclass
class Row:
    backend: str
    batch: int
    completions: int
    seconds: float
    tokens_out: int
    yields_net: int
    valid: int
    start_s: float

    @property
    def per_minute(self) -> float:
        return 60 * self.completions / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_out / self.seconds


def _yields_net(source: str | None) -> bool:
    if source is None:
        return False
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    return any(isinstance(node, ast.ClassDef) and node.name == "Net" for node in tree.body)


def _measure(backend, label: str, prompt: str, template_source: str, validator, completions: int, batch: int,
             max_tokens: int, start_s: float) -> Row:
    from nas_agent.llm.base import Sampling
    from nas_agent.llm.propose import _extract, splice

    results = []
    started = time.perf_counter()
    for call, first in enumerate(range(0, completions, batch)):
        n = min(batch, completions - first)
        results += backend.generate([prompt], Sampling(max_tokens=max_tokens, n=n, seed=call))
    seconds = time.perf_counter() - started
    yields, valid = 0, 0
    for completion in results:
        extraction = _extract(completion.text, template_source)
        source = splice(template_source, extraction.code)[0] if extraction.code is not None else None
        if _yields_net(source):
            yields += 1
            valid += validator.validate(source, "benchmark").ok
    return Row(label, batch, len(results), seconds, sum(c.tokens_out for c in results), yields, valid, start_s)


def _batches(spec: str, backend: str) -> list[int]:
    """Batch sizes for `backend` from "1,8" (every backend) or "vllm=1,8;transformers=1"."""
    if "=" not in spec:
        return [int(b) for b in spec.split(",")]
    for part in spec.split(";"):
        name, _, sizes = part.partition("=")
        if name.strip() == backend:
            return [int(b) for b in sizes.split(",")]
    return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--completions", type=int, default=8, help="completions per row")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--backends", default="vllm,transformers")
    parser.add_argument("--batches", default="1,8", help="batch sizes per backend, e.g. vllm=1,8;transformers=1")
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    from nas_agent.llm.models import SMOLLM2_CONVERTED
    from nas_agent.llm.propose import Proposer
    from nas_agent.space.template import load_template, load_templates
    from nas_agent.validate.pipeline import Validator

    console = Console(width=None if sys.stdout.isatty() else 160)  # a log keeps the whole table
    if not (SMOLLM2_CONVERTED / "config.json").exists():
        console.print(f"error: no converted SmolLM2 at {SMOLLM2_CONVERTED}: run `make setup`")
        return 2
    model = str(SMOLLM2_CONVERTED)
    template = load_template("templates/fractalnet.py")
    validator = Validator(smoke=None, templates=load_templates())
    prompt = Proposer(backend=None, sampling=None).edit_prompt(template.source, "template")
    console.print(f"device: CPU, {cpu_name()}, {os.cpu_count()} cores; model SmolLM2-135M-Instruct (float32); "
                  f"edit prompt of templates/fractalnet.py ({len(prompt):,} characters); "
                  f"{args.completions} completions of at most {args.max_tokens} tokens per row")

    rows: list[Row] = []
    for name in args.backends.split(","):
        started = time.perf_counter()
        if name == "vllm":
            from nas_agent.llm.vllm_backend import VLLMBackend

            backend = VLLMBackend(model, max_model_len=4096, dtype="float32", seed=0)
        elif name == "transformers":
            from nas_agent.llm.transformers_backend import TransformersBackend

            backend = TransformersBackend(model, device="cpu", dtype="float32")
        else:
            console.print(f"error: unknown backend {name!r} (vllm, transformers)")
            return 2
        start_s = time.perf_counter() - started
        for batch in _batches(args.batches, name):
            console.print(f"[dim]{name}, batch {batch} …[/]")
            rows.append(_measure(backend, name, prompt, template.source, validator, args.completions, batch,
                                 args.max_tokens, start_s))
            row = rows[-1]  # printed as it comes, so a run cut short still reports what it measured
            console.print(f"[dim]  {row.completions} completions in {row.seconds:.1f} s, "
                          f"{row.tokens_per_s:.1f} output tokens/s[/]")
        backend.close()

    table = Table(title="LLM throughput (SmolLM2-135M-Instruct, CPU)")
    for column in ("backend", "batch", "start s", "completions", "seconds", "completions/min", "output tokens/s",
                   "tokens/completion", "yield a Net", "statically valid"):
        table.add_column(column, justify="left" if column == "backend" else "right")
    for row in rows:
        table.add_row(row.backend, str(row.batch), f"{row.start_s:.1f}", str(row.completions), f"{row.seconds:.1f}",
                      f"{row.per_minute:.1f}", f"{row.tokens_per_s:.1f}", f"{row.tokens_out / row.completions:.0f}",
                      f"{row.yields_net}/{row.completions}", f"{row.valid}/{row.completions}")
    console.print(table)
    by_key = {(row.backend, row.batch): row for row in rows}
    for name in ("vllm", "transformers"):
        if (name, 1) in by_key and (name, 8) in by_key:
            console.print(f"{name}: batch 8 / batch 1 output tokens/s = "
                          f"{by_key[name, 8].tokens_per_s / by_key[name, 1].tokens_per_s:.2f}x")
    for batch in sorted({row.batch for row in rows}):
        if ("vllm", batch) in by_key and ("transformers", batch) in by_key:
            console.print(f"batch {batch}: vllm / transformers output tokens/s = "
                          f"{by_key['vllm', batch].tokens_per_s / by_key['transformers', batch].tokens_per_s:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
