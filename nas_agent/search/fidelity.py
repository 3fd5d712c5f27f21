"""Multi-fidelity across architectures: asynchronous successive halving (ASHA) over training epochs.

Every admitted candidate first trains `min_epochs` of the run's recipe (the schedule laid out
over all `train.epochs`, so a paused candidate continues as if never paused). Rungs grow by the
reduction factor up to the recipe's epochs: min 1, factor 3, 9 epochs -> rungs 1, 3, 9. After
each round, ASHA's promotion rule (Li et al., "A System for Massively Parallel Hyperparameter
Tuning", 2020) picks, in every rung, the candidates among the best 1/reduction of all that
reached it that have not gone further yet; they resume from their checkpoints to the next
rung, so no epoch is trained twice.

Optuna's SuccessiveHalvingPruner decides once, as a trial passes a rung, whether it goes on;
a candidate it stops never comes back when later ones turn out worse. Pausing and promoting
needs the other direction (a rung's best are chosen among everything that reached it), so the
rule is here, over the per-epoch scores the catalog holds.
"""

from __future__ import annotations

from typing import Mapping, Sequence


def rungs(min_epochs: int, reduction: int, max_epochs: int) -> list[int]:
    """The epoch counts at which candidates are compared: min, min*r, min*r^2, ..., capped at max."""
    levels = [max(1, min(min_epochs, max_epochs))]
    while levels[-1] < max_epochs:
        levels.append(min(levels[-1] * reduction, max_epochs))
    return levels


def promotions(scores: Mapping[str, Sequence[float]], levels: Sequence[int], reduction: int, *,
               lower_is_better: bool = False) -> dict[str, int]:
    """Which candidates go on, and to which epoch: {name: next rung}.

    `scores[name]` holds a candidate's score after each epoch trained so far (index 0: epoch 1).
    In each rung below the last, the best floor(n / reduction) of the n candidates that reached
    it are promoted unless they already went further; ties keep the name order (deterministic).
    """
    promoted: dict[str, int] = {}
    sign = 1 if lower_is_better else -1
    for level, following in zip(levels, levels[1:]):
        reached = sorted((name for name, values in scores.items() if len(values) >= level),
                         key=lambda name: (sign * scores[name][level - 1], name))
        for name in reached[:len(reached) // reduction]:
            if len(scores[name]) < following:    # paused at this rung: not promoted yet
                promoted[name] = following
    return promoted
