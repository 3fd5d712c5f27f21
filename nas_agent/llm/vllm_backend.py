"""The vllm backend: an in-process `vllm.LLM`, one batched `chat` call per `generate`.

vLLM pins its own torch, so it lives in a venv of its own: `scripts/setup_vllm.sh` makes
`.venv-vllm` with vLLM and nas-agent in it. vLLM starts its engine in a child process, so a
script that builds a VLLMBackend must do it under `if __name__ == "__main__":`.
On a CPU-only build, vLLM sizes its KV cache from VLLM_CPU_KVCACHE_SPACE (GiB); a small
default is set when it is unset, enough for the short prompts of a search round, and on a CPU
the engine runs eagerly (torch.compile costs about two minutes at every start).
"""

from __future__ import annotations

import gc
import json
import os
import time
from pathlib import Path

from nas_agent.llm.base import Completion, LLMError, Sampling
from nas_agent.llm.models import resolve_model

CPU_KVCACHE_GIB = "1"
NO_VLLM = ("the vllm backend needs the vllm package, which lives in its own venv: run "
           "`scripts/setup_vllm.sh` and use .venv-vllm/bin/nas-agent; or use backend transformers, "
           "or backend openai against a `vllm serve MODEL` server")


def _fit_max_model_len(folder: str, requested: int) -> int | None:
    """`requested`, capped at the model's own context length when its config.json is at hand."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return requested or None
    own = config.get("max_position_embeddings") or config.get("text_config", {}).get("max_position_embeddings")
    if not requested:
        return None
    return min(requested, own) if own else requested


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def _cpu_has_bf16() -> bool:
    """Whether the CPU computes in bfloat16 natively (AVX512-BF16 / AMX, or Arm's BF16); True if unknown."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return True
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


class VLLMBackend:
    """`generate` sends all prompts (one user turn each) through one `LLM.chat` call."""

    name = "vllm"

    def __init__(self, model: str, *, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.85,
                 max_model_len: int = 16384, dtype: str = "auto", seed: int = 0,
                 enforce_eager: bool | None = None, reasoning_parser: str | None = None, **engine_kwargs):
        try:
            import vllm
        except ImportError:
            raise LLMError(NO_VLLM) from None
        if _on_cpu():
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", CPU_KVCACHE_GIB)
            if (os.cpu_count() or 1) <= 2:
                # vLLM keeps one core for its front end by default; on two cores, decoding on both was
                # 1.6x faster at batch 8 (35 vs 22 tokens/s, SmolLM2-135M).
                os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
            if dtype == "auto" and not _cpu_has_bf16():
                # A bfloat16 checkpoint would run in emulated bf16: float32 decoded 2x faster at batch 8 on AVX2.
                dtype = "float32"
        self.model = model
        folder, gguf_file = resolve_model(model, self.name)
        path = str(Path(folder) / gguf_file) if gguf_file else folder
        self._vllm = vllm
        if enforce_eager is None:
            # On a CPU, torch.compile costs about two minutes at every start (its cache did not reload
            # here) for decoding 0-40% faster: a loss for short runs and tests. On a GPU, compiled
            # graphs are worth their start-up.
            enforce_eager = _on_cpu()
        if reasoning_parser:
            # Structured outputs then leave the thinking free and constrain only the answer after </think>.
            engine_kwargs["structured_outputs_config"] = {"reasoning_parser": reasoning_parser}
        self.reasoning_parser = reasoning_parser
        try:
            self.llm = vllm.LLM(model=path, tensor_parallel_size=tensor_parallel_size,
                                gpu_memory_utilization=gpu_memory_utilization,
                                max_model_len=_fit_max_model_len(folder, max_model_len), dtype=dtype,
                                seed=seed, enforce_eager=enforce_eager, **engine_kwargs)
        except (RuntimeError, ValueError, OSError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise LLMError(f"vLLM could not start model {model!r}: {first}; check llm.max_model_len, "
                           f"llm.gpu_memory_utilization and llm.dtype, or use backend transformers") from None

    @classmethod
    def from_config(cls, llm_config) -> VLLMBackend:
        """A backend with the engine settings of an `[llm]` config section."""
        from nas_agent.llm import reasoning_parser_of

        return cls(llm_config.model, tensor_parallel_size=llm_config.tensor_parallel_size,
                   gpu_memory_utilization=llm_config.gpu_memory_utilization,
                   max_model_len=llm_config.max_model_len, dtype=llm_config.dtype, seed=llm_config.seed,
                   reasoning_parser=reasoning_parser_of(llm_config))

    def generate(self, prompts: list[str], sampling: Sampling) -> list[Completion]:
        if not prompts:
            return []
        structured = None
        if sampling.json_schema is not None:
            from vllm.sampling_params import StructuredOutputsParams

            # Fixed whitespace: free whitespace lets a small model run on with blank lines to the token limit.
            structured = StructuredOutputsParams(json=sampling.json_schema, disable_any_whitespace=True)
        params = self._vllm.SamplingParams(n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p,
                                           max_tokens=sampling.max_tokens, seed=sampling.seed,
                                           structured_outputs=structured)
        conversations = [[{"role": "user", "content": prompt}] for prompt in prompts]
        started = time.perf_counter()
        outputs = self.llm.chat(conversations, params, use_tqdm=False)
        latency = time.perf_counter() - started
        completions = []
        for index, request in enumerate(outputs):    # vLLM returns outputs in prompt order
            tokens_in = len(request.prompt_token_ids or [])
            for output in sorted(request.outputs, key=lambda o: o.index):
                completions.append(Completion(prompt_index=index, text=output.text, tokens_in=tokens_in,
                                              tokens_out=len(output.token_ids), latency_s=latency,
                                              finish_reason=output.finish_reason))
        return completions

    def close(self) -> None:
        llm = self.__dict__.pop("llm", None)
        if llm is None:
            return
        engine_core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if engine_core is not None and hasattr(engine_core, "shutdown"):
            engine_core.shutdown()
        del llm
        gc.collect()
