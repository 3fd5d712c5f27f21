"""Replay a strategy's own search against a bench table: the real loop, lookups instead of training.

Each replay is a whole `Search` — parent choice, the strategies' propose/observe, the
validator (static stages), the catalog, successive halving — over a fresh catalog, with an
executor that answers each training job from the table: the epochs the job asks for (from
its resume point to its stop point), exactly as a sandboxed child would report them. What a
strategy proposes that the table does not hold (an LLM's free edit) fails as "not in the table".
"""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from nas_agent.bench.table import BenchTable, VariantRow
from nas_agent.candidate import code_hash
from nas_agent.catalog import Catalog, prm_uid
from nas_agent.config import Config
from nas_agent.train.job import TrainJob, TrainOutcome


class TableExecutor:
    """An executor whose jobs are table lookups: the recorded epochs, reported as a child reports them."""

    name = "table"
    slots = 1

    def __init__(self, table: BenchTable):
        self.rows: dict[str, VariantRow] = {r.code_hash: r for r in table.rows if r.code_hash}

    def run(self, job: TrainJob, workdir: Path, on_event, cancel: threading.Event) -> TrainOutcome:
        row = self.rows.get(code_hash(job.source))
        if row is None:
            return TrainOutcome(name=job.name, ok=False, reason="failed: not in the bench table")
        if row.status == "failed" or not row.epochs:
            return TrainOutcome(name=job.name, ok=False, reason=f"failed in the table: {row.reason or 'no epochs'}")
        on_event({"event": "started", "n_params": row.n_params, "gpu": None})
        last = min(job.until_epoch or len(row.epochs), len(row.epochs))
        outcome = TrainOutcome(name=job.name, ok=True, n_params=row.n_params)
        for epoch in row.epochs[(job.resume_epoch or 0):last]:
            event = {"event": "epoch", "epoch": epoch.epoch, "test_accuracy": epoch.accuracy,
                     "test_loss": epoch.loss, "train_loss": epoch.train_loss, "seconds": epoch.seconds}
            outcome.epochs.append(event)
            on_event(event)
            if cancel.is_set():   # pruned (hpo) or interrupted after this epoch
                return TrainOutcome(name=job.name, ok=False, reason="interrupted", epochs=outcome.epochs)
        return outcome

    def close(self) -> None:
        pass


@dataclass
class Trace:
    """One replayed search: after each epoch trained, (candidates so far, epochs so far, incumbent's true score).

    The incumbent is the best candidate trained to the recipe's last epoch so far, scored by the
    table's final accuracy (under successive halving, candidates paused at lower rungs do not count).
    """

    setting: str
    seed: int
    steps: list[tuple[int, int, float | None]] = field(default_factory=list)
    stop_reason: str = ""

    def best_after_candidates(self, budget: int) -> float | None:
        """The incumbent once `budget` candidates had started (None: nothing finished by then)."""
        return self._best_after(0, budget)

    def best_after_epochs(self, epochs: int) -> float | None:
        """The incumbent once `epochs` epochs had been trained."""
        return self._best_after(1, epochs)

    def candidates_to_reach(self, threshold: float) -> int | None:
        """Candidates started when the incumbent first reached `threshold` (None: never)."""
        return self._to_reach(0, threshold)

    def epochs_to_reach(self, threshold: float) -> int | None:
        """Epochs trained when the incumbent first reached `threshold` (None: never)."""
        return self._to_reach(1, threshold)

    def _best_after(self, axis: int, limit: int) -> float | None:
        """The incumbent at the last step whose `axis` (0: candidates, 1: epochs) is within `limit`."""
        best = None
        for step in self.steps:
            if step[axis] > limit:
                break
            best = step[2]
        return best

    def _to_reach(self, axis: int, threshold: float) -> int | None:
        return next((step[axis] for step in self.steps if step[2] is not None and step[2] >= threshold), None)

    @property
    def candidates(self) -> int:
        return self.steps[-1][0] if self.steps else 0

    @property
    def epochs(self) -> int:
        return self.steps[-1][1] if self.steps else 0


def settings_config(config: Config, strategies: dict[str, float], seed: int, *, budget: int, fidelity: str,
                    epoch_budget: int, catalog: Path) -> Config:
    """The config one replay runs with: the given strategy mix and seed, no reference, no smoke run."""
    return config.with_overrides({
        "catalog": str(catalog), "search.strategies": strategies, "search.seed": seed, "search.budget": budget,
        "search.hours": 0.0, "search.fidelity": fidelity, "search.epoch_budget": epoch_budget,
        "search.executor": "local", "reference.template": "", "validate.smoke": False, "pretrain.datasets": [],
        # Nothing runs in a replay: the policy only matters where it refuses an LLM's edit before admission.
        "policy.enabled": "llm" in strategies, "llm.seed": seed})


_PARSED: dict = {}   # source text -> Candidate, shared by the replays of this process


def replay(table: BenchTable, config: Config, setting: str, strategies: dict[str, float], seed: int, *,
           budget: int, fidelity: str = "full", epoch_budget: int = 0, backend=None) -> Trace:
    """Run one search of `config` (its [search] with these strategies and seed) against the table."""
    from nas_agent.search.assemble import make_strategies
    from nas_agent.search.loop import Search
    from nas_agent.search.trainer import TrainRequest
    from nas_agent.space.template import load_template
    from nas_agent.validate import validator_for

    shm = Path("/dev/shm")   # thousands of small commits: in memory where the host has it
    with tempfile.TemporaryDirectory(prefix="nas-agent-bench-", dir=shm if shm.is_dir() else None) as tmp:
        cfg = settings_config(config, strategies, seed, budget=budget, fidelity=fidelity, epoch_budget=epoch_budget,
                              catalog=Path(tmp) / "catalog.sqlite")
        with Catalog(cfg.catalog) as catalog, catalog.run(f"bench replay {setting} seed {seed}", cfg.to_dict()) as run:
            parts = make_strategies(cfg, catalog, run.id, backend, storage="")
            validator = validator_for(cfg, catalog=catalog, workdir=Path(tmp) / "sandbox")
            validator.parsed = _PARSED
            search = Search(cfg, catalog, run.id, Path(tmp), template=load_template(cfg.template), strategies=parts,
                            validator=validator, executor=TableExecutor(table))
            try:
                search.run()
            finally:
                for part in parts.values():
                    part.close()
            trace = Trace(setting, seed, stop_reason=search.stats.stop_reason)
            trial = prm_uid(search.trainer.prm(TrainRequest("")))
            trace.steps = _steps(catalog, table, run.id, trial, table.epochs)
    return trace


def _steps(catalog: Catalog, table: BenchTable, run_id: str, trial: str,
           last_epoch: int) -> list[tuple[int, int, float | None]]:
    """The trace from the catalog: epochs in the order they were recorded, candidates in admission order.

    A candidate counts from its admission (a failed one, which trains no epoch, too), so the
    candidate axis is the search's own budget.
    """
    by_hash = {r.code_hash: r.final for r in table.rows if r.code_hash}
    admitted = [r for r in catalog.proposals(run_id=run_id) if r["ok"] and r["nn"] and r["prm"] is None]
    order = {}
    for index, row in enumerate(sorted(admitted, key=lambda r: r["id"]), start=1):
        order.setdefault(row["nn"], index)
    epochs = sorted((e for name in order for e in catalog.epochs(name) if e["prm"] == trial),
                    key=lambda e: e["stored"])
    finals = {name: by_hash.get(catalog.get_model(name)["code_hash"]) for name in order}
    steps, best, spent, candidates = [], None, 0, 0
    for row in epochs:
        spent += 1
        candidates = max(candidates, order[row["nn"]])
        if row["epoch"] == last_epoch:
            final = finals[row["nn"]]
            if final is not None and (best is None or final > best):
                best = final
        steps.append((candidates, spent, best))
    if admitted and (not steps or steps[-1][0] < len(order)):
        steps.append((len(order), spent, best))   # candidates admitted at the end that trained nothing
    return steps
