"""Code extraction on real LLM answers (tests/llm_answers/) and the edge cases they taught.

The corpus files are real completions, copied verbatim from public repositories (index.json
says where each came from and what a correct extraction yields). The short strings marked
SYNTHETIC below were written for these tests: they pin one case each and are not real answers.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from conftest import run_nas_agent
from nas_agent.llm.base import Completion
from nas_agent.llm.extract import blocks, code_blocks, extract, split_reasoning
from nas_agent.config import load_config
from nas_agent.llm.propose import read_answer
from nas_agent.llm.structured import read_point, spelled_point
from nas_agent.space import editable_regions, load_template, read_params
from nas_agent.tasks import task_of

CORPUS = Path(__file__).resolve().parent / "llm_answers"
INDEX = json.loads((CORPUS / "index.json").read_text())
# The space the recorded params answers name: the quick config's.
QUICK_DIMENSIONS = task_of("img-classification").space_of(load_config("quick").space).dimensions()
NET = "import torch\nclass Net(nn.Module):\n    pass"  # SYNTHETIC: the smallest code that holds `class Net`


def answer(name: str) -> str:
    return (CORPUS / name).read_text()


def parses(code: str | None) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, TypeError):
        return False
    return True


# -- the corpus ---------------------------------------------------------------------------------

def test_the_index_names_every_answer_and_where_it_came_from():
    files = {path.name for path in CORPUS.glob("*.txt")}
    assert files == {entry["file"] for entry in INDEX} and len(files) >= 30
    for entry in INDEX:
        source = entry["source"]
        if "command" in source:    # recorded here from SmolLM2: the command that asked, the call it was
            assert source["command"].startswith("nas-agent propose") and "--record" in source["command"]
            assert source["backend"] in ("transformers", "vllm", "openai") and source["mode"] == entry.get("mode")
        else:
            assert source["repository"] and source["path"] and source["url"].startswith("https://github.com/")
        assert entry["model"] and "truncated" in entry["expect"]
        assert entry.get("mode", "code") == "params" or entry["wanted"] is not None
    recorded = {(e["source"]["backend"], e["mode"]) for e in INDEX if "command" in e["source"]}
    assert recorded == {(b, m) for b in ("transformers", "vllm", "openai") for m in ("params", "code")}


@pytest.mark.parametrize("entry", INDEX, ids=[entry["file"] for entry in INDEX])
def test_every_corpus_answer_is_extracted_as_the_index_says(entry):
    expect = entry["expect"]
    if entry.get("mode") == "params":
        found = read_point(answer(entry["file"]), QUICK_DIMENSIONS, entry.get("finish_reason"))
        assert found.truncated == expect["truncated"], found.problem
        if expect["point"] is None:
            assert found.point is None and expect["problem"] in found.problem
        else:
            assert spelled_point(found.point) == expect["point"], found.problem
        return
    result = extract(answer(entry["file"]), entry["wanted"], finish_reason=entry.get("finish_reason"))
    assert result.truncated == expect["truncated"], result.problem
    if not expect["code"]:
        assert result.code is None and expect["problem"] in result.problem
        return
    assert result.code is not None, result.problem
    assert parses(result.code), result.code[:300]
    assert all(name in result.code for name in expect["contains"])
    assert not any(name in result.code for name in expect["excludes"])


def test_the_answer_block_is_told_from_the_snippets_in_the_prose_before_it():
    text = answer("triton-qwen3-kernelbench_80-turn4.txt")   # 6 fenced snippets, then <triton> … </triton>
    assert len(code_blocks(text)) == 7
    code = extract(text, "def triton_kernel_wrapper").code
    assert code.startswith("import torch\nimport triton") and code.rstrip().endswith("return output")


# -- wrapper tags -------------------------------------------------------------------------------

def test_nn_gpt_tags_inside_the_fence_are_wrappers_not_code():
    text = answer("nngpt-alternn-B0.txt")  # ```python <nn> class Net … </nn> ```
    assert text.startswith("```python\n<nn>\n")
    code = extract(text).code
    assert code.startswith("class Net(nn.Module):") and "<nn>" not in code and "</nn>" not in code
    assert parses(code)


@pytest.mark.parametrize("text", [
    f"<nn>\n```python\n{NET}\n```\n</nn>",                  # SYNTHETIC: tags around the fence
    f"```python\n<code>\n{NET}\n</code>\n```",              # SYNTHETIC: <code> inside it
    f'<Answer type="python">\n{NET}\n</ANSWER>',            # SYNTHETIC: attributes, other case, no fence
    f"Here it is.\n<answer>\n{NET}\n",                      # SYNTHETIC: the tag never closed, at the end
    f"{NET}\n</code>\nThat is all.",                         # SYNTHETIC: only the closing tag
])
def test_wrapper_tags_in_any_place_case_or_state_leave_the_code(text):
    result = extract(text)
    assert result.code == NET and not result.truncated


def test_one_tag_per_piece_gives_each_piece_its_own_block():
    text = answer("julia2-A5-B6.txt")  # <block>, <init>, <forward>, then prose
    pieces = blocks(text)
    assert [b.code.split("(")[0] for b in pieces] == ["def drop_conv3x3_block", "def __init__", "def forward"]
    assert all(b.closed and b.parses for b in pieces)


# -- cut off or complete ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["nngpt-alternn-B6.txt", "nngpt-alternn-B8.txt"])
def test_a_fence_closed_by_its_tag_is_complete_not_cut_off(name):
    text = answer(name)  # <nn> ```python … </nn>: the old extractor called these truncated
    assert text.count("```") == 1
    result = extract(text)
    assert parses(result.code) and not result.truncated


def test_a_missing_closing_fence_on_complete_code_is_not_a_cut_off():
    text = f"Here is the network:\n```python\n{NET}\n"          # SYNTHETIC
    assert not extract(text).truncated and extract(text).code == NET
    assert not extract(text, finish_reason="length").truncated  # it parses: nothing was lost


def test_code_cut_off_at_the_end_is_truncated():
    # Real: the last block of this answer stops mid-word ("elif gene") where the completion ended.
    text = answer("ga-cifar100-07-13_22-14-18-line18.txt")
    last = text[text.rindex("```python"):]
    assert last.rstrip().endswith("elif gene")
    result = extract(last, "def combine_genes")
    assert result.truncated and not parses(result.code)
    # The whole answer still holds complete blocks with the method: the last of those is taken.
    whole = extract(text, "def combine_genes")
    assert not whole.truncated and parses(whole.code) and "Snap to nearest valid value" in whole.code


def test_the_finish_reason_decides_when_it_is_known():
    broken = f"```python\n{NET}\n    def forward(self, x):\n```"   # SYNTHETIC: closed fence, code that does not parse
    assert not extract(broken).truncated                             # the model stopped: broken, not cut off
    assert extract(broken, finish_reason="length").truncated         # the token limit stopped it
    assert not extract(broken[:-4], finish_reason="stop").truncated  # unclosed, but the model chose to stop
    assert extract(broken[:-4]).truncated                            # unclosed at the end, reason unknown


# -- several blocks, prose, reasoning -----------------------------------------------------------

def test_the_last_complete_block_holding_what_is_wanted_wins():
    text = (f"Draft:\n```python\n{NET}\n```\nHelper:\n```python\ndef helper():\n    pass\n```\n"   # SYNTHETIC
            f"Final:\n```py\n{NET}\n    # final\n```\nAnd a fix that was cut:\n```python\n{NET}\n    def f(:\n")
    result = extract(text)
    assert result.code.endswith("# final") and not result.truncated
    assert extract(text, "def helper").code == "def helper():\n    pass"


def test_blocks_in_prose_that_do_not_hold_it_are_passed_over():
    text = answer("triton-qwen3-kernelbook_1133-turn4.txt")  # 20 fenced snippets, then <triton>
    result = extract(text, "def triton_kernel_wrapper")
    assert parses(result.code) and result.code.startswith("import torch")
    assert "no code block" in extract("I would add more layers.").problem


def test_bare_code_is_cut_where_the_prose_after_it_starts():
    text = f"Sure.\n{NET}\n\nThis network is tiny, but it trains.\n"   # SYNTHETIC
    assert extract(text).code == NET
    real = extract(answer("ga-cifar10-07-14_16-15-06-line20.txt"), "def select_competitor")
    assert real.code.startswith("def select_competitor") and parses(real.code)


def test_method_code_indented_as_in_its_class_is_dedented():
    text = answer("ga-cifar10_deepseek-07-17_22-00-11-line1.txt")
    assert "\n    def combine_genes" in text
    code = extract(text, "def combine_genes").code
    assert code.startswith("def combine_genes") and parses(code)


def test_reasoning_is_split_off_with_or_without_its_opening_tag():
    assert split_reasoning("<THINK>\nplan\n</Think>\nanswer") == ("plan", "answer", False)   # SYNTHETIC
    text = answer("ga-cifar100-07-13_23-39-57-line11.txt")   # "### thinking" … </thinking>: no opening tag
    reasoning, rest, unterminated = split_reasoning(text)
    assert reasoning.startswith("### thinking") and rest.startswith("```python") and not unterminated
    cut = extract(answer("r1-qwen1.5b-riddle-cutoff.txt"))
    assert cut.code is None and cut.truncated and "cut off before </think>" in cut.problem


def test_an_answer_left_inside_unclosed_reasoning_is_found_unless_the_tokens_ran_out():
    text = answer("ga-cifar100-07-13_23-39-57-line6.txt")   # <thinking> never closed, the answer inside it
    assert "</thinking>" not in text
    assert extract(text, "def combine_genes").code.startswith("def combine_genes")
    assert extract(text, "def combine_genes", finish_reason="length").code is None


# -- regions and the splice ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def template():
    return load_template("templates/fractalnet.py")


def marked(label: str, body: str) -> str:
    return f"# --- nas-agent: {label} (begin) ---\n{body}\n# --- nas-agent: {label} (end) ---"


def completion(text: str, finish_reason: str | None = None) -> Completion:
    return Completion(0, text, 0, 0, 0.0, finish_reason)


def test_a_partial_answer_changes_only_the_regions_it_returns(template):
    region = marked("template parameters", 'ACTIVATION = "gelu"')
    text = f"<think>GELU.</think>\n```python\n<code>\n{region}\n</code>\n"
    result = read_answer(completion(text), template.source)   # SYNTHETIC, wrapped as the corpus taught
    params = read_params(result.source)
    assert result.problem == "" and params["ACTIVATION"] == "gelu"
    assert params["N_BLOCKS"] == template.defaults["N_BLOCKS"]
    assert editable_regions(result.source)["element"] == editable_regions(template.source)["element"]


def test_regions_spread_over_several_blocks_are_all_spliced(template):
    element = "def make_element(c_in, c_out, dropout):\n    return nn.Conv2d(c_in, c_out, 3, padding=1)"
    text = (f"First the parameters:\n```python\n{marked('template parameters', 'N_BLOCKS = 2')}\n```\n"   # SYNTHETIC
            f"Then the element:\n```python\n{marked('element', element)}\n```\n")
    result = read_answer(completion(text), template.source)
    assert read_params(result.source)["N_BLOCKS"] == 2
    assert editable_regions(result.source)["element"] == element


def test_a_whole_file_instead_of_regions_is_taken_whole(template):
    whole = template.render({"N_COLUMNS": 2})
    result = read_answer(completion(f"```python\n<nn>\n{whole}</nn>\n```"), template.source)   # SYNTHETIC wrapper
    assert result.source.strip() == whole.strip() and result.problem == ""


# -- nas-agent propose --from-file ---------------------------------------------------------------

@pytest.mark.e2e
def test_propose_judges_saved_completions_without_an_llm(tmp_path):
    valid, rejected = CORPUS / "nngpt-alternn-B1.txt", CORPUS / "r1-qwen1.5b-fluffy.txt"
    catalog = tmp_path / "none.sqlite"   # absent: nothing to look duplicates up in, nothing recorded
    result = run_nas_agent("propose", "--catalog", catalog, "--from-file", valid, rejected, check=False)
    assert result.returncode == 1, result.stderr
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if ".txt" in line}
    assert "│ yes │" in rows[str(valid)] and "│ no  │ parse" in rows[str(rejected)]
    assert "no code block in the answer" in rows[str(rejected)] and "1 of 2 valid" in result.stdout
    assert not catalog.exists()
    assert run_nas_agent("propose", "--catalog", catalog, "--from-file", valid, check=False).returncode == 0
    missing = run_nas_agent("propose", "--from-file", tmp_path / "gone.txt", check=False)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00broken")
    unreadable = run_nas_agent("propose", "--from-file", tmp_path / "binary.txt", check=False)
    assert unreadable.returncode == 2 and "cannot read" in unreadable.stderr
