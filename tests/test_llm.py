"""LLM answers to candidates: reasoning split, code extraction, region splicing, replay, recording."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nas_agent.catalog import Catalog
from nas_agent.llm import LLMError, Sampling
from nas_agent.llm.extract import extract, split_reasoning
from nas_agent.llm.propose import Proposer, splice
from nas_agent.search.llm_strategy import judge_answer
from nas_agent.llm.replay import ReplayBackend, record
from nas_agent.space import editable_regions, load_template, load_templates, read_params
from nas_agent.validate import Validator

pytestmark = pytest.mark.llm

NET = "import torch\nclass Net(nn.Module):\n    pass"


def test_reasoning_is_split_off_however_the_think_tag_was_opened():
    assert split_reasoning("<think>\nplan\n</think>\nanswer") == ("plan", "answer", False)
    # DeepSeek-R1's chat template opens <think> itself: the completion holds only the closing tag.
    assert split_reasoning("plan\n</think>\n\nanswer") == ("plan", "answer", False)
    assert split_reasoning("<think>\nstill thinking when max_tokens ran out") == (
        "still thinking when max_tokens ran out", "", True)
    assert split_reasoning("just an answer") == ("", "just an answer", False)


def test_code_comes_from_the_last_block_that_holds_the_net_and_never_from_the_reasoning():
    text = (f"<think>\nFirst idea:\n```python\n{NET}  # from the reasoning\n```\n</think>\n"
            f"Helper:\n```python\ndef helper():\n    pass\n```\nDraft:\n```python\n{NET}\n```\n"
            f"Final:\n```py\n{NET}\n    # final\n```\n")
    result = extract(text)
    assert result.code.endswith("# final") and "from the reasoning" not in result.code
    assert not result.truncated and result.reasoning.startswith("First idea")


def test_truncated_missing_and_prose_answers_say_what_was_found():
    cut = extract(f"</think>\n```python\n{NET}\n    def forward(self, x):")
    assert cut.code.endswith("def forward(self, x):") and cut.truncated  # validation will say `parse`
    assert "cut off before </think>" in extract("<think>\nhmm").problem
    assert "none with `class Net`" in extract("```python\nx = 1\n```").problem
    assert "no code block" in extract("I would add more layers.").problem
    assert extract("").problem == "the answer is empty"
    bare = extract("Sure.\nimport torch\nclass Net(nn.Module):\n    pass")
    assert bare.code.startswith("import torch")


@pytest.fixture(scope="module")
def template():
    return load_template("templates/fractalnet.py")


def test_splice_takes_marked_regions_bare_region_code_and_whole_files(template):
    marked = ("# --- nas-agent: template parameters (begin) ---\nN_BLOCKS = 2\nACTIVATION = \"gelu\"\n"
              "# --- nas-agent: template parameters (end) ---")
    source, problem = splice(template.source, marked)
    params = read_params(source)
    assert problem == "" and params["N_BLOCKS"] == 2 and params["ACTIVATION"] == "gelu"
    assert params["N_COLUMNS"] == template.defaults["N_COLUMNS"]  # what the answer left out stays
    assert list(params) == list(template.defaults)  # in its place
    element = "def make_element(c_in, c_out, dropout):\n    return nn.Conv2d(c_in, c_out, 3, padding=1)"
    source, _ = splice(template.source, element)
    assert editable_regions(source)["element"] == element
    assert read_params(source) == template.defaults
    whole = template.render({"N_COLUMNS": 2})
    assert splice(template.source, whole) == (whole, "")
    assert splice(template.source, "# --- nas-agent: head (begin) ---\nx = 1\n# --- nas-agent: head (end) ---")[1] \
        .startswith("the answer's regions (head) are not the template's")
    assert splice(template.source, "x = 1")[1] == "the answer's code defines none of the editable regions' names"


def test_replay_backend_groups_completions_by_prompt_and_starts_over(tmp_path):
    path = tmp_path / "replay.jsonl"
    path.write_text("\n".join(json.dumps({"text": f"answer {i}", "tokens_out": i + 1}) for i in range(3)) + "\n")
    backend = ReplayBackend(path)
    out = backend.generate(["first prompt", "second"], Sampling(n=2))
    assert [(c.prompt_index, c.text) for c in out] == [(0, "answer 0"), (0, "answer 1"), (1, "answer 2"),
                                                       (1, "answer 0")]
    assert out[0].tokens_in == 2 and out[1].tokens_out == 2
    record(tmp_path / "again.jsonl", out)
    assert [c.text for c in ReplayBackend(tmp_path / "again.jsonl").generate(["p"], Sampling(n=4))] == \
        [c.text for c in out]
    (tmp_path / "bad.jsonl").write_text("not json\n")
    with pytest.raises(LLMError, match="bad.jsonl:1"):
        ReplayBackend(tmp_path / "bad.jsonl")
    with pytest.raises(LLMError, match="cannot read replay file"):
        ReplayBackend(tmp_path / "missing.jsonl")


REPLAY = [
    "<think>\nGELU may train better.\n</think>\n```python\n# --- nas-agent: template parameters (begin) ---\n"
    "N_BLOCKS = 3\nN_COLUMNS = 2\nACTIVATION = \"gelu\"\n# --- nas-agent: template parameters (end) ---\n```",
    "```python\n# --- nas-agent: template parameters (begin) ---\nN_BLOCKS = 3\nN_COLUMNS = 2\n"
    "ACTIVATION = \"gelu\"  # the same edit again\n# --- nas-agent: template parameters (end) ---\n```",
    "<think>\nI will read a file first.\n</think>\n```python\n# --- nas-agent: element (begin) ---\n"
    "def make_element(c_in, c_out, dropout):\n    open('/etc/passwd')\n    return nn.Identity()\n"
    "# --- nas-agent: element (end) ---\n```",
    "<think>\nthinking until the tokens run out",
]


def test_proposals_are_validated_recorded_and_fed_back(tmp_path, template):
    replay = tmp_path / "replay.jsonl"
    replay.write_text("".join(json.dumps({"text": t}) + "\n" for t in REPLAY))
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        proposer = Proposer(ReplayBackend(replay), Sampling(n=4), catalog=catalog, run_id="run-1")
        validator = Validator(templates=load_templates(), catalog=catalog)
        answers = proposer.edit(template.source, "template:fractalnet.py")
        validations = [judge_answer(catalog, validator, answer) for answer in answers]
        stages = [v.verdict.stage for v in validations]
        assert stages == [None, "duplicate", "policy", "truncated"]  # the last ran out of tokens thinking
        calls = catalog.llm_calls(run_id="run-1")
        assert [c["stage"] for c in calls] == stages and [c["ok"] for c in calls] == [1, 0, 0, 0]
        assert calls[0]["reasoning_chars"] == len("GELU may train better.") and calls[0]["backend"] == "replay"
        assert calls[0]["code_hash"] == validations[0].code_hash
        assert json.loads(calls[0]["sampling"])["n"] == 4
        # The next prompt for the same parent carries the verdicts of its rejected children.
        prompt = proposer.edit_prompt(template.source, "template:fractalnet.py")
        assert "the builtin open is not allowed" in prompt and "cut off before </think>" in prompt
        assert "# --- nas-agent: element (begin) ---" in prompt and "$" not in prompt.split("```")[0]


def test_propose_command_with_a_replay_file(tmp_path):
    replay = tmp_path / "replay.jsonl"
    replay.write_text("".join(json.dumps({"text": t}) + "\n" for t in REPLAY))
    result = subprocess.run(
        [sys.executable, "-m", "nas_agent.cli", "propose", "--backend", "replay", "--replay", str(replay), "--n", "4",
         "--catalog", str(tmp_path / "catalog.sqlite"), "--out", str(tmp_path / "out"), "--no-smoke", "--mode", "code"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "1 of 4 valid" in result.stdout
    assert len(list((tmp_path / "out").glob("proposal-*.py"))) == 1
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        assert len(catalog.llm_calls()) == 4
    missing = subprocess.run([sys.executable, "-m", "nas_agent.cli", "propose", "--backend", "replay",
                              "--catalog", str(tmp_path / "c2.sqlite")], capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "needs a replay file" in missing.stderr


@pytest.mark.slow
def test_transformers_backend_runs_the_shipped_smollm2_gguf(tmp_path, template):
    from nas_agent.llm.transformers_backend import TransformersBackend

    backend = TransformersBackend("smollm2", device="cpu")
    out = backend.generate(["Say hello.", "Name a colour."], Sampling(max_tokens=12, n=1, seed=0))
    assert [c.prompt_index for c in out] == [0, 1]
    assert all(c.tokens_in > 5 and 0 < c.tokens_out <= 12 and c.text for c in out)
    # The whole propose path with a real (tiny) model: whatever it writes, verdicts are recorded.
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        proposer = Proposer(backend, Sampling(max_tokens=48, n=2, seed=0), catalog=catalog, run_id="tiny")
        validator = Validator(templates=load_templates())
        proposals = [judge_answer(catalog, validator, a) for a in proposer.edit(template.source, "template:fractalnet.py")]
        calls = catalog.llm_calls(run_id="tiny")
    assert len(proposals) == 2 and len(calls) == 2
    assert all(c["tokens_out"] > 0 and c["latency_s"] > 0 and c["model"] == "smollm2" for c in calls)
    assert all((c["ok"] == 1) == (c["stage"] is None) for c in calls)
    assert all(c["stage"] is None or c["reason"] for c in calls)


def test_backends_that_cannot_run_say_which_would(tmp_path):
    from dataclasses import replace

    from nas_agent.config import load_config
    from nas_agent.llm import make_backend

    llm = replace(load_config().llm, base_url="http://127.0.0.1:9/v1", retries=1, timeout_s=5)
    with pytest.raises(LLMError, match="no OpenAI-compatible server at http://127.0.0.1:9/v1"):
        make_backend(replace(llm, backend="openai")).generate(["hi"], Sampling(max_tokens=4))
    try:
        import vllm  # noqa: F401  (present only in .venv-vllm)
    except ImportError:
        with pytest.raises(LLMError, match="use backend transformers"):
            make_backend(replace(llm, backend="vllm"))
    with pytest.raises(LLMError, match="no GGUF file"):
        make_backend(replace(llm, backend="transformers", model=str(tmp_path / "missing.gguf")))
