"""Validation throughput: static stages over the 1,200 generated files, dedup lookups, and smoke runs.

    python benchmarks/validate_throughput.py [--files 1200] [--smoke 5]

Prints files per second for each static stage (parse, policy, contract + template regions,
code_hash) and for the whole static pipeline, catalog duplicate lookups per second with
1,200 models catalogued, and the median seconds of a sandboxed smoke run.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import libcst as cst
from rich.console import Console
from rich.table import Table

from nas_agent.catalog import Catalog, ModelRecord, model_name
from nas_agent.search.generate import generate_candidates
from nas_agent.space import FractalSpace, changed_outside_regions, load_template, load_templates
from nas_agent.validate import SmokeLimits, Validator, check_contract, check_policy, code_hash


def _per_second(count: int, seconds: float) -> str:
    return f"{count / seconds:,.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1200)
    parser.add_argument("--smoke", type=int, default=5, help="smoke runs to time (0 skips them)")
    args = parser.parse_args()
    console = Console()

    template = load_template("templates/fractalnet.py")
    templates = load_templates()
    space = FractalSpace.from_config({})
    with tempfile.TemporaryDirectory() as tmp:
        files = generate_candidates(template, space.sample(args.files, seed=0), Path(tmp) / "candidates")
        sources = [c.path.read_text() for c in files]

        timings: dict[str, float] = {}

        def timed(stage: str, work) -> list:
            started = time.perf_counter()
            out = [work(item) for item in stage_inputs[stage]]
            timings[stage] = time.perf_counter() - started
            return out

        stage_inputs = {"parse (libcst)": sources}
        modules = timed("parse (libcst)", cst.parse_module)
        stage_inputs["policy"] = list(zip(modules, sources))
        policy = timed("policy", lambda pair: check_policy(pair[0], text=pair[1]))
        stage_inputs["contract + template regions"] = list(zip(modules, sources))
        contract = timed("contract + template regions",
                         lambda pair: (check_contract(pair[0]), changed_outside_regions(pair[1], template)))
        stage_inputs["code_hash"] = sources
        hashes = timed("code_hash", code_hash)
        assert all(v.ok for v in policy) and all(c.ok and r is None for c, r in contract)

        validator = Validator(templates=templates)
        started = time.perf_counter()
        results = [validator.validate(source, str(i)) for i, source in enumerate(sources)]
        pipeline_seconds = time.perf_counter() - started
        rejected = sum(not r.ok for r in results)

        with Catalog(Path(tmp) / "catalog.sqlite") as catalog:
            for i, (source, digest) in enumerate(zip(sources, hashes)):
                catalog.add_model(ModelRecord(
                    name=model_name("FractalNet", source), code=source,
                    family="FractalNet", task="img-classification", dataset="cifar-10", metric="acc",
                    code_hash=digest, template_params={}, parent=None, origin="generator",
                    struct_hash=f"{i:064x}"))
            lookups = hashes + [f"{i:064x}" for i in range(len(hashes))]
            started = time.perf_counter()
            for digest in hashes:
                assert catalog.find_by_code_hash(digest)
            for i in range(len(hashes)):
                assert catalog.find_by_struct_hash(f"{i:064x}")
            lookup_seconds = time.perf_counter() - started

        smoke_seconds = []
        if args.smoke:
            smoker = Validator(smoke=SmokeLimits(seconds=120), workdir=Path(tmp) / "sandbox")
            for source in sources[:args.smoke]:
                result = smoker.check_smoke(source, smoker.check_static(source, "x"))
                assert result.ok, result.verdict
                smoke_seconds.append(result.smoke_seconds)

    table = Table(title=f"validation throughput: {len(sources)} generated FractalNet files "
                        f"({platform.processor() or platform.machine()}, Python {platform.python_version()})")
    table.add_column("stage")
    table.add_column("files/s", justify="right")
    table.add_column("ms/file", justify="right")
    for stage, seconds in timings.items():
        table.add_row(stage, _per_second(len(sources), seconds), f"{seconds / len(sources) * 1000:.1f}")
    table.add_row("[bold]static pipeline (all of the above)[/]", _per_second(len(sources), pipeline_seconds),
                  f"{pipeline_seconds / len(sources) * 1000:.1f}")
    table.add_row(f"catalog dedup lookups ({len(sources):,} models)", _per_second(len(lookups), lookup_seconds),
                  f"{lookup_seconds / len(lookups) * 1000:.3f}")
    if smoke_seconds:
        table.add_row(f"smoke run in the sandbox (median of {len(smoke_seconds)})",
                      f"{1 / statistics.median(smoke_seconds):.2f}", f"{statistics.median(smoke_seconds) * 1000:.0f}")
    console.print(table)
    console.print(f"false rejections: {rejected} of {len(sources)}")


if __name__ == "__main__":
    main()
