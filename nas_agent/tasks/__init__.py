"""Task families: what each task is scored by, and the facts every stage shares about it.

One `Task` value per family, looked up by name (`task_of`): its LEMUR metric and that metric's
direction, the output shape its candidates must have, the prompt the LLM edits them with, the
configuration `--task` loads, its transform, its search space (built from `[space]`: the strategies search
it through the Space protocol), and whether it is generative (its forward returns each image's
negative log-likelihood and it sees its test images). Stages decide with these facts instead
of comparing task names. It sits beside `space` in the lowest layers and imports nothing of
train, validate or search, which keep their own part of a family (the generative trainer in
`train.generative`, its smoke forward in `validate.generative_smoke`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from nas_agent.space.fractal import FractalSpace
from nas_agent.space.generative import GenerativeSpace
from nas_agent.space.protocol import Space

from nas_agent.tasks.classification import ACC_METRIC, ACC_METRIC_CODE, TASK_CLASSIFICATION, classification_transform
from nas_agent.tasks.generation import (
    BPD_METRIC,
    BPD_METRIC_CODE,
    GENERATION_OUT_SHAPE,
    TASK_GENERATION,
    bits_per_dim,
    generation_transform,
    is_generative,
)


@dataclass(frozen=True)
class Task:
    """One task family: what its candidates output and what they are scored by."""

    name: str                              # LEMUR's task name, the first part of a model name
    metric: str                            # LEMUR's metric name
    metric_code: str                       # the metric's code, kept in LEMUR's metric table
    lower_is_better: bool                  # bits/dim: lower; accuracy: higher
    out_shape: tuple[int, ...] | None      # fixed out_shape, or None: one logit per class of the dataset
    prompt: str                            # prompts/<prompt>.txt, the LLM's edit prompt
    config: str | None                     # conf/<config>.toml that `--task` loads when no --config is given
    generative: bool                       # forward returns per-image NLL; scored from per-value logits
    space_of: Callable[[dict[str, Any]], Space]   # the search space a `[space]` section describes (ValueError if bad)
    transform_of: Callable[[Any], tuple[str, str]]   # LEMUR transform name and code of a [train] section
    goal: str = ""                         # what a candidate is and how it is judged, for the params prompt


CLASSIFICATION = Task(TASK_CLASSIFICATION, ACC_METRIC, ACC_METRIC_CODE, lower_is_better=False, out_shape=None,
                      prompt="edit", config=None, generative=False, space_of=FractalSpace.from_config,
                      transform_of=classification_transform,
                      goal="a FractalNet that classifies CIFAR-10 images (32x32 RGB, 10 classes), judged by its "
                           "test accuracy: HIGHER is better")
GENERATION = Task(TASK_GENERATION, BPD_METRIC, BPD_METRIC_CODE, lower_is_better=True,
                  out_shape=GENERATION_OUT_SHAPE, prompt="edit_generative", config="generative", generative=True,
                  space_of=GenerativeSpace.from_config, transform_of=generation_transform,
                  goal="a fractal generative model of CIFAR-10 images, judged by its negative log-likelihood on "
                       "the test images in bits per dimension: LOWER is better")
TASKS: dict[str, Task] = {task.name: task for task in (CLASSIFICATION, GENERATION)}


def task_of(name: str) -> Task:
    """The task called `name`; ValueError naming the known ones otherwise."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown task {name!r}; choose {' or '.join(TASKS)}") from None


def lower_is_better(metric: str | None) -> bool:
    """Whether a smaller value of `metric` is the better one (bits/dim), unlike accuracy."""
    return any(task.metric == metric and task.lower_is_better for task in TASKS.values())


__all__ = ["ACC_METRIC", "ACC_METRIC_CODE", "BPD_METRIC", "BPD_METRIC_CODE", "CLASSIFICATION", "GENERATION",
           "GENERATION_OUT_SHAPE", "TASKS", "TASK_CLASSIFICATION", "TASK_GENERATION", "Task", "bits_per_dim",
           "is_generative", "lower_is_better", "task_of"]
