"""What every LLM backend speaks: sampling settings in, completions out.

Backends take user-turn prompts (DeepSeek-R1's convention: no system prompt, all
instructions in the user turn), apply the model's chat template, and return `n`
completions per prompt, grouped by prompt, in prompt order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol

DEFAULT_MODEL = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"


class LLMError(RuntimeError):
    """A backend that cannot run (missing package, model, GPU or server); the message says what would work."""


@dataclass(frozen=True)
class Sampling:
    """Sampling settings; the defaults are DeepSeek-R1's recommended ones."""

    temperature: float = 0.6
    top_p: float = 0.95
    max_tokens: int = 4096
    n: int = 1                     # completions per prompt
    seed: int | None = 0
    # A JSON schema the answer must follow (params mode), decoded under the backend's own grammar
    # engine; a reasoning model's thinking before </think> stays free. None: free text.
    json_schema: dict | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Completion:
    """One completion of one prompt, as the backend returned it (reasoning not yet split off)."""

    prompt_index: int              # which prompt of the call it answers
    text: str
    tokens_in: int                 # prompt tokens (after the chat template)
    tokens_out: int                # generated tokens
    latency_s: float               # wall-clock seconds of the call that produced it
    finish_reason: str | None = None   # "stop", "length", …


class Backend(Protocol):
    """An LLM that turns prompts into completions."""

    name: str                      # "vllm", "openai", "transformers", "replay"
    model: str                     # what it runs, as the user named it

    def generate(self, prompts: list[str], sampling: Sampling) -> list[Completion]:
        """`sampling.n` completions for each prompt, grouped by prompt, in prompt order."""
        ...

    def close(self) -> None:
        """Free the model (GPU memory, server connections)."""
        ...
