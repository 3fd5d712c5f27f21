"""LLM validity: how many of SmolLM2's proposals are valid and train, per backend and mode, on this machine.

    .venv-vllm/bin/python benchmarks/llm_validity.py [--proposals 16] [--batch 4] \
        [--backends transformers,vllm,serve] [--modes params,code] [--config quick]

Runs in .venv-vllm (vLLM pins its own torch; transformers is installed there too). Each row
asks SmolLM2-135M-Instruct (runs/models/smollm2, float32) for `--proposals` candidates on the
config's template and space, `--batch` per call, the way a search round does: through the
Proposer (params mode under the space's JSON schema, code mode with the edit prompt), every
answer judged by the config's validator with the jailed smoke run on, and every accepted
candidate registered in the row's own catalog, so later calls see it as tried (params mode
cuts it out of the grammar; a repeat is a duplicate).

- backends: `transformers` (llguidance token masks), `vllm` (in process, structured outputs),
  `serve` (`vllm serve` + the openai backend, structured outputs in the request);
- statically valid: passed parsing, the contract, the policy and the duplicate check;
- trains: also passed the smoke run, a training step (forward, loss, backward) on a
  CIFAR-shaped batch inside the jail, under the config's size and cost limits;
- s / valid: generation seconds per candidate that trains (engine start-up reported apart).

SmolLM2-135M is a plumbing-size model: the table measures the backends and modes, not what a
real proposer would write.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas_agent.device import cpu_name  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Row:
    backend: str
    mode: str
    start_s: float
    proposals: int = 0
    completions: int = 0       # llm_call rows: more than proposals when repeats within a request were asked again
    static_valid: int = 0
    trains: int = 0
    seconds: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    stages: Counter = field(default_factory=Counter)   # rejection stage -> count

    def share(self, count: int) -> str:
        return f"{count}/{self.proposals} ({100 * count / max(self.proposals, 1):.0f}%)"

    @property
    def per_valid(self) -> str:
        return f"{self.seconds / self.trains:.1f}" if self.trains else "-"


def _open_backend(name: str, stack: ExitStack, workdir: Path):
    """The backend `name` on the converted SmolLM2; `serve` starts `vllm serve` for the rest of `stack`."""
    from nas_agent.llm.models import SMOLLM2_CONVERTED

    model = str(SMOLLM2_CONVERTED)
    if name == "transformers":
        from nas_agent.llm.transformers_backend import TransformersBackend

        return TransformersBackend(model, device="cpu", dtype="float32")
    if name == "vllm":
        from nas_agent.llm.vllm_backend import VLLMBackend

        return VLLMBackend(model, max_model_len=4096, dtype="float32", seed=0)
    if name == "serve":
        from nas_agent.llm.openai_backend import OpenAIBackend
        from nas_agent.llm.serve import vllm_server

        vllm = Path(sys.executable).parent / "vllm"
        url = stack.enter_context(vllm_server(vllm, SMOLLM2_CONVERTED, workdir / "serve.log",
                                              extra=("--dtype", "float32")))
        return OpenAIBackend("smollm2", url, retries=1, timeout_s=600, concurrency=4)
    raise SystemExit(f"error: unknown backend {name!r} (transformers, vllm, serve)")


def _measure(backend, label: str, mode: str, config, proposals: int, batch: int, workdir: Path,
             start_s: float, progress) -> Row:
    """`proposals` answers in `mode`, judged and (when accepted) registered like a search round does."""
    from nas_agent.catalog import Catalog
    from nas_agent.llm.propose import Proposer
    from nas_agent.search.llm_strategy import judge_answer
    from nas_agent.search.trainer import CandidateFile, register
    from nas_agent.space.template import load_template
    from nas_agent.validate import validator_for

    template = load_template(config.template)
    parent = f"template:{template.path.name}"
    row = Row(label, mode, start_s)
    with Catalog(workdir / f"{label}-{mode}.sqlite") as catalog:
        proposer = Proposer.for_config(config, backend, catalog=catalog, run_id=f"{label}-{mode}")
        validator = validator_for(config, catalog=catalog, smoke=True, workdir=workdir / "smoke")
        for call in range(0, proposals, batch):
            n = min(batch, proposals - call)
            # A seed per call: the same prompt twice would otherwise draw the same answers.
            proposer.sampling = replace(proposer.sampling, seed=call)
            proposer.params_sampling = replace(proposer.params_sampling, seed=call)
            started = time.perf_counter()
            answers = proposer.propose(template.source, parent, n, mode)
            row.seconds += time.perf_counter() - started
            for answer in answers:
                validation = judge_answer(catalog, validator, answer)
                verdict = validation.verdict
                row.proposals += 1
                row.tokens_in += answer.completion.tokens_in
                row.tokens_out += answer.completion.tokens_out
                row.static_valid += verdict.ok or verdict.stage == "smoke"
                row.trains += verdict.ok
                if verdict.ok:
                    candidate = CandidateFile.of(validation, Path(f"answer-{answer.call_id}"), template.family)
                    name = register(catalog, candidate, config, origin="llm", parent=parent, run_id=proposer.run_id)
                    validator.registered_as(validation, name)
                else:
                    row.stages[verdict.stage] += 1
            progress(row)
        row.completions = len(catalog.llm_calls(run_id=proposer.run_id))
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proposals", type=int, default=16, help="proposals per row")
    parser.add_argument("--batch", type=int, default=4, help="answers per call (SamplingParams n)")
    parser.add_argument("--backends", default="transformers,vllm,serve")
    parser.add_argument("--modes", default="params,code")
    parser.add_argument("--config", default="quick", help="config whose template, space and validator are used")
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    from nas_agent.config import load_config
    from nas_agent.llm import LLMError
    from nas_agent.llm.models import SMOLLM2, resolve_model

    console = Console(width=None if sys.stdout.isatty() else 180)   # a log keeps the whole table
    try:
        resolve_model(SMOLLM2, "vllm")      # every row loads the converted copy vLLM needs
    except LLMError as error:
        console.print(f"error: {error}")
        return 2
    config = load_config(args.config)
    console.print(f"device: CPU, {cpu_name()}, {os.cpu_count()} cores; model SmolLM2-135M-Instruct (float32, "
                  f"a plumbing-size model); config {args.config} ({config.template}); {args.proposals} proposals "
                  f"per row, {args.batch} per call; smoke run on")

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="llm-validity-") as tmp:
        workdir = Path(tmp)
        for name in args.backends.split(","):
            with ExitStack() as stack:
                started = time.perf_counter()
                backend = _open_backend(name, stack, workdir)
                stack.callback(backend.close)
                start_s = time.perf_counter() - started
                console.print(f"[dim]{name}: ready in {start_s:.0f} s[/]")
                for mode in args.modes.split(","):
                    rows.append(_measure(backend, name, mode, config, args.proposals, args.batch, workdir, start_s,
                                         lambda r: console.print(f"[dim]  {r.backend} {r.mode}: {r.proposals} "
                                                                 f"answers, {r.trains} train, {r.seconds:.0f} s[/]")))

    table = Table(title="LLM proposals that are valid (SmolLM2-135M-Instruct, CPU)")
    for column in ("backend", "mode", "start s", "proposals", "completions", "statically valid", "trains", "s / valid",
                   "tokens in", "tokens out", "rejections"):
        table.add_column(column, justify="left" if column in ("backend", "mode", "rejections") else "right")
    for row in rows:
        table.add_row(row.backend, row.mode, f"{row.start_s:.0f}", str(row.proposals), str(row.completions),
                      row.share(row.static_valid),
                      row.share(row.trains), row.per_valid, f"{row.tokens_in / max(row.proposals, 1):,.0f}",
                      f"{row.tokens_out / max(row.proposals, 1):,.0f}",
                      ", ".join(f"{stage} {count}" for stage, count in row.stages.most_common()))
    console.print(table)
    console.print("completions: answers generated (a params answer that repeats another of its request is asked "
                  "again); tokens in/out: per proposal; s / valid: generation seconds per proposal that trains")
    return 0


if __name__ == "__main__":
    sys.exit(main())
