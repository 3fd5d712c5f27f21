"""Live searches on the real CIFAR-10 copy, not the table: strategy mixes at equal budget, several seeds.

    .venv/bin/python benchmarks/live_search.py --data-dir ../shared/data/cifar10-jpeg.tar.gz \\
        --settings random,mutate+optuna --seeds 0,1,2 --budget 8

Each (setting, seed) is a real `nas-agent search` (the jail, real training) in a catalog of its own,
so no search sees another's results; prints the best and mean accuracy of what each one trained.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nas_agent.catalog import Catalog  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--config", default="quick")
    parser.add_argument("--settings", default="random,mutate+optuna")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--budget", type=int, default=8)
    parser.add_argument("--workdir", default=None, help="Where the catalogs go (default: a temporary folder).")
    args = parser.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="live_search-"))
    env = dict(os.environ)
    if args.data_dir:
        env["NAS_AGENT_DATA"] = args.data_dir
    results = []
    for setting in args.settings.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            catalog = work / f"{setting.replace('+', '_')}-{seed}" / "catalog.sqlite"
            started = time.perf_counter()
            run = subprocess.run([sys.executable, "-m", "nas_agent.cli", "search", "-c", args.config, "--catalog",
                                  str(catalog), "--budget", str(args.budget), "--seed", str(seed), "--strategies",
                                  setting], env=env, capture_output=True, text=True, cwd=REPO)
            if run.returncode != 0:
                sys.exit(f"search {setting} seed {seed} failed:\n{run.stderr[-2000:]}")
            with Catalog(catalog) as cat:
                (search,) = [r for r in cat.runs() if r["command"].startswith("nas-agent search")]
                scores = [r["accuracy"] for r in cat.proposals(run_id=search["id"])
                          if r["ok"] and r["accuracy"] is not None]
            results.append((setting, seed, scores, time.perf_counter() - started))
            print(f"{setting} seed {seed}: {len(scores)} trained, best {max(scores):.4f}", file=sys.stderr)

    table = Table(title=f"live searches, {args.config} recipe on the real CIFAR-10 copy, budget {args.budget} "
                        f"candidates each")
    for column in ("setting", "seed", "trained", "best", "mean", "minutes"):
        table.add_column(column, justify="right" if column != "setting" else "left")
    for setting, seed, scores, seconds in results:
        table.add_row(setting, str(seed), str(len(scores)), f"{max(scores):.4f}", f"{statistics.mean(scores):.4f}",
                      f"{seconds / 60:.1f}")
    for setting in dict.fromkeys(r[0] for r in results):
        rows = [r for r in results if r[0] == setting]
        table.add_row(f"{setting} (mean of seeds)", "", "", f"{statistics.mean(max(r[2]) for r in rows):.4f}",
                      f"{statistics.mean(statistics.mean(r[2]) for r in rows):.4f}", "")
    Console(width=None if sys.stdout.isatty() else 140).print(table)


if __name__ == "__main__":
    main()
