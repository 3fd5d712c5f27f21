"""The typed, bounded event channel from a child to the driver.

Everything a child says is untrusted data: each line is checked against the schema of its
kind (known fields only, typed, finite, in range) and candidate-derived text is cut short
and quoted. A line that fails the check is a ProtocolError, which ends that one job as
`failed` with the reason; it never reaches the catalog and never stops the driver.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_LINE_BYTES = 64 << 10        # one event
MAX_TOTAL_BYTES = 8 << 20        # everything one child may say
MAX_EVENTS = 20_000
UNTRUSTED_CHARS = 300            # candidate-derived text kept in a reason


class ProtocolError(ValueError):
    """A child broke the event protocol; the message says how (its own words are not repeated)."""


def quote_untrusted(text: object, limit: int = UNTRUSTED_CHARS) -> str:
    """Candidate-derived text as inert data: one line, printable, cut to `limit`, quoted and labelled."""
    flat = " ".join(str(text).split())
    flat = "".join(c if c.isprintable() else "?" for c in flat)
    if len(flat) > limit:
        flat = flat[:limit] + "…"
    return f"[untrusted candidate output] {json.dumps(flat, ensure_ascii=False)}"


Count = Annotated[int, Field(ge=0, le=10 ** 12)]
Rate = Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)]
Share = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Loss = Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]
Text = Annotated[str, Field(max_length=4000)]


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Started(_Event):
    event: Literal["started"]
    device: Annotated[str, Field(max_length=64)]
    gpu: Annotated[str, Field(max_length=200)] | None = None


class Init(_Event):
    event: Literal["init"]
    loaded: Count
    skipped: Annotated[list[Annotated[str, Field(max_length=200)]], Field(max_length=20)]


class Epoch(_Event):
    """What a training child says of an epoch: telemetry only. Its test scores are not asked for."""

    event: Literal["epoch"]
    epoch: Annotated[int, Field(ge=1, le=100_000)]
    train_loss: Loss | None = None
    train_accuracy: Share | None = None
    samples_per_second: Rate | None = None
    peak_gpu_memory_kb: Rate | None = None
    peak_rss_kb: Rate | None = None
    seconds: Rate | None = None
    # Generators still score themselves in the child (bits/dim): see README, "what is verifiable".
    test_accuracy: Annotated[float, Field(ge=0, le=64, allow_inf_nan=False)] | None = None
    test_loss: Loss | None = None


class SmokeDone(_Event):
    event: Literal["done"]
    struct_hash: Annotated[str, Field(pattern=r"^[0-9a-f]{8,64}$")]
    flops_per_sample: Count
    n_ops: Count
    n_params: Count | None = None    # ignored: the driver counts the parameter file itself
    output_shape: Annotated[list[Count], Field(max_length=8)]
    seconds: Rate
    landlock: Annotated[int, Field(ge=0, le=100)] = 0


class Done(_Event):
    event: Literal["done"]


class Failed(_Event):
    event: Literal["failed"]
    stage: Literal["setup", "smoke", "train", "sample"]
    reason: Text
    traceback: Annotated[str, Field(max_length=8000)] | None = None


TRAIN_EVENTS = {"started": Started, "init": Init, "epoch": Epoch, "done": Done, "failed": Failed}
SMOKE_EVENTS = {"done": SmokeDone, "failed": Failed}


def parse_line(line: bytes) -> dict:
    """The JSON object on one line; ProtocolError for anything else."""
    if len(line) > MAX_LINE_BYTES:
        raise ProtocolError(f"a message of more than {MAX_LINE_BYTES:,} bytes")
    try:
        value = json.loads(line, parse_constant=lambda name: math.nan)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ProtocolError("a message that is not JSON") from None
    except RecursionError:  # a few KiB of brackets is enough to exhaust the parser's stack
        raise ProtocolError("a message nested too deeply to parse") from None
    if not isinstance(value, dict) or not isinstance(value.get("event"), str):
        raise ProtocolError("a message that is not an object with an event kind")
    return value


def check(event: dict, schemas: dict[str, type[_Event]]) -> dict:
    """`event` checked against the schema of its kind, as a plain dict; ProtocolError when it does not fit.

    Failure reasons come from candidate code: they are returned quoted as untrusted text.
    """
    kind = event.get("event")
    schema = schemas.get(kind) if isinstance(kind, str) else None
    if schema is None:
        raise ProtocolError(f"an event of unknown kind {quote_untrusted(kind, 40)}")
    try:
        checked = schema.model_validate(event).model_dump()
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in e["loc"]) or "?" for e in exc.errors()})[:5]
        raise ProtocolError(f"a {kind} event with bad fields ({', '.join(fields)[:200]})") from None
    if kind == "failed":
        checked["traceback"] = None  # not kept: a channel for whatever the candidate wants to say
    return checked
