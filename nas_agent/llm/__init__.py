"""LLM proposers: backends (vllm, openai, transformers, replay), answer parsing, prompts, proposals."""

from __future__ import annotations

from nas_agent.llm.base import DEFAULT_MODEL, Backend, Completion, LLMError, Sampling

BACKENDS = ("vllm", "openai", "transformers", "replay")


def sampling_of(llm_config) -> Sampling:
    """The Sampling of an `[llm]` config section."""
    return Sampling(temperature=llm_config.temperature, top_p=llm_config.top_p, max_tokens=llm_config.max_tokens,
                    n=llm_config.n, seed=llm_config.seed)


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

        return TransformersBackend(llm_config.model, device=llm_config.device, dtype=llm_config.dtype)
    if name == "openai":
        from nas_agent.llm.openai_backend import OpenAIBackend

        return OpenAIBackend.from_config(llm_config)
    if name == "vllm":
        from nas_agent.llm.vllm_backend import VLLMBackend

        return VLLMBackend.from_config(llm_config)
    raise LLMError(f"unknown LLM backend {name!r}; choose one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "DEFAULT_MODEL", "Backend", "Completion", "LLMError", "Sampling", "make_backend", "sampling_of"]
