"""How much of the hostile corpora the static policy stops by itself, file by file.

    .venv/bin/python benchmarks/policy_coverage.py

Static only: nothing is run. The corpora are built to be stopped by the OS walls and the
driver's scoring with the policy switched off; this shows what the first wall catches anyway.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from nas_agent.validate.policy import check_policy

HOSTILE = Path(__file__).resolve().parents[1] / "tests" / "hostile"


def main() -> None:
    table = Table(title="the static policy on the forge and escape corpora")
    for column in ("corpus", "file", "policy verdict"):
        table.add_column(column, overflow="fold")
    stopped = total = 0
    for corpus in ("forge", "escape"):
        for path in sorted((HOSTILE / corpus).glob("*.py")):
            verdict = check_policy(path.read_text())
            total += 1
            stopped += not verdict.ok
            table.add_row(corpus, path.stem, "passes (the sandbox and the driver stop it)" if verdict.ok
                          else verdict.reason[:100])
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(table)
    console.print(f"{stopped} of {total} files rejected by the policy alone")


if __name__ == "__main__":
    main()
