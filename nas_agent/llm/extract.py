"""From a raw completion to code: split off the reasoning, then find the code block that matters.

Real answers wrap their code in many ways (tests/llm_answers/ holds real ones): markdown
fences with or without a language; wrapper tags such as `<nn>…</nn>`, `<code>`, `<answer>`,
`<triton>` around the fence, inside it, or instead of it, sometimes never closed, sometimes
only closed; several blocks with prose between them; method code indented as in its class;
or bare code with no wrapper at all. A fence or tag that is never closed is not a cut-off by
itself: the code is cut off only when Python's parser refuses it and the completion ran into
its token limit (or, when that is unknown, the block ran on to the very end).

DeepSeek-R1 models think inside `<think>…</think>` before answering (other models write
`<thinking>`); the chat template often opens the tag itself, so a completion may hold only the
closing tag, and a completion cut off by max_tokens may never close it. The reasoning is kept
(its length is worth recording) but code is only taken from the answer after it.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

# Reasoning tags, any case, attributes allowed: <think>, <thinking>, </think>, </thinking>.
_THINK_OPEN = re.compile(r"<(think|thinking)(\s[^<>]*)?>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</(think|thinking)\s*>", re.IGNORECASE)
# A fence line: ``` or ~~~ with an optional language ("```python", "``` py", "~~~python3").
_FENCE = re.compile(r"^\s*(?P<mark>`{3,}|~{3,})\s*(?P<lang>[\w+.-]*)[^`]*$")
# A line that is only a tag, e.g. `<nn>`, `</nn>`, `<Code lang="python">`: never a line of Python, so a wrapper.
_TAG = re.compile(r"^\s*<(?P<close>/?)(?P<name>[A-Za-z][\w:.-]*)(\s[^<>]*)?>\s*$")
_PYTHON_LANGS = {"", "python", "py", "python3", "py3", "pytorch"}
# Real answers nest two or three wrappers; deeper "tags" are taken as text, which keeps hostile input linear.
_MAX_WRAPPERS = 8
# Where bare code starts when an answer has no wrapper at all.
_CODE_START = re.compile(r"(import |from \S+ import |class |def |async def |@|[A-Z_][A-Z0-9_]* = |# --- nas-agent:)")


@dataclass(frozen=True)
class Extraction:
    """The parts of one completion: reasoning, answer, and the code taken from the answer (or why none)."""

    reasoning: str
    answer: str
    code: str | None
    problem: str = ""            # when code is None: what was found instead, for the verdict and the next prompt
    truncated: bool = False      # cut off: reasoning never closed, or code that does not parse at the end


@dataclass(frozen=True)
class Block:
    """One wrapped piece of an answer: its code (wrappers removed, dedented), how it was wrapped and ended."""

    code: str
    lang: str            # the fence's language ("" for none or a tag)
    closed: bool         # ended by a closing fence or tag, not by the end of the text
    parses: bool         # Python's parser accepts the code

    @property
    def python(self) -> bool:
        return self.lang.lower() in _PYTHON_LANGS


def split_reasoning(text: str) -> tuple[str, str, bool]:
    """(reasoning, answer, unterminated) of a completion, for `<think>` opened by the model or the template."""
    start, end = _THINK_OPEN.search(text), _THINK_CLOSE.search(text)
    if end and (start is None or start.start() < end.start()):
        begin = start.end() if start else 0
        return text[begin:end.start()].strip(), text[end.end():].strip(), False
    if start:  # opened, never closed: all of it was reasoning
        return text[start.end():].strip(), "", True
    return "", text.strip(), False


def blocks(answer: str) -> list[Block]:
    """Every fenced or tag-wrapped piece of `answer`, in order (non-Python fences included, marked by `lang`).

    Fences and whole-line tags nest in any order (```python <nn> … </nn> ```, <nn> ```python … </nn>);
    a closing tag closes whatever was opened inside it, and a fence with a language opened inside an
    open fence closes that one first. Text before a closing tag that was never opened is a block too
    (the prompt or the model left the opening tag out).
    """
    found: list[Block] = []
    # Open wrappers, outermost first: ("tag", "nn", ""), ("fence", "```", "python"); one fence at a time.
    stack: list[tuple[str, str, str]] = []
    lines: list[str] = []                      # text since the last wrapper line

    def flush(closed: bool, inside: bool = True) -> None:
        if inside and any(line.strip() for line in lines):
            lang = next((entry[2] for entry in reversed(stack) if entry[0] == "fence"), "")
            code = dedent("\n".join(lines)).strip("\n")
            if not stack and not _parses(code):  # an orphan closing tag: skip the prose before the code
                code = _from_first_code_line(code)
            found.append(Block(code, lang, closed, _parses(code)))
        lines.clear()

    for line in answer.splitlines():
        fence, tag = _FENCE.match(line), _TAG.match(line)
        at = next((i for i in range(len(stack) - 1, -1, -1) if stack[i][0] == "fence"), None)
        mark = stack[at][1] if at is not None else ""
        if fence and at is not None and fence["mark"][0] == mark[0] and len(fence["mark"]) >= len(mark):
            flush(True)                        # the closing fence (or, with a language, the next block's opening)
            del stack[at:]
            if fence["lang"]:
                stack.append(("fence", fence["mark"], fence["lang"]))
        elif fence and at is None:
            flush(True, bool(stack))           # prose, or a tag's text, up to an opening fence
            stack.append(("fence", fence["mark"], fence["lang"]))
        elif mark and line.rstrip().endswith(mark) and line.strip() != mark:
            lines.append(line.rstrip()[:-len(mark)])   # `code```: the fence closes on the code's last line
            flush(True)
            del stack[at:]
        elif tag and tag["close"]:
            name = tag["name"].lower()
            opened = next((i for i in range(len(stack) - 1, -1, -1) if stack[i][:2] == ("tag", name)), None)
            flush(True)                        # never opened: what came before was its content
            if opened is not None:
                del stack[opened:]             # closes its tag and anything left open inside it
        elif tag and len(stack) < _MAX_WRAPPERS:
            flush(True, bool(stack))
            stack.append(("tag", tag["name"].lower(), ""))
        else:
            lines.append(line)
    flush(False, bool(stack))                  # a wrapper still open at the end ran to the end of the text
    return found


def code_blocks(answer: str) -> list[tuple[str, bool]]:
    """(code, closed) for each Python block of the answer (fenced or tag-wrapped), in order."""
    return [(b.code, b.closed) for b in blocks(answer) if b.python]


def extract(text: str, wanted: str = "class Net", *, finish_reason: str | None = None) -> Extraction:
    """The last complete Python block of the answer that contains `wanted`, else the problem in words.

    `wanted` is "class Net" for whole files; a region edit passes a name the region defines ("" takes
    any block). Complete means Python's parser accepts it; a block that does not parse is taken only
    when no complete one holds `wanted`, and it counts as truncated when the completion hit its token
    limit (`finish_reason` "length") or, with no finish reason, when the block ran to the end unclosed.
    """
    reasoning, answer, unterminated = split_reasoning(text)
    cut_off = finish_reason == "length"
    if unterminated:
        # A model that never closes its reasoning may still have written its answer there; a
        # completion stopped by the token limit was cut off, whatever it held.
        found = None if cut_off else _choose([b for b in blocks(reasoning) if b.python], wanted)
        if found is None or not found.parses:
            return Extraction(reasoning, answer, None, f"the reasoning was cut off before </think> "
                                                       f"({len(reasoning):,} characters, no answer)", True)
        return Extraction(reasoning, answer, found.code)
    pieces = [b for b in blocks(answer) if b.python]
    chosen = _choose(pieces, wanted)
    if chosen is None and not pieces and wanted in answer:
        chosen = _bare_code(answer)            # code without wrappers: from its first line of Python
    if chosen is not None:
        truncated = not chosen.parses and (cut_off or (finish_reason is None and not chosen.closed))
        return Extraction(reasoning, answer, chosen.code, truncated=truncated)
    if pieces:
        return Extraction(reasoning, answer, None, f"{len(pieces)} code block(s) in the answer, none with `{wanted}`")
    if not answer:
        return Extraction(reasoning, answer, None, "the answer is empty")
    return Extraction(reasoning, answer, None, f"no code block in the answer ({len(answer):,} characters of prose)")


def _choose(pieces: list[Block], wanted: str) -> Block | None:
    """The last block holding `wanted` that parses, else the last holding it (None when none does)."""
    holding = [b for b in pieces if wanted in b.code]
    complete = [b for b in holding if b.parses]
    return (complete or holding or [None])[-1]


def _bare_code(answer: str) -> Block | None:
    """Unwrapped code in an answer: from its first line of Python to where prose takes over again."""
    code = _from_first_code_line(answer)
    if not _CODE_START.match(code):
        return None
    for _ in range(20):  # prose after the code: cut where the parser stumbles on an unindented line of prose
        line = _error_line(code)
        if line is None:
            return Block(code, "", True, True)
        lines = code.splitlines()
        if line > len(lines) or line < 2 or lines[line - 1][:1].isspace() or _CODE_START.match(lines[line - 1]):
            break  # the code itself is broken or cut off: leave that for the caller to judge
        code = "\n".join(lines[:line - 1]).rstrip()
    return Block(code, "", False, False)


def _from_first_code_line(text: str) -> str:
    """`text` from its first line that starts Python code (all of it when none does), dedented."""
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if _CODE_START.match(line.lstrip())), 0)
    return dedent("\n".join(lines[first:])).strip("\n")


def dedent(code: str) -> str:
    """`code` without the indentation all its code lines share (method code copied out of its class).

    Comment lines do not count towards that margin (an answer's `### name ###` heading sits at
    column 0 above indented code); they lose what indentation they have up to it.
    """
    lines = code.splitlines()
    margins = [len(line) - len(line.lstrip()) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    margin = min(margins, default=0)
    if not margin:
        return code
    return "\n".join(line[margin:] if line[:margin].isspace() else line.lstrip() for line in lines)


def _parses(code: str) -> bool:
    return _error_line(code) is None


def _error_line(code: str) -> int | None:
    """The line Python's parser refuses (None when it accepts the code; 1 when it cannot say)."""
    try:
        ast.parse(code)
    except SyntaxError as exc:
        return exc.lineno or 1
    except (RecursionError, MemoryError, ValueError):  # hostile nesting, null bytes: no use trimming
        return 1
    return None
