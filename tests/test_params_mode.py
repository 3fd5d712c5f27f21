"""Params mode: the space's JSON schema (tried points cut out), reading points back, real SmolLM2 under the schema."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import jsonschema
import pytest

from nas_agent.catalog import Catalog
from nas_agent.config import load_config
from nas_agent.llm import Completion, Sampling, max_tokens_of, reasoning_parser_of
from nas_agent.llm.propose import Proposer, read_answer, read_point_answer
from nas_agent.llm.structured import params_schema, read_point, spelled_point
from nas_agent.search.llm_strategy import judge_answer
from nas_agent.search.trainer import CandidateFile, register
from nas_agent.space import load_template, load_templates
from nas_agent.tasks import task_of
from nas_agent.validate import Validator

DIMS = {"A": (1, 2, 3), "B": ("x", "y"), "C": (("a", "b"), ("b", "a"))}
POINTS = [dict(zip(DIMS, values)) for values in itertools.product(*DIMS.values())]


def _accepts(schema, point) -> bool:
    return schema is not None and jsonschema.Draft202012Validator(schema).is_valid(spelled_point(point))


@pytest.mark.parametrize("excluded", range(len(POINTS) + 1))
def test_the_schema_admits_exactly_the_points_not_tried(excluded):
    tried = random.Random(excluded).sample(POINTS, excluded)
    schema = params_schema(DIMS, exclude=tried)
    for point in POINTS:
        assert _accepts(schema, point) == (point not in tried), point
    assert not _accepts(schema, {**POINTS[0], "D": 1}) and not _accepts(schema, {"A": 1, "B": "x"})
    assert (schema is None) == (excluded == len(POINTS))


def test_read_point_checks_every_value_and_says_what_is_wrong():
    ok = read_point('<think>\nA small net.\n</think>\nSure: {"A": 2, "B": "y", "C": "b,a"}', DIMS)
    assert ok.point == {"A": 2, "B": "y", "C": ("b", "a")} and ok.reasoning == "A small net."
    assert read_point('{"A": "3", "B": "X", "C": ["a", "b"]}', DIMS).point == {"A": 3, "B": "x", "C": ("a", "b")}
    wrong = read_point('{"A": 7, "B": "x"}', DIMS)
    assert wrong.point is None and "A=7 is not one of 1, 2, 3" in wrong.problem and "no value for C" in wrong.problem
    assert "no JSON object" in read_point("I would pick three blocks.", DIMS).problem
    cut = read_point('{"A": 2, "B"', DIMS, finish_reason="length")
    assert cut.truncated and cut.point is None
    thinking = read_point("<think>\nstill weighing the options", DIMS, finish_reason="length")
    assert thinking.truncated and "before </think>" in thinking.problem
    assert read_point("{" * 5000 + "}", DIMS).point is None      # hostile nesting: a verdict, no crash


def test_answers_cut_off_by_the_token_limit_get_their_own_verdict():
    template = load_template("templates/fractalnet.py")
    space = task_of("img-classification").space_of(load_config("quick").space)
    validator = Validator(templates=load_templates())
    cut = Completion(0, '{"N_BLOCKS": 2, "N_CO', 10, 256, 1.0, finish_reason="length")
    params = read_point_answer(cut, space, template)
    code = read_answer(Completion(0, "```python\nclass Net(nn.Module):\n    def f(self,", 10, 1024, 1.0,
                                  finish_reason="length"), template.source)
    for answer in (params, code):
        verdict = validator.validate(answer.source, "cut", missing=answer.problem,
                                     missing_stage=answer.problem_stage).verdict
        assert verdict.stage == "truncated" and "cut off by the token limit" in verdict.reason


def test_token_limits_leave_a_reasoning_model_room_to_think():
    quick, default = load_config("quick").llm, load_config("default").llm
    assert reasoning_parser_of(quick) is None and reasoning_parser_of(default) == "deepseek_r1"
    assert max_tokens_of(quick, "params") < max_tokens_of(quick, "code") <= 1024
    assert max_tokens_of(default, "params") == max_tokens_of(default, "code") >= default.max_model_len // 2


@pytest.mark.llm
def test_smollm2_under_the_schema_names_only_untried_points(tmp_path):
    """The real 135M model, constrained: every answer a point of the space, none already catalogued."""
    from nas_agent.llm.transformers_backend import TransformersBackend

    config = load_config("quick")
    template = load_template(config.template)
    space = task_of(config.task).space_of(config.space)
    backend = TransformersBackend("smollm2", device="cpu")
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        proposer = Proposer(backend, Sampling(max_tokens=256, n=4, seed=0), catalog=catalog, run_id="params",
                            space=space, template=template)
        validator = Validator(templates=load_templates(), catalog=catalog)
        catalogued = []
        for _ in range(3):   # each round's first answer is catalogued, then cut out of the next round's schema
            answers = proposer.points("template:fractalnet.py", n=4)
            assert len(answers) == 4 and all(a.point is not None and a.mode == "params" for a in answers)
            assert not [a.point for a in answers if a.point in catalogued]
            validation = judge_answer(catalog, validator, answers[0])
            assert validation.ok, validation.verdict
            register(catalog, CandidateFile.of(validation, Path("llm.py"), default_family=template.family), config,
                     origin="llm", parent="template:fractalnet.py", run_id="params")
            catalogued.append(answers[0].point)
        calls = catalog.llm_calls(run_id="params")
    assert len(calls) == 12 and all(c["purpose"] == "params" and c["tokens_out"] < 100 for c in calls)
    assert all(json.loads(c["sampling"])["json_schema"] for c in calls)
