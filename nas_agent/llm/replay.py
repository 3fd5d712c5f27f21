"""The replay backend: recorded completions played back in order, for deterministic tests and demos.

A replay file is JSON Lines, one completion per line: {"text": ..., "tokens_in": ...,
"tokens_out": ..., "finish_reason": ...}; only "text" is required. Completions are
handed out in file order, one per requested completion, starting over at the end.
`record` writes any backend's completions in that format.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from nas_agent.llm.base import Completion, LLMError, Sampling


def record(path: str | Path, completions: list[Completion]) -> None:
    """Append completions to a replay file."""
    with open(path, "a") as out:
        for c in completions:
            out.write(json.dumps({"text": c.text, "tokens_in": c.tokens_in, "tokens_out": c.tokens_out,
                                  "finish_reason": c.finish_reason}) + "\n")


class ReplayBackend:
    """Plays back a replay file; `model` names the file."""

    name = "replay"

    def __init__(self, path: str | Path):
        self.model = str(path)
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as exc:
            raise LLMError(f"cannot read replay file {path}: {exc.strerror or exc}") from None
        self.records = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                if not isinstance(item.get("text"), str):
                    raise ValueError("no text")
            except (ValueError, AttributeError):
                raise LLMError(f"{path}:{number}: not a replay record (a JSON object with a \"text\" string)") from None
            self.records.append(item)
        if not self.records:
            raise LLMError(f"replay file {path} holds no completions")
        self.position = 0

    def generate(self, prompts: list[str], sampling: Sampling) -> list[Completion]:
        started = time.perf_counter()
        out = []
        for index, prompt in enumerate(prompts):
            for _ in range(sampling.n):
                item = self.records[self.position % len(self.records)]
                self.position += 1
                out.append(Completion(
                    prompt_index=index, text=item["text"],
                    tokens_in=int(item.get("tokens_in") or len(prompt.split())),
                    tokens_out=int(item.get("tokens_out") or len(item["text"].split())),
                    latency_s=0.0, finish_reason=item.get("finish_reason", "stop")))
        elapsed = time.perf_counter() - started
        for c in out:
            c.latency_s = elapsed
        return out

    def close(self) -> None:
        pass
