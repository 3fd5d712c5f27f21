"""libcst parses per candidate on the search path: propose (mutate), validate (static stages), register.

    python benchmarks/parses_per_candidate.py [--candidates 40]

Counts calls of libcst's module parser (the expensive one) and expression parser while the
mutate strategy proposes edits of the template and the search loop validates and catalogues
them, and prints one table row per step with parses per candidate and milliseconds per candidate.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections import Counter
from pathlib import Path

import libcst
from rich.console import Console
from rich.table import Table

from nas_agent.catalog import Catalog
from nas_agent.config import load_config
from nas_agent.search.mutate import MutateStrategy
from nas_agent.search.strategy import Parent, RoundContext, template_parent
from nas_agent.search.trainer import CandidateFile, register
from nas_agent.space import FractalSpace, load_template, load_templates
from nas_agent.validate import Validator

COUNTS: Counter = Counter()


def _counting(name: str, parse):
    def counted(*args, **kwargs):
        COUNTS[name] += 1
        return parse(*args, **kwargs)
    return counted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=40)
    args = parser.parse_args()
    libcst.parse_module = _counting("module", libcst.parse_module)
    libcst.parse_expression = _counting("expression", libcst.parse_expression)

    config = load_config("quick")
    template = load_template(config.template)
    with tempfile.TemporaryDirectory() as tmp, Catalog(Path(tmp) / "catalog.sqlite") as catalog:
        validator = Validator(templates=load_templates(), catalog=catalog)
        validator.check_static(template.source, "warm-up")   # the policy's first call builds its tables
        # Parents: the template and four sampled points of the space, as a round of a search has them.
        parents = [template_parent(template)] + [
            Parent(f"variant-{i}", template.render(params), None, params)
            for i, params in enumerate(FractalSpace().sample(4, seed=1))]
        context = RoundContext(1, "bench", config, catalog, template, parents, random.Random(0))
        rows = []

        def step(label: str, work):
            COUNTS.clear()
            started = time.perf_counter()
            out = work()
            ms = (time.perf_counter() - started) * 1000
            rows.append((label, COUNTS["module"], COUNTS["expression"], ms))
            return out

        proposals = step("propose (mutate)", lambda: MutateStrategy(FractalSpace()).propose(context, args.candidates))
        validations = step("validate (static stages)",
                           lambda: [validator.validate(p.source, f"#{i}") for i, p in enumerate(proposals)])
        step("register in the catalog", lambda: [
            register(catalog, CandidateFile.of(v, Path(v.label), template.family), config, origin="mutate")
            for v in validations if v.ok])

    n = len(proposals)
    table = Table(title=f"libcst parses per candidate ({n} mutate candidates of {template.path.name})")
    for column in ("step", "module parses / candidate", "expression parses / candidate", "ms / candidate"):
        table.add_column(column, justify="right" if column != "step" else "left")
    for label, modules, expressions, ms in rows:
        table.add_row(label, f"{modules / n:.2f}", f"{expressions / n:.2f}", f"{ms / n:.1f}")
    total = [sum(r[i] for r in rows) for i in (1, 2, 3)]
    table.add_row("whole path", f"{total[0] / n:.2f}", f"{total[1] / n:.2f}", f"{total[2] / n:.1f}")
    Console().print(table)


if __name__ == "__main__":
    main()
