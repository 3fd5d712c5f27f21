"""The search loop: rounds of propose -> validate -> train -> record -> learn, until a budget is spent.

Each round picks parents from the catalog (the best models plus diversity picks), splits
the round's proposals among the configured strategies by weight, validates them all with
one Validator (so duplicates across strategies are caught), registers the survivors, trains
them through the executor and tells every strategy what became of its proposals.

Every proposal is a catalog row (table `proposal`) written before anything is trained, so
a crashed or killed search resumes exactly: proposals left queued or running are trained
first, finished ones never again, and the budget counts what was already admitted.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from nas_agent.catalog import Catalog, prm_uid
from nas_agent.config import Config
from nas_agent.search.fidelity import promotions, rungs
from nas_agent.search.reference import register_reference, trained_with
from nas_agent.search.strategy import Outcome, Proposal, RoundContext, Strategy, choose_parents, allocate
from nas_agent.search.trainer import CandidateFile, Trainer, TrainRequest, register
from nas_agent.space.template import Template
from nas_agent.tasks import task_of
from nas_agent.validate.pipeline import Validator
from nas_agent.validate.verdict import Verdict


@dataclass
class SearchStats:
    """Live counters of a search, for the display and the end-of-run summary."""

    budget: int = 0                      # 0: no candidate limit
    hours: float = 0.0
    epoch_budget: int = 0                # 0: no limit on the epochs trained
    used: int = 0                        # candidates and trials admitted for training
    epochs: int = 0                      # epochs trained for candidates and trials (not the reference)
    promoted: int = 0                    # successive halving: promotions to a higher rung
    round: int = 0
    proposed: int = 0
    valid: int = 0
    duplicate: int = 0
    rejected: int = 0
    trained: int = 0
    failed: int = 0
    stopped: int = 0
    best_name: str | None = None
    best_accuracy: float | None = None
    reference: str | None = None         # the reference network's catalog name
    reference_accuracy: float | None = None
    started: float = field(default_factory=time.monotonic)
    phase: str = "starting"
    active: dict = field(default_factory=dict)   # training key -> (epoch, accuracy or None)
    stop_reason: str = ""

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def remaining_s(self) -> float | None:
        return None if not self.hours else max(0.0, self.hours * 3600 - self.elapsed_s)

    @property
    def remaining_budget(self) -> int | None:
        return None if not self.budget else max(0, self.budget - self.used)

    @property
    def remaining_epochs(self) -> int | None:
        return None if not self.epoch_budget else max(0, self.epoch_budget - self.epochs)


@dataclass(frozen=True)
class Admission:
    """What the loop made of one proposal: its verdict, the catalog model it became or repeats, its row."""

    proposal: Proposal
    verdict: Verdict
    name: str | None            # the catalogued model (admitted, or the twin of a duplicate)
    proposal_id: int

    @property
    def admitted(self) -> bool:
        return self.verdict.ok


class Search:
    """One search run over a catalog; `run()` returns "finished" (or raises KeyboardInterrupt)."""

    def __init__(self, config: Config, catalog: Catalog, run_id: str, dataset_cache: Path, *,
                 template: Template, strategies: dict[str, Strategy], validator: Validator, executor,
                 on_change=lambda stats: None):
        self.config, self.catalog, self.run_id = config, catalog, run_id
        self.template, self.strategies, self.validator = template, strategies, validator
        self.weights = {name: w for name, w in config.search.strategies.items() if name in strategies}
        self.on_change = on_change
        self.stats = SearchStats(budget=config.search.budget, hours=config.search.hours,
                                 epoch_budget=config.search.epoch_budget)
        cfg = config.search
        # Successive halving: the epoch counts candidates are compared at (None: all train every epoch).
        self.levels = rungs(cfg.min_epochs, cfg.reduction, config.train.epochs) if cfg.fidelity == "halving" else None
        self._counted: set[str] = set()              # training keys whose epochs count against the budget
        self.lower_is_better = task_of(config.task).lower_is_better
        self.rng = random.Random(config.search.seed)
        self._by_key: dict[str, Proposal] = {}       # training key -> the proposal being trained
        self.trainer = Trainer(catalog, config, dataset_cache, run_id=run_id, executor=executor,
                               on_progress=self._on_training_event, should_stop=self._should_stop)
        self._load_history()

    # state -------------------------------------------------------------------

    def _load_history(self) -> None:
        """Counters (and the round number) of this run so far: non-zero only when resuming."""
        rows = self.catalog.proposals(run_id=self.run_id)
        s = self.stats
        s.round = max((r["round"] for r in rows), default=0)
        s.proposed = len(rows)
        s.used = sum(1 for r in rows if r["ok"])
        s.valid = s.used
        s.duplicate = sum(1 for r in rows if r["status"] == "duplicate")
        s.rejected = sum(1 for r in rows if r["status"] == "rejected")
        s.trained = sum(1 for r in rows if r["status"] == "done")
        s.failed = sum(1 for r in rows if r["status"] == "failed")
        s.stopped = sum(1 for r in rows if r["status"] == "stopped")
        s.epochs = sum(len(self._trial_epochs(r["nn"], r["prm"])) for r in rows if r["ok"] and r["nn"])
        self._update_best()

    def _trial_epochs(self, name: str, train: dict | None = None) -> list[float]:
        """Scores after each epoch (1, 2, ...) of the model's trial under this run's recipe (+ `train` overrides)."""
        trial = prm_uid(self.trainer.prm(TrainRequest.of(name, train)))
        rows = sorted((r for r in self.catalog.epochs(name) if r["prm"] == trial), key=lambda r: r["epoch"])
        scores = []
        for row in rows:
            if row["epoch"] != len(scores) + 1:
                break
            scores.append(row["accuracy"])
        return scores

    def _update_best(self) -> None:
        names = [r["nn"] for r in self.catalog.proposals(run_id=self.run_id) if r["ok"] and r["nn"]]
        rows = self.catalog.leaderboard(task=self.config.task, names=sorted(set(names)), top=1) if names else []
        if rows:
            self.stats.best_name, self.stats.best_accuracy = rows[0]["name"], rows[0]["accuracy"]
        if self.stats.reference:
            self.stats.reference_accuracy = self.catalog.best_accuracy(self.stats.reference)

    def _epochs_per_candidate(self) -> int:
        """What admitting one more candidate costs: the first rung under successive halving, else the recipe."""
        return self.levels[0] if self.levels else self.config.train.epochs

    def _done(self) -> str | None:
        """Why the search should stop now, or None."""
        s = self.stats
        if s.budget and s.used >= s.budget:
            return f"budget of {s.budget} candidates spent"
        if s.remaining_epochs is not None and s.remaining_epochs < self._epochs_per_candidate():
            return f"budget of {s.epoch_budget} epochs spent"
        if s.hours and s.remaining_s <= 0:
            return f"time limit of {s.hours:g} h reached"
        return None

    # the loop ------------------------------------------------------------------

    def run(self) -> str:
        """Train the reference network and what a previous attempt of this run left pending, then run rounds."""
        self._train_reference()
        pending = self._pending()
        if pending:
            self.stats.phase = f"resuming {len(pending)} pending candidate(s)"
            self._train(pending)
        self._promote()   # promotions a previous attempt of this run had left undone
        idle_rounds = 0
        while (reason := self._done()) is None:
            if self._round() == 0:
                idle_rounds += 1
                if idle_rounds >= self.config.search.patience:
                    reason = f"no new candidate in {idle_rounds} rounds: the strategies found nothing new"
                    break
            else:
                idle_rounds = 0
        self._finish_best()
        self.stats.stop_reason, self.stats.phase = reason, "finished"
        self.on_change(self.stats)
        return "finished"

    def _train_reference(self) -> None:
        """The baseline row: train the reference network under this run's recipe unless that was done before.

        It is not a proposal and does not count against the budget.
        """
        name = register_reference(self.catalog, self.config, self.run_id)
        self.stats.reference = name
        request = TrainRequest(name) if name else None
        if request is None or trained_with(self.catalog, name, self.trainer.prm(request), self.config.train.epochs):
            return
        self.stats.phase = f"training the reference network {self.catalog.get_model(name)['family']}"
        self.on_change(self.stats)
        try:
            self.trainer.train([request])
        finally:
            self.stats.active.clear()
            self._update_best()

    def _round(self) -> int:
        """One round; returns how many proposals were admitted for training."""
        admitted = self.propose_round()
        if admitted:
            self._train(admitted)
            self._promote()
            self._pretrain_variants(admitted)
        return len(admitted)

    def propose_round(self) -> list[Admission]:
        """The next round's proposals from every strategy, validated and recorded; returns those admitted.

        Strategies learn at once what was rejected, and may follow up in the same round (the llm
        repairs its rejected edits); the follow-ups are validated and recorded the same way.
        """
        s = self.stats
        s.round += 1
        cfg = self.config.search
        parents = choose_parents(self.catalog, self.config, self.template, best=cfg.parents,
                                 diverse=cfg.diversity, rng=self.rng)
        context = RoundContext(s.round, self.run_id, self.config, self.catalog, self.template, parents, self.rng)
        size = cfg.round_size if s.remaining_budget is None else min(cfg.round_size, s.remaining_budget)
        if s.remaining_epochs is not None:   # the epoch budget is firm too: admit only what it can train
            size = min(size, s.remaining_epochs // self._epochs_per_candidate())
        proposals: list[Proposal] = []
        for name, k in allocate(size, self.weights, self.rng).items():
            if k:
                s.phase = f"round {s.round}: {name} proposing {k}"
                self.on_change(s)
                proposals += self.strategies[name].propose(context, k)
        admitted = self._admit_all(proposals, first_index=0)
        follow_ups = [p for name in self.weights for p in self.strategies[name].follow_up(context)]
        if follow_ups:
            admitted += self._admit_all(follow_ups, first_index=len(proposals))
        return admitted

    def _admit_all(self, proposals: list[Proposal], first_index: int) -> list[Admission]:
        """Validate and record `proposals` in order (the budget is firm); tell each strategy its rejections."""
        s = self.stats
        s.phase = f"round {s.round}: validating {len(proposals)} proposal(s)"
        self.on_change(s)
        admitted, rejected = [], []
        for index, proposal in enumerate(proposals, start=first_index):
            if s.remaining_budget == 0 or (s.remaining_epochs is not None and
                                           s.remaining_epochs < self._epochs_per_candidate() * (len(admitted) + 1)):
                break  # strategies may return more than asked (llm repairs); the budget is firm
            admission = self._admit(proposal, f"round {s.round} {proposal.strategy} #{index}")
            (admitted if admission.admitted else rejected).append(admission)
        self._tell({a.proposal.strategy for a in rejected}, [self._verdict_outcome(a) for a in rejected])
        return admitted

    def _pretrain_variants(self, admitted: list[Admission]) -> None:
        """With [pretrain] datasets, the round's best new candidates also get pre-trained variants (not budgeted)."""
        if not self.config.pretrain.datasets:
            return
        from nas_agent.search.pretrain import pretrain_variants_for

        self.stats.phase = f"round {self.stats.round}: pre-training variants"
        self.on_change(self.stats)
        pretrain_variants_for(self.catalog, self.config, self.trainer.dataset_cache,
                              [a.name for a in admitted if a.proposal.train is None], run_id=self.run_id,
                              executor=self.trainer.executor)

    def _admit(self, proposal: Proposal, label: str) -> Admission:
        """Validate and record one proposal; register it for training when valid.

        The loop is the only validator: every strategy's proposals (LLM answers included) pass
        the same Validator here, labelled uniquely in the run, so a duplicate names the catalog
        model it repeats, and an LLM answer's llm_call row gets its verdict.
        """
        s = self.stats
        s.proposed += 1
        fields = dict(run_id=self.run_id, round=s.round, strategy=proposal.strategy, parent=proposal.parent,
                      change=proposal.change[:500], trial=proposal.trial)
        if proposal.train is not None:  # an HPO trial of a catalogued model: nothing new to validate
            row = self.catalog.add_proposal(**fields, nn=proposal.parent, prm=proposal.train, ok=True, status="queued")
            s.valid += 1
            s.used += 1
            return Admission(proposal, Verdict.accept(), proposal.parent, row)
        validation = self.validator.validate(proposal.source, label,
                                             missing=proposal.problem or "the strategy produced no code",
                                             missing_stage=proposal.problem_stage)
        verdict = validation.verdict
        name = None
        if verdict.ok:
            candidate = CandidateFile.of(validation, Path(label), default_family=self.template.family)
            name = register(self.catalog, candidate, self.config, origin=proposal.strategy, parent=proposal.parent,
                            run_id=self.run_id)
            # Twins validated from now on name the model itself, not this proposal's label.
            self.validator.registered_as(validation, name)
            s.valid += 1
            s.used += 1
            row = self.catalog.add_proposal(**fields, nn=name, code_hash=validation.code_hash, ok=True, status="queued")
        else:
            duplicate = verdict.stage == "duplicate"
            name = validation.duplicate_of if duplicate and self.catalog.get_model(validation.duplicate_of or "") \
                else None
            s.duplicate += duplicate
            s.rejected += not duplicate
            row = self.catalog.add_proposal(
                **fields, nn=name, code_hash=validation.code_hash, ok=False, stage=verdict.stage,
                reason=verdict.reason[:1000], status="duplicate" if duplicate else "rejected")
        if proposal.llm_call is not None:
            self.catalog.judge_llm_call(proposal.llm_call, ok=verdict.ok, stage=verdict.stage, reason=verdict.reason,
                                        code_hash=validation.code_hash, nn=name if verdict.ok else None)
        return Admission(proposal, verdict, name, row)

    def _verdict_outcome(self, admission: Admission) -> Outcome:
        verdict = admission.verdict
        if verdict.stage == "duplicate":
            accuracy = self.catalog.best_accuracy(admission.name) if admission.name else None
            return Outcome(admission.proposal, "duplicate", accuracy, verdict.reason, verdict.stage, admission.name)
        return Outcome(admission.proposal, "rejected", None, verdict.reason, verdict.stage)

    # training ------------------------------------------------------------------

    def _train(self, admitted: list[Admission]) -> None:
        s = self.stats
        requests = []
        first = self.levels[0] if self.levels else None
        for admission in admitted:
            # With successive halving a new candidate trains to the first rung; hpo trials train in full.
            until = first if admission.proposal.train is None else None
            request = TrainRequest.of(admission.name, admission.proposal.train, until=until)
            self._counted.add(request.key)
            self._by_key[request.key] = admission.proposal
            requests.append(request)
        s.phase = f"round {s.round}: training {len(requests)} candidate(s)"
        self.on_change(s)
        try:
            summary = self.trainer.train(requests)
        finally:
            s.active.clear()
        ends = {**{k: "done" for k in summary.trained}, **{k: "failed" for k in summary.failed},
                **{k: "stopped" for k in summary.stopped}, **{k: "interrupted" for k in summary.interrupted}}
        outcomes = []
        for request, admission in zip(requests, admitted):
            status = ends.get(request.key, "interrupted")
            accuracy = self.catalog.best_accuracy(request.name, self.trainer.prm(request))
            reason = (self.catalog.get_model(request.name) or {}).get("reason") or "" if status == "failed" else ""
            self.catalog.update_proposal(admission.proposal_id, status="queued" if status == "interrupted" else status,
                                         accuracy=accuracy, reason=reason or None)
            s.trained += status == "done"
            s.failed += status == "failed"
            s.stopped += status == "stopped"
            outcomes.append(Outcome(admission.proposal, status, accuracy, reason, "train" if status == "failed" else None,
                                    admission.name))
        self._tell({a.proposal.strategy for a in admitted}, outcomes)
        self._update_best()
        self.on_change(s)

    # successive halving ---------------------------------------------------------

    def _halving_scores(self) -> dict[str, list[float]]:
        """Per-epoch scores of this run's new candidates that trained (hpo trials are not halved)."""
        names = {r["nn"] for r in self.catalog.proposals(run_id=self.run_id)
                 if r["ok"] and r["nn"] and r["prm"] is None and r["status"] in ("done", "stopped")}
        scores = {name: self._trial_epochs(name) for name in sorted(names)}
        return {name: values for name, values in scores.items() if values}

    def _affordable(self, until: dict[str, int], scores: dict[str, list[float]]) -> dict[str, int]:
        """The promotions the epoch budget (and the time limit) still pays for, lowest rungs first."""
        s = self.stats
        if s.hours and s.remaining_s <= 0:
            return {}
        left = s.remaining_epochs
        kept = {}
        for name, epoch in sorted(until.items(), key=lambda item: (item[1], item[0])):
            cost = epoch - len(scores[name])
            if left is not None and cost > left:
                continue
            kept[name] = epoch
            left = None if left is None else left - cost
        return kept

    def _promote(self) -> None:
        """Train ASHA's promotions, rung after rung, until none is due (or the epoch budget is spent)."""
        if not self.levels:
            return
        while True:
            scores = self._halving_scores()
            chosen = self._affordable(promotions(scores, self.levels, self.config.search.reduction,
                                                 lower_is_better=self.lower_is_better), scores)
            if not chosen:
                return
            self._continue(chosen, why="promoting")

    def _finish_best(self) -> None:
        """The best candidate of the highest rung reached trains on to the full recipe (the run's answer)."""
        if not self.levels:
            return
        while True:
            scores = self._halving_scores()
            if not scores:
                return
            reached = max(len(v) for v in scores.values())
            if reached >= self.levels[-1]:
                return
            at_top = [n for n, v in scores.items() if len(v) == reached]
            best = (min if self.lower_is_better else max)(at_top, key=lambda n: scores[n][reached - 1])
            following = self._affordable({best: next(level for level in self.levels if level > reached)}, scores)
            if not following:
                return
            self._continue(following, why="training the best on")

    def _continue(self, until: dict[str, int], why: str) -> None:
        """Resume paused candidates from their checkpoints up to the given epochs; refresh their proposals."""
        s = self.stats
        requests = [TrainRequest.of(name, until=epoch) for name, epoch in sorted(until.items())]
        self._counted.update(r.key for r in requests)
        s.promoted += len(requests)
        s.phase = f"round {s.round}: {why} {len(requests)} candidate(s) to epoch {max(until.values())}"
        self.on_change(s)
        try:
            self.trainer.train(requests)
        finally:
            s.active.clear()
        for row in self.catalog.proposals(run_id=self.run_id):
            if row["ok"] and row["prm"] is None and row["nn"] in until:
                self.catalog.update_proposal(row["id"], status="done",
                                             accuracy=self.catalog.best_accuracy(row["nn"], self.trainer.prm(
                                                 TrainRequest.of(row["nn"]))))
        self._update_best()
        self.on_change(s)

    def _tell(self, strategies: set[str], outcomes: list[Outcome]) -> None:
        for name in strategies:
            if name in self.strategies:
                self.strategies[name].observe([o for o in outcomes if o.proposal.strategy == name])

    def _on_training_event(self, key: str, event: dict) -> None:
        kind = event.get("event")
        if kind == "launch":
            self.stats.active[key] = (0, None)
        elif kind == "epoch":
            self.stats.active[key] = (event["epoch"], event["test_accuracy"])
            self.stats.epochs += key in self._counted
        elif kind in ("outcome", "cancelled"):
            self.stats.active.pop(key, None)
        self.on_change(self.stats)

    def _should_stop(self, request: TrainRequest, event: dict) -> bool:
        proposal = self._by_key.get(request.key)
        strategy = self.strategies.get(proposal.strategy) if proposal else None
        return bool(strategy and strategy.should_stop(proposal, event["epoch"], event["test_accuracy"]))

    def _pending(self) -> list[Admission]:
        """Proposals of this run admitted but not finished when it last stopped.

        A candidate whose training ended before the stop (its proposal row was not updated yet)
        is settled from its model's status instead of being trained again.
        """
        pending, settled = [], []
        for row in self.catalog.proposals(run_id=self.run_id):
            if not row["ok"] or row["status"] not in ("queued", "running") or not row["nn"]:
                continue
            proposal = Proposal(row["strategy"], row["parent"], row["change"] or "", None, train=row["prm"],
                                trial=row["trial"])
            model = self.catalog.get_model(row["nn"])
            if row["prm"] is None and model["status"] in ("done", "failed"):
                accuracy = self.catalog.best_accuracy(row["nn"], self.trainer.prm(TrainRequest.of(row["nn"])))
                self.catalog.update_proposal(row["id"], status=model["status"], accuracy=accuracy,
                                             reason=model["reason"])
                settled.append(Outcome(proposal, model["status"], accuracy, model["reason"] or "",
                                       "train" if model["status"] == "failed" else None, row["nn"]))
            else:
                pending.append(Admission(proposal, Verdict.accept(), row["nn"], row["id"]))
        self._tell({o.proposal.strategy for o in settled}, settled)
        if settled:
            self._load_history()
        return pending

