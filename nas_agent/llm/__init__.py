"""LLM proposers: backends (vllm, openai, transformers, replay), answer parsing, prompts, proposals."""

from __future__ import annotations

from nas_agent.llm.base import DEFAULT_MODEL, Backend, Completion, LLMError, Sampling

BACKENDS = ("vllm", "openai", "transformers", "replay")


MODES = ("params", "code", "mixed")
# Answers of a model that does not think: a JSON point is ~20 tokens a setting; a code answer
# rewrites the template's regions (~400 tokens for FractalNet) with room to spare.
PARAMS_TOKENS, CODE_TOKENS = 256, 1024


def reasoning_parser_of(llm_config) -> str | None:
    """The reasoning parser in use: "deepseek_r1" for DeepSeek-R1 models under "auto", else as configured."""
    chosen = llm_config.reasoning_parser
    if chosen == "auto":
        name = str(llm_config.model).lower()
        return "deepseek_r1" if "deepseek-r1" in name or "r1-distill" in name else None
    return None if chosen == "none" else chosen


def max_tokens_of(llm_config, mode: str) -> int:
    """llm.max_tokens, or when 0 a limit sized so the answer fits after whatever the model thinks first.

    A reasoning model thinks for thousands of tokens before it answers (DeepSeek-R1 distills: often
    2,000-8,000), whatever the answer's size, so it gets three quarters of its context; the rest is
    left to the prompt. A model that answers straight away needs only the answer's size.
    """
    if llm_config.max_tokens:
        return llm_config.max_tokens
    if reasoning_parser_of(llm_config):
        return max(CODE_TOKENS, llm_config.max_model_len * 3 // 4)
    return PARAMS_TOKENS if mode == "params" else CODE_TOKENS


def sampling_of(llm_config, mode: str = "code") -> Sampling:
    """The Sampling of an `[llm]` config section for one mode (the Proposer adds params mode's schema)."""
    return Sampling(temperature=llm_config.temperature, top_p=llm_config.top_p,
                    max_tokens=max_tokens_of(llm_config, mode), n=llm_config.n, seed=llm_config.seed)


def make_backend(llm_config) -> Backend:
    """The backend an `[llm]` config section names; heavy packages are imported only here."""
    name = llm_config.backend
    if name == "replay":
        from nas_agent.llm.replay import ReplayBackend

        if not llm_config.replay_file:
            raise LLMError("backend replay needs a replay file (llm.replay_file or --replay FILE)")
        return ReplayBackend(llm_config.replay_file)
    if name == "transformers":
        from nas_agent.llm.transformers_backend import TransformersBackend

        return TransformersBackend(llm_config.model, device=llm_config.device, dtype=llm_config.dtype,
                                   reasoning_parser=reasoning_parser_of(llm_config))
    if name == "openai":
        from nas_agent.llm.openai_backend import OpenAIBackend

        return OpenAIBackend.from_config(llm_config)
    if name == "vllm":
        from nas_agent.llm.vllm_backend import VLLMBackend

        return VLLMBackend.from_config(llm_config)
    raise LLMError(f"unknown LLM backend {name!r}; choose one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "DEFAULT_MODEL", "MODES", "Backend", "Completion", "LLMError", "Sampling", "make_backend",
           "max_tokens_of", "reasoning_parser_of", "sampling_of"]
