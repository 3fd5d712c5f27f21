"""Task families as data: each stage asks the task registry, not a task name, what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from nas_agent.tasks import CLASSIFICATION, GENERATION, TASKS, lower_is_better, task_of

REPO = Path(__file__).resolve().parents[1]


def test_every_task_names_a_prompt_a_config_and_metric_code_that_exist():
    for task in TASKS.values():
        assert (REPO / "prompts" / f"{task.prompt}.txt").is_file(), task.name
        assert task.config is None or (REPO / "conf" / f"{task.config}.toml").is_file(), task.name
        compile(task.metric_code, f"<{task.metric}>", "exec")  # LEMUR loads it as a module


def test_metric_direction_and_output_shape_come_from_the_task():
    assert lower_is_better(GENERATION.metric) and not lower_is_better(CLASSIFICATION.metric)
    assert not lower_is_better(None) and not lower_is_better("unknown")
    assert GENERATION.out_shape == (256,) and CLASSIFICATION.out_shape is None
    assert task_of("img-generation") is GENERATION and task_of("img-classification") is CLASSIFICATION


@pytest.mark.parametrize("name", ["img-segmentation", "", None])
def test_an_unknown_task_is_a_one_line_error_naming_the_known_ones(name):
    with pytest.raises(ValueError, match="img-classification or img-generation"):
        task_of(name)
