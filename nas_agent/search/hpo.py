"""The hpo strategy: tune the training recipe of the best models, pruning weak trials on per-epoch accuracy.

One Optuna study per tuned model, named `<prefix>-<model name>`: a model's recipes compete
only with each other, and optuna-dashboard shows one study per model. Each trial trains the
catalogued model again with [train] overrides; after every epoch its accuracy is reported
to the study's pruner, which may stop the training.
"""

from __future__ import annotations

import warnings

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution

from nas_agent.config import Config
from nas_agent.search.optuna_strategy import open_study, running_trial, tell_outcome
from nas_agent.search.strategy import BaseStrategy, Outcome, Proposal, RoundContext

BATCH_SIZES = (64, 128, 256, 512)
MIN_STEPS_PER_EPOCH = 10        # a batch so large that an epoch has fewer steps leaves the schedule nothing to shape
CIFAR10_TRAIN_IMAGES = 50_000   # the training set when [data] takes no subset

PRUNERS = {
    # Two finished trials before any pruning: a median of one trial is that trial's luck.
    "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
    "halving": optuna.pruners.SuccessiveHalvingPruner,
}


def recipe_space(config: Config) -> dict[str, BaseDistribution]:
    """Where recipes are searched: lr from a quarter to four times the run's, the other keys in fixed ranges."""
    lr = config.train.lr
    images = config.data.train_subset or CIFAR10_TRAIN_IMAGES
    batch_sizes = [b for b in BATCH_SIZES if b * MIN_STEPS_PER_EPOCH <= images] or [BATCH_SIZES[0]]
    return {
        "lr": FloatDistribution(lr / 4, lr * 4, log=True),
        "momentum": FloatDistribution(0.8, 0.99),
        "weight_decay": FloatDistribution(1e-5, 1e-3, log=True),
        "batch_size": CategoricalDistribution(batch_sizes),
        "dropout": FloatDistribution(0.0, 0.3),
    }


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


class HPOStrategy(BaseStrategy):
    """Training-recipe trials for the round's best `top` trained parents, spread evenly over them."""

    name = "hpo"

    def __init__(self, storage: str, study_prefix: str, top: int = 2, pruner: str = "median", seed: int = 0, *,
                 lower_is_better: bool = False):
        if pruner not in PRUNERS:
            raise ValueError(f"pruner must be one of {', '.join(PRUNERS)}, not {pruner!r}")
        self.storage = optuna.storages.RDBStorage(storage)
        self.study_prefix, self.top, self.pruner, self.seed = study_prefix, top, pruner, seed
        self.lower_is_better = lower_is_better   # a generator's bits/dim: the study minimises
        self.studies: dict[str, optuna.Study] = {}

    def study_of(self, model: str) -> optuna.Study:
        """The study tuning `model`'s recipe, created on first use and re-opened after a restart."""
        if model not in self.studies:
            self.studies[model] = open_study(self.storage, f"{self.study_prefix}-{model}", self.seed,
                                             PRUNERS[self.pruner](), lower_is_better=self.lower_is_better)
        return self.studies[model]

    def propose(self, context: RoundContext, k: int) -> list[Proposal]:
        trained = [p for p in context.parents if p.accuracy is not None]
        tuned = sorted(trained, key=lambda p: p.accuracy, reverse=not self.lower_is_better)[:self.top]
        if not tuned:
            return []
        space = recipe_space(context.config)
        proposals = []
        for i in range(k):   # round robin, so the best model gets the extra trial of an uneven split
            model = tuned[i % len(tuned)].name
            trial = self.study_of(model).ask(space)
            change = ", ".join(f"{key}={_short(value)}" for key, value in trial.params.items())
            proposals.append(Proposal(self.name, model, change, None, train=dict(trial.params), trial=trial.number))
        return proposals

    def should_stop(self, proposal: Proposal, epoch: int, accuracy: float) -> bool:
        """Report the epoch's accuracy to the proposal's trial; True when the pruner finds the trial weak."""
        trial = running_trial(self.study_of(proposal.parent), proposal.trial)
        if trial is None:
            return False
        with warnings.catch_warnings():
            # A training resumed from its checkpoint replays epochs reported already; Optuna keeps the first value.
            warnings.filterwarnings("ignore", message="The reported value is ignored")
            trial.report(accuracy, epoch)
        return trial.should_prune()

    def observe(self, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            tell_outcome(self.study_of(outcome.proposal.parent), outcome)

    def close(self) -> None:
        self.storage.engine.dispose()
