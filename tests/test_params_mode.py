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
        for _ in range(3):   # each round's answers are catalogued, then cut out of the next round's schema
            answers = proposer.points("template:fractalnet.py", n=4)
            points = [a.point for a in answers]
            assert len(answers) == 4 and all(a.point is not None and a.mode == "params" for a in answers)
            assert not [p for p in points if p in catalogued]
            assert all(points.index(p) == i for i, p in enumerate(points)), "two answers named the same point"
            for answer in answers:
                validation = judge_answer(catalog, validator, answer)
                assert validation.ok, validation.verdict
                register(catalog, CandidateFile.of(validation, Path("llm.py"), default_family=template.family),
                         config, origin="llm", parent="template:fractalnet.py", run_id="params")
            catalogued += points
        calls = catalog.llm_calls(run_id="params")
    assert len(calls) >= 12 and all(c["purpose"] == "params" and c["tokens_out"] < 100 for c in calls)
    assert all(json.loads(c["sampling"])["json_schema"] for c in calls)
    # Every answer that was not used repeated another answer of its request, and says so.
    assert sum(c["ok"] == 1 for c in calls) == 12
    assert all(c["stage"] == "duplicate" and "asked again" in c["reason"] for c in calls if c["ok"] != 1)


def test_answers_that_repeat_each_other_are_asked_again(tmp_path):
    """Replayed answers (no schema): the second P and the third are repeats, replaced by asking again."""
    from nas_agent.llm.replay import ReplayBackend

    config = load_config("quick")
    p, q, r = (json.dumps({**QUICK_POINT, "ACTIVATION": act}) for act in ("relu", "gelu", "silu"))
    replay = tmp_path / "replay.jsonl"
    replay.write_text("".join(json.dumps({"text": t}) + "\n" for t in (p, p, q, p, r)))
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        proposer = Proposer.for_config(config, ReplayBackend(replay), catalog=catalog, run_id="re-ask")
        answers = proposer.points("template:fractalnet.py", n=3)
        calls = catalog.llm_calls(run_id="re-ask")
    assert [a.point["ACTIVATION"] for a in answers] == ["relu", "gelu", "silu"] and [a.index for a in answers] == [0, 1, 2]
    assert len({a.call_id for a in answers}) == 3
    assert [c["stage"] for c in calls] == [None, "duplicate", None, "duplicate", None]
    assert all("same point as answer 0 of this request" in calls[i]["reason"] for i in (1, 3))
    # The repeat is asked for again under a schema that leaves out the points already given.
    again = json.loads(calls[3]["sampling"])
    assert again["n"] == 1 and len(json.dumps(again["json_schema"])) > len(json.dumps(json.loads(calls[0]["sampling"])["json_schema"]))


# -- nas-agent propose --mode ------------------------------------------------------------------------

QUICK_POINT = {"N_BLOCKS": 3, "N_COLUMNS": 2, "BASE_CHANNELS": 16, "ACTIVATION": "gelu", "ELEMENT_ORDER": "bn,conv,act"}


@pytest.mark.e2e
def test_propose_in_params_mode_judges_and_records_every_point(tmp_path):
    from conftest import run_nas_agent

    replay = tmp_path / "replay.jsonl"
    answers = [json.dumps(QUICK_POINT),                                    # a point of the quick space
               json.dumps({**QUICK_POINT, "N_BLOCKS": 9}),                 # outside it
               "Three blocks, I think."]                                   # no JSON at all
    replay.write_text("".join(json.dumps({"text": a}) + "\n" for a in answers))
    catalog = tmp_path / "catalog.sqlite"
    result = run_nas_agent("propose", "-c", "quick", "--mode", "params", "--backend", "replay", "--replay", replay,
                           "--n", 3, "--catalog", catalog, "--no-smoke", "--out", tmp_path / "out")
    assert "1 of 3 valid" in result.stdout, result.stdout
    with Catalog(catalog) as cat:
        calls = cat.llm_calls()
    assert [c["purpose"] for c in calls] == ["params"] * 3
    assert [c["ok"] for c in calls] == [1, 0, 0] and [c["stage"] for c in calls] == [None, "parse", "parse"]
    assert "N_BLOCKS=9 is not one of 2, 3" in calls[1]["reason"] and "no JSON object" in calls[2]["reason"]
    assert json.loads(calls[0]["sampling"])["json_schema"]["required"] == list(QUICK_POINT)
    (written,) = (tmp_path / "out").glob("proposal-*.py")
    assert "N_BLOCKS = 3" in written.read_text() and "ELEMENT_ORDER = ('bn', 'conv', 'act')" in written.read_text()
    bad = run_nas_agent("propose", "--mode", "json", "--backend", "replay", "--replay", replay, check=False)
    assert bad.returncode == 2 and "--mode: 'json' is not one of params, code, mixed" in bad.stderr


@pytest.mark.e2e
def test_saved_answers_are_read_as_points_or_as_code(tmp_path):
    from conftest import run_nas_agent

    point, code = tmp_path / "point.txt", tmp_path / "code.txt"
    point.write_text("<think>Fewer columns train faster.</think>\n" + json.dumps(QUICK_POINT))
    code.write_text((Path(__file__).parent / "llm_answers" / "nngpt-alternn-B1.txt").read_text())
    result = run_nas_agent("propose", "-c", "quick", "--catalog", tmp_path / "none.sqlite", "--from-file",
                           point, code, check=False)
    assert _verdict_rows(result.stdout) == {str(point): ["params", "yes", ""], str(code): ["code", "yes", ""]}
    assert result.returncode == 0
    as_code = run_nas_agent("propose", "-c", "quick", "--catalog", tmp_path / "none.sqlite", "--mode", "code",
                            "--from-file", point, check=False)
    assert as_code.returncode == 1 and _verdict_rows(as_code.stdout)[str(point)] == ["code", "no", "parse"]


def _verdict_rows(table: str) -> dict[str, list[str]]:
    """file -> [read as, ok, stage] from propose --from-file's table."""
    cells = [[cell.strip() for cell in line.split("│")[1:-1]] for line in table.splitlines() if ".txt" in line]
    return {row[0]: row[1:4] for row in cells}
