"""From a raw completion to code: split off the reasoning, then find the code block that matters.

DeepSeek-R1 models think inside `<think>…</think>` before answering; the chat template
often opens the tag itself, so a completion may hold only the closing tag, and a
completion cut off by max_tokens may never close it. The reasoning is kept (its length
is worth recording) but code is only taken from the answer after it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
# A fenced block: ```python / ```py / ``` … ```; the closing fence may be missing when output was cut off.
_FENCE = re.compile(r"```[ \t]*(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)(?:\n[ \t]*```|\Z)", re.DOTALL)
_PYTHON_LANGS = {"", "python", "py", "python3"}


@dataclass(frozen=True)
class Extraction:
    """The parts of one completion: reasoning, answer, and the code taken from the answer (or why none)."""

    reasoning: str
    answer: str
    code: str | None
    problem: str = ""            # when code is None: what was found instead, for the verdict and the next prompt
    truncated: bool = False      # the reasoning or the code block was never closed


def split_reasoning(text: str) -> tuple[str, str, bool]:
    """(reasoning, answer, unterminated) of a completion, for `<think>` opened by the model or the template."""
    start = text.find(_THINK_OPEN)
    end = text.find(_THINK_CLOSE)
    if end >= 0 and (start < 0 or start < end):
        begin = start + len(_THINK_OPEN) if start >= 0 else 0
        return text[begin:end].strip(), text[end + len(_THINK_CLOSE):].strip(), False
    if start >= 0:  # opened, never closed: all of it was reasoning
        return text[start + len(_THINK_OPEN):].strip(), "", True
    return "", text.strip(), False


def code_blocks(answer: str) -> list[tuple[str, bool]]:
    """(code, closed) for each fenced Python block of the answer, in order."""
    blocks = []
    for match in _FENCE.finditer(answer):
        if match["lang"].lower() in _PYTHON_LANGS:
            closed = match.group(0).rstrip().endswith("```")
            blocks.append((match["body"].strip("\n"), closed))
    return blocks


def extract(text: str, wanted: str = "class Net") -> Extraction:
    """The last fenced Python block of the answer that contains `wanted`, else the problem in words.

    `wanted` is "class Net" for whole files; a region edit passes a name the region defines.
    """
    reasoning, answer, unterminated = split_reasoning(text)
    if unterminated:
        return Extraction(reasoning, answer, None, f"the reasoning was cut off before </think> "
                                                   f"({len(reasoning):,} characters, no answer)", True)
    blocks = code_blocks(answer)
    holding = [(code, closed) for code, closed in blocks if wanted in code]
    if holding:
        code, closed = holding[-1]  # models revise: the last complete proposal wins
        return Extraction(reasoning, answer, code, truncated=not closed)
    if blocks:
        return Extraction(reasoning, answer, None, f"{len(blocks)} code block(s) in the answer, none with `{wanted}`")
    if wanted in answer:  # code without fences: take it from the first line that starts Python code
        lines = answer.splitlines()
        first = next((i for i, line in enumerate(lines)
                      if re.match(r"(import |from |class |def |[A-Z_]+ = |#)", line)), None)
        if first is not None:
            return Extraction(reasoning, answer, "\n".join(lines[first:]).strip("\n"))
    if not answer:
        return Extraction(reasoning, answer, None, "the answer is empty")
    return Extraction(reasoning, answer, None, f"no code block in the answer ({len(answer):,} characters of prose)")
