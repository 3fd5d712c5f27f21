"""The optuna strategy: TPE over the template's space (any Space), through Optuna's ask/tell interface.

Each proposal is one trial of a study kept in an RDB storage, so `optuna-dashboard` can open
it and a resumed run can tell trials that were asked before a crash. Before each round the
study also learns from every trained model of the template's family that is a point of the
space, whichever strategy found it.
"""

from __future__ import annotations

import json

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from nas_agent.catalog import Catalog
from nas_agent.search.strategy import BaseStrategy, Outcome, Proposal, RoundContext
from nas_agent.space.protocol import Space
from nas_agent.space.template import Template

# One INFO line per trial would scroll through the live display.
optuna.logging.set_verbosity(optuna.logging.WARNING)

ATTEMPTS_PER_PROPOSAL = 20   # asks per proposal before giving up on finding a point not tried yet


def open_study(storage: optuna.storages.BaseStorage, name: str, seed: int,
               pruner: optuna.pruners.BasePruner | None = None, *, lower_is_better: bool = False) -> optuna.Study:
    """The study `name` in `storage`, created or re-opened, in the metric's direction, with a seeded TPE sampler."""
    study = optuna.create_study(storage=storage, study_name=name, pruner=pruner, load_if_exists=True,
                                direction="minimize" if lower_is_better else "maximize")
    # Offset the seed by the trials already there: a re-opened study with the bare seed would
    # replay its first session's random draws and propose the same points again. Multivariate:
    # the dimensions interact (depth with width, lr with batch size); constant liar: a round's
    # trials are asked together, and counting the pending ones as poor spreads them apart.
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.get_trials(deepcopy=False)),
                                               multivariate=True, constant_liar=True)
    return study


def running_trial(study: optuna.Study, number: int) -> optuna.trial.Trial | None:
    """Trial `number` of `study` to report to or tell, or None when it is finished already."""
    # Optuna has no public way back to a trial from its number; Study.tell finds it like this.
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    if study._storage.get_trial(trial_id).state != TrialState.RUNNING:
        return None
    return optuna.trial.Trial(study, trial_id)


def tell_outcome(study: optuna.Study, outcome: Outcome) -> None:
    """Finish the outcome's trial: its accuracy, PRUNED when stopped early, FAIL when there is no accuracy.

    An interrupted training is not told (the loop trains it again on resume), and a trial told
    already (before a crash) is left as it is.
    """
    if outcome.status == "interrupted":
        return
    trial = running_trial(study, outcome.proposal.trial)
    if trial is None:
        return
    if outcome.name:
        trial.set_user_attr("model", outcome.name)
    trial.set_user_attr("outcome", f"{outcome.status}: {outcome.reason}" if outcome.reason else outcome.status)
    if outcome.status == "stopped":
        study.tell(trial, state=TrialState.PRUNED)   # Optuna keeps its last reported accuracy as the value
    elif outcome.accuracy is not None and outcome.status in ("done", "duplicate"):
        study.tell(trial, outcome.accuracy)
    else:
        study.tell(trial, state=TrialState.FAIL)


def _label(value):
    """A parameter value as an Optuna categorical choice (element orders as "conv,bn,act,dropout")."""
    return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else value


class OptunaStrategy(BaseStrategy):
    """TPE over the space's dimensions; each proposal is the template rendered with one trial's parameters.

    `lower_is_better`: the task's metric is minimised (a generator's bits/dim), not maximised.
    """

    name = "optuna"

    def __init__(self, space: Space, storage: str, study_name: str, seed: int = 0, *, lower_is_better: bool = False):
        self.space = space
        # The value behind each choice label, per dimension (labels are what Optuna stores).
        self.values = {name: {_label(v): v for v in values} for name, values in space.dimensions().items()}
        self.distributions = {name: CategoricalDistribution(list(labels)) for name, labels in self.values.items()}
        # "" keeps the study in memory (bench replays: thousands of short searches, nothing to browse).
        self.storage = optuna.storages.RDBStorage(storage) if storage else optuna.storages.InMemoryStorage()
        self.study = open_study(self.storage, study_name, seed, lower_is_better=lower_is_better)

    def propose(self, context: RoundContext, k: int) -> list[Proposal]:
        self.warm_start(context.catalog, context.template, context.config.task)
        parent = f"template:{context.template.path.name}"
        proposals: list[Proposal] = []
        for _ in range(k * ATTEMPTS_PER_PROPOSAL):
            if len(proposals) >= k:
                break
            trial = self.study.ask(self.distributions)
            if self._settle_repeat(trial):
                continue
            params = self._params(trial.params)
            change = ", ".join(f"{name}={_label(value)}" for name, value in params.items())
            proposals.append(Proposal(self.name, parent, change, context.template.render(params),
                                      trial=trial.number))
        return proposals

    def observe(self, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            tell_outcome(self.study, outcome)

    def warm_start(self, catalog: Catalog, template: Template, task: str) -> None:
        """Add each trained model of the template's family that is a point of the space, and not in the study yet.

        Each becomes a finished trial with the model's best accuracy, so TPE learns from the
        other strategies' results (and earlier runs') too.
        """
        known = {t.user_attrs.get("model") for t in self.study.get_trials(deepcopy=False)}
        for row in catalog.leaderboard(task=task):
            if row["family"] != template.family or row["name"] in known:
                continue
            params = self._point_of(catalog.get_model(row["name"])["template_params"], template)
            if params is not None:
                self.study.add_trial(optuna.trial.create_trial(
                    params=params, distributions=self.distributions, value=row["accuracy"],
                    user_attrs={"model": row["name"], "origin": row["origin"]}))

    def close(self) -> None:
        if isinstance(self.storage, optuna.storages.RDBStorage):
            self.storage.engine.dispose()

    def _point_of(self, params: dict, template: Template) -> dict | None:
        """Trial parameters for a model's template parameters; None when the model is no point of the space.

        It is not when a value lies outside the space, or a parameter the space does not cover
        differs from the template's default (the model is then another design).
        """
        point = self.space.point_of(params)
        if point is None:
            return None
        region = self.space.region_values(params)
        for name, value in params.items():
            if name not in region and name in template.defaults and json.dumps(value) != json.dumps(template.defaults[name]):
                return None
        return {name: _label(value) for name, value in point.items()}

    def _params(self, labels: dict) -> dict:
        """The template parameters of a trial's labels."""
        return self.space.params_of({name: self.values[name][label] for name, label in labels.items()})

    def _settle_repeat(self, trial: optuna.trial.Trial) -> bool:
        """Tell a trial that repeats an earlier point what that point got; True when it was a repeat.

        A repeat would render the same code, which the loop would only reject as a duplicate:
        its known accuracy (or FAIL, when there is none yet) is told at once instead. Points that
        differ only in dimensions the template ignores (a generator's unused levels) repeat too.
        """
        params = self._params(trial.params)
        same = [t for t in self.study.get_trials(deepcopy=False)
                if t.number != trial.number and t.params.keys() == trial.params.keys()
                and self._params(t.params) == params]
        if not same:
            return False
        trial.set_user_attr("repeat_of", same[0].number)
        values = [t.value for t in same if t.state == TrialState.COMPLETE]
        if values:
            best = min if self.study.direction == optuna.study.StudyDirection.MINIMIZE else max
            self.study.tell(trial, best(values))
        else:
            self.study.tell(trial, state=TrialState.FAIL)
        return True
