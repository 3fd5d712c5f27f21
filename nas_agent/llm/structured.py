"""Params mode: the LLM answers a point of the space as one JSON object, constrained by a schema.

The schema is made from the space's dimensions: every dimension is a required property whose
value is one of an enum, and nothing else is allowed. A backend that decodes under the schema
(vLLM's structured outputs, an OpenAI-compatible server's `response_format`, llguidance's
token masks on transformers) can only produce points of the space. Sequence values (an element
order such as ("conv", "bn", "act")) are spelled as one string, "conv,bn,act": a small model
copies a word from a list far more reliably than it nests arrays, and every grammar engine
handles a string enum.

`read_point` is the one way back from text, constrained or not (a replayed or hand-written
answer, a model that ignored the constraint): the last JSON object after the reasoning that
names the dimensions, checked value by value against the space.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from nas_agent.llm.extract import split_reasoning


def spell(value: Any) -> Any:
    """A dimension value as the schema and the prompt spell it (sequences comma-joined)."""
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return value


def params_schema(dimensions: dict[str, tuple], exclude: list[dict[str, Any]] = ()) -> dict | None:
    """The JSON schema whose instances are exactly the points of a space with these dimensions, less `exclude`.

    Excluded points (those tried already) are cut out of the grammar itself, so constrained
    decoding cannot repeat one: the rest of the space is the union of disjoint boxes, one per
    node of the excluded points' prefix tree (the prefix fixed, the next setting any value no
    excluded point continues with, the settings after it free); at most one branch per excluded
    point and setting. None when every point is excluded.
    """
    full = {name: list(dict.fromkeys(spell(v) for v in values)) for name, values in dimensions.items()}
    names = list(full)
    tried = {tuple(spell(p[n]) for n in names) for p in exclude if all(n in p for n in names)}
    if not tried:
        return _box(full, {})
    branches: list[dict] = []

    def split(prefix: dict, level: int, points: set[tuple]) -> None:
        name = names[level]
        children: dict[Any, set[tuple]] = {}
        for point in points:
            children.setdefault(json.dumps(point[level]), set()).add(point)
        free = [v for v in full[name] if json.dumps(v) not in children]
        if free:
            branches.append(_box(full, {**prefix, name: free}))
        if level + 1 < len(names):
            for value in full[name]:
                if json.dumps(value) in children:
                    split({**prefix, name: [value]}, level + 1, children[json.dumps(value)])

    split({}, 0, tried)
    if not branches:
        return None
    return branches[0] if len(branches) == 1 else {"anyOf": branches}


def _box(full: dict[str, list], fixed: dict[str, list]) -> dict:
    """An object schema: the settings in `fixed` limited to those values, the others free."""
    return {"type": "object", "properties": {name: {"enum": fixed.get(name, values)} for name, values in full.items()},
            "required": list(full), "additionalProperties": False}


def spelled_point(point: dict[str, Any]) -> dict[str, Any]:
    """A point as the model reads and writes it."""
    return {name: spell(value) for name, value in point.items()}


@dataclass(frozen=True)
class PointAnswer:
    """What a params-mode completion said: the point (None, with `problem`, when it gave none) and its reasoning."""

    point: dict[str, Any] | None
    reasoning: str
    problem: str = ""
    truncated: bool = False


def read_point(text: str, dimensions: dict[str, tuple], finish_reason: str | None = None) -> PointAnswer:
    """The point a completion names: its last JSON object after the reasoning, every value checked against the space."""
    reasoning, answer, unterminated = split_reasoning(text)
    cut_off = finish_reason == "length"
    if unterminated:
        return PointAnswer(None, reasoning, f"the reasoning was cut off before </think> ({len(reasoning):,} "
                                            f"characters, no answer)", True)
    objects = _json_objects(answer)
    if not objects:
        what = "the answer is empty" if not answer.strip() else \
            f"no JSON object in the answer ({len(answer):,} characters)"
        return PointAnswer(None, reasoning, what + (" (cut off by the token limit)" if cut_off else ""), cut_off)
    chosen = next((o for o in reversed(objects) if set(o) & set(dimensions)), objects[-1])
    point, problems = {}, []
    for name, values in dimensions.items():
        if name not in chosen:
            problems.append(f"no value for {name}")
            continue
        value = _match(chosen[name], values)
        if value is _NO_MATCH:
            allowed = ", ".join(json.dumps(spell(v)) for v in values)
            problems.append(f"{name}={json.dumps(chosen[name])[:60]} is not one of {allowed[:200]}")
            continue
        point[name] = value
    unknown = sorted(set(chosen) - set(dimensions))
    if unknown:
        problems.append("unknown setting(s) " + ", ".join(repr(u)[:40] for u in unknown[:5]))
    if problems:
        return PointAnswer(None, reasoning, "the answer is not a point of the space: " + "; ".join(problems))
    return PointAnswer(point, reasoning)


_NO_MATCH = object()


def _match(given: Any, values: tuple) -> Any:
    """The value of `values` that `given` spells: exactly, else as text (an unconstrained model's "2" for 2)."""
    given = spell(given)
    for value in values:
        if spell(value) == given and type(spell(value)) is type(given):
            return value
    text = str(given).strip().lower()
    return next((v for v in values if str(spell(v)).lower() == text), _NO_MATCH)


def _json_objects(text: str) -> list[dict]:
    """Every top-level JSON object in `text`, in order (prose and code fences around them ignored)."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while (start := text.find("{", at)) != -1:
        try:
            value, end = decoder.raw_decode(text, start)
        except (ValueError, RecursionError):
            at = start + 1
            continue
        if isinstance(value, dict):
            found.append(value)
        at = end
    return found
