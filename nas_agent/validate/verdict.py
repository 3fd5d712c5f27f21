"""Validation verdicts: plain data, stored for every proposal and fed back to proposers."""

from __future__ import annotations

from dataclasses import asdict, dataclass

# "truncated": an LLM answer cut off by its token limit before it held usable code (no code ran).
STAGES = ("truncated", "parse", "contract", "policy", "duplicate", "smoke", "train")


@dataclass(frozen=True)
class Verdict:
    """`ok`, or the stage that rejected a candidate and a reason a person can act on."""

    ok: bool
    stage: str | None = None
    reason: str = ""

    @classmethod
    def accept(cls) -> "Verdict":
        return cls(True)

    @classmethod
    def reject(cls, stage: str, reason: str) -> "Verdict":
        if stage not in STAGES:
            raise ValueError(f"unknown validation stage {stage!r}")
        return cls(False, stage, reason)

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return "ok" if self.ok else f"{self.stage}: {self.reason}"
