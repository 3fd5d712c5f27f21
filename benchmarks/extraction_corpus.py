"""Code extraction on real LLM answers: the corpus of tests/llm_answers/, before and after the rewrite.

    .venv/bin/python benchmarks/extraction_corpus.py

For every saved completion of the corpus (tests/llm_answers/index.json says where each came
from and what a correct extraction yields) it runs two extractors: the one this rewrite replaced
(its logic copied below from nas_agent/llm/extract.py and propose.py's `_extract` as they were
before issue 21) and nas_agent.llm.extract. It counts the answers whose extraction

- parsed: gave code that Python's parser accepts and that holds what the index wants;
- as indexed: matches the index (code that parses and holds the expected names, or a rejection
  for the expected reason, and the same truncated/complete call);
- called truncated: was said to be cut off;
- valid: spliced into the fractal template (templates/fractalnet.py) as `nas-agent propose` does
  and passed the static validation stages (parse, policy, contract, duplicates). The corpus comes
  from other pipelines (nn-gpt, KernelBench, GA operators), so few of its answers can fit the
  template; the column shows that the whole path runs on them, not a success rate to chase.

Nothing runs candidate code and no LLM is loaded.
"""

from __future__ import annotations

import ast
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from nas_agent.config import REPO_ROOT, load_config
from nas_agent.llm.base import Completion
from nas_agent.llm.extract import extract
from nas_agent.llm.propose import read_answer, read_saved_answer, splice
from nas_agent.llm.structured import spelled_point
from nas_agent.space import load_template
from nas_agent.space.template import TemplateError
from nas_agent.tasks import task_of
from nas_agent.validate import validator_for

CORPUS = REPO_ROOT / "tests" / "llm_answers"


# --- the extractor before this rewrite (verbatim logic, for the "before" column) -------------------

@dataclass(frozen=True)
class OldExtraction:
    reasoning: str
    answer: str
    code: str | None
    problem: str = ""
    truncated: bool = False


_OLD_THINK_OPEN, _OLD_THINK_CLOSE = "<think>", "</think>"
_OLD_FENCE = re.compile(r"```[ \t]*(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)(?:\n[ \t]*```|\Z)", re.DOTALL)
_OLD_PYTHON_LANGS = {"", "python", "py", "python3"}


def old_split_reasoning(text: str) -> tuple[str, str, bool]:
    start = text.find(_OLD_THINK_OPEN)
    end = text.find(_OLD_THINK_CLOSE)
    if end >= 0 and (start < 0 or start < end):
        begin = start + len(_OLD_THINK_OPEN) if start >= 0 else 0
        return text[begin:end].strip(), text[end + len(_OLD_THINK_CLOSE):].strip(), False
    if start >= 0:
        return text[start + len(_OLD_THINK_OPEN):].strip(), "", True
    return "", text.strip(), False


def old_code_blocks(answer: str) -> list[tuple[str, bool]]:
    blocks = []
    for match in _OLD_FENCE.finditer(answer):
        if match["lang"].lower() in _OLD_PYTHON_LANGS:
            closed = match.group(0).rstrip().endswith("```")
            blocks.append((match["body"].strip("\n"), closed))
    return blocks


def old_extract(text: str, wanted: str = "class Net") -> OldExtraction:
    reasoning, answer, unterminated = old_split_reasoning(text)
    if unterminated:
        return OldExtraction(reasoning, answer, None, f"the reasoning was cut off before </think> "
                                                      f"({len(reasoning):,} characters, no answer)", True)
    blocks = old_code_blocks(answer)
    holding = [(code, closed) for code, closed in blocks if wanted in code]
    if holding:
        code, closed = holding[-1]
        return OldExtraction(reasoning, answer, code, truncated=not closed)
    if blocks:
        problem = f"{len(blocks)} code block(s) in the answer, none with `{wanted}`"
        return OldExtraction(reasoning, answer, None, problem)
    if wanted in answer:
        lines = answer.splitlines()
        first = next((i for i, line in enumerate(lines)
                      if re.match(r"(import |from |class |def |[A-Z_]+ = |#)", line)), None)
        if first is not None:
            return OldExtraction(reasoning, answer, "\n".join(lines[first:]).strip("\n"))
    if not answer:
        return OldExtraction(reasoning, answer, None, "the answer is empty")
    return OldExtraction(reasoning, answer, None, f"no code block in the answer ({len(answer):,} characters of prose)")


def old_propose_extract(text: str, base: str) -> OldExtraction:
    """propose._extract before the rewrite: regions, else a whole file, else the last Python block."""
    regions = old_extract(text, wanted="nas-agent:")
    if regions.code is not None or not regions.answer:
        return regions
    whole = old_extract(text, wanted="class Net")
    if whole.code is not None:
        return whole
    blocks = old_code_blocks(regions.answer)
    if blocks:
        code, closed = blocks[-1]
        return OldExtraction(regions.reasoning, regions.answer, code, truncated=not closed)
    return regions


def old_source(text: str, base: str) -> tuple[str | None, str]:
    extraction = old_propose_extract(text, base)
    if extraction.code is None:
        return None, extraction.problem
    try:
        return splice(base, extraction.code)
    except TemplateError as exc:
        return None, str(exc)


# --- scoring -------------------------------------------------------------------------------------

def parses(code: str | None) -> bool:
    if code is None:
        return False
    try:
        ast.parse(code)
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        return False
    return True


def as_indexed(extraction, expect: dict) -> bool:
    """Whether an extraction matches what the index says a correct one yields."""
    if extraction.truncated != expect["truncated"]:
        return False
    if not expect["code"]:
        return extraction.code is None and expect["problem"] in extraction.problem
    return (parses(extraction.code) and all(name in extraction.code for name in expect["contains"])
            and not any(name in extraction.code for name in expect.get("excludes", ())))


def main() -> None:
    index = json.loads((CORPUS / "index.json").read_text())
    base = load_template("templates/fractalnet.py").source
    validators = {side: validator_for(load_config(), smoke=False) for side in ("before", "after")}
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    quick = load_config("quick")
    space, template = task_of(quick.task).space_of(quick.space), load_template(quick.template)
    for entry in index:
        text = (CORPUS / entry["file"]).read_text()
        group = entry["file"].split("-")[0] + ("-" + entry["mode"] if entry.get("mode") else "")
        finish = entry.get("finish_reason")
        completion = Completion(0, text, 0, len(text.split()), 0.0, finish_reason=finish)
        old_src, old_problem = old_source(text, base)
        if entry.get("mode") == "params":
            # Before params mode an answer was read as code only; now a JSON point of the space is read as one.
            wanted = "class Net"
            old = old_extract(text, wanted)
            answer = read_saved_answer(completion, base, space, template)
            new = answer.extraction
            new_ok = answer.point is not None
            new_indexed = new_ok and spelled_point(answer.point) == entry["expect"]["point"]
        else:
            wanted = entry["wanted"]
            old = old_extract(text, wanted)
            new = extract(text, wanted, finish_reason=finish)
            answer = read_answer(completion, base)
            new_ok = parses(new.code) and wanted in new.code
            new_indexed = as_indexed(new, entry["expect"])
        results = {
            "before": (old, parses(old.code) and wanted in old.code,
                       entry.get("mode") != "params" and as_indexed(old, entry["expect"]),
                       validators["before"].validate(old_src, entry["file"], missing=old_problem or "no code")),
            "after": (new, new_ok, new_indexed,
                      validators["after"].validate(answer.source, entry["file"], missing=answer.problem or "no code")),
        }
        for side, (extraction, parsed, indexed, validation) in results.items():
            for key in (group, "all"):
                row = counts[(key, side)]
                row["answers"] += 1
                row["parsed"] += parsed
                row["as indexed"] += indexed
                row["called truncated"] += extraction.truncated
                row["valid"] += validation.ok
    columns = ("answers", "parsed", "as indexed", "called truncated", "valid")
    print(f"code extraction on {len(index)} real LLM answers (tests/llm_answers), before → after")
    table = Table()
    table.add_column("source")
    for column in columns:
        table.add_column(column, justify="right")
    groups = sorted({key for key, _ in counts} - {"all"}) + ["all"]
    for key in groups:
        before, after = counts[(key, "before")], counts[(key, "after")]
        table.add_row(key, *(str(after[c]) if c == "answers" else f"{before[c]} → {after[c]}" for c in columns))
    Console(width=120).print(table)
    print("sources: nngpt = ABrain-One/nn-gpt AlterNN outputs, ga = DeathStroXX/nn-gpt GA operator answers, "
          "triton = Prathmesh234/MultiTurnKernel-SFT (Qwen3, GLM-4.5-Air), julia2 = CSXizhang/nn-gpt region answers, "
          "r1 = DeepSeek-R1-Distill-Qwen-1.5B (thaotnguyen/thinking-llms-interp), smollm2 = SmolLM2-135M-Instruct "
          "recorded here with `nas-agent propose --record` (a plumbing-size model; params answers: parsed = a point "
          "of the quick space read)")


if __name__ == "__main__":
    main()
