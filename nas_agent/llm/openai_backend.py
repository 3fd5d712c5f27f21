"""The openai backend: any OpenAI-compatible chat server (`vllm serve`, llama.cpp's server, a hosted API).

Each prompt is one chat request with `n` completions; requests run concurrently on a thread
pool of `concurrency`. Connection errors, timeouts, 429s and 5xx answers are retried with
exponential backoff. A server that returns fewer than `n` choices (or rejects `n`) gets the
missing ones as separate single-completion requests, with seeds seed+1, seed+2, … so they differ.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nas_agent.llm.base import Completion, LLMError, Sampling

NO_KEY = "EMPTY"          # what vLLM and llama.cpp servers accept when they were started without a key


def _same_path(a: str, b: str) -> bool:
    try:
        return Path(a).exists() and Path(b).exists() and Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _split_tokens(total: int, texts: list[str]) -> list[int]:
    """`total` completion tokens shared among choices in proportion to their text length (when the server
    reports only the sum); the parts add up to `total`."""
    weights = [max(len(t), 1) for t in texts]
    parts = [total * w // sum(weights) for w in weights]
    for i in range(total - sum(parts)):
        parts[i % len(parts)] += 1
    return parts


class OpenAIBackend:
    """`generate` sends one chat request per prompt, `concurrency` at a time."""

    name = "openai"

    def __init__(self, model: str, base_url: str = "http://127.0.0.1:8000/v1", *, api_key_env: str = "",
                 timeout_s: float = 600.0, retries: int = 3, concurrency: int = 8, backoff_s: float = 0.5):
        try:
            import openai
        except ImportError:
            raise LLMError("the openai backend needs the openai package: run `make setup`; "
                           "or use backend transformers") from None
        self._openai = openai
        self.model = model
        self.base_url = base_url
        self.retries = max(0, retries)
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        if api_key_env:
            api_key = os.environ.get(api_key_env)
            if not api_key:
                raise LLMError(f"llm.api_key_env names {api_key_env}, which is not set; export it or leave "
                               f"api_key_env empty for a server without a key")
        else:
            api_key = NO_KEY
        # The client's own retries are off: this class retries, so that the count and backoff are ours.
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=0)
        self._pool = ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="openai-backend")
        self._n_honoured = True          # until the server shows otherwise
        self._is_vllm = False            # vLLM can return token ids per choice: exact token counts
        try:
            self.served_model = self._pick_model(model)
        except LLMError:
            self.client.close()
            raise

    @classmethod
    def from_config(cls, llm_config) -> OpenAIBackend:
        """A backend with the server settings of an `[llm]` config section."""
        return cls(llm_config.model, llm_config.base_url, api_key_env=llm_config.api_key_env,
                   timeout_s=llm_config.timeout_s, retries=llm_config.retries, concurrency=llm_config.concurrency)

    # -- talking to the server -------------------------------------------------------------

    def _unreachable(self, exc: Exception) -> LLMError:
        if isinstance(exc, self._openai.APITimeoutError):
            return LLMError(f"the OpenAI-compatible server at {self.base_url} did not answer within "
                            f"{self.timeout_s:g} s (after {self.retries} retries); raise llm.timeout_s or "
                            f"lower llm.max_tokens")
        return LLMError(f"no OpenAI-compatible server at {self.base_url}; start one with `vllm serve MODEL` "
                        f"or use backend transformers")

    def _with_retries(self, call, *args, **kwargs):
        """call(*args, **kwargs), retried on connection errors, timeouts, 429 and 5xx."""
        openai = self._openai
        transient = (openai.APIConnectionError, openai.InternalServerError, openai.RateLimitError)
        for attempt in range(self.retries + 1):
            try:
                return call(*args, **kwargs)
            except transient as exc:
                if attempt == self.retries:
                    if isinstance(exc, openai.APIConnectionError):
                        raise self._unreachable(exc) from None
                    raise LLMError(f"the server at {self.base_url} kept failing ({exc.status_code}: "
                                   f"{_first_line(exc)}) after {self.retries} retries") from None
                time.sleep(self.backoff_s * 2 ** attempt)
            except openai.AuthenticationError:
                raise LLMError(f"the server at {self.base_url} refused the API key; set llm.api_key_env to "
                               f"the variable that holds the right one") from None

    def _pick_model(self, model: str) -> str:
        """The name the server knows `model` by: as given, or a served path that is the same folder."""
        try:
            listing = self._with_retries(self.client.models.list)
        except self._openai.APIStatusError:    # a server without /models: trust the name
            return model
        served = {m.id: getattr(m, "owned_by", "") for m in listing.data}
        roots = {m.id: getattr(m, "root", None) or m.id for m in listing.data}   # vLLM: the folder it loaded
        if not served:
            return model
        chosen = model if model in served else None
        if chosen is None:
            candidates = [model]
            try:
                from nas_agent.llm.models import resolve_model
                candidates.append(resolve_model(model, self.name)[0])
            except LLMError:
                pass
            chosen = next((s for s in served if any(_same_path(p, c) for p in (s, roots[s]) for c in candidates)),
                          None)
        if chosen is None:
            raise LLMError(f"the server at {self.base_url} serves {', '.join(sorted(served))}, not {model!r}; "
                           f"set llm.model to one of them (or start it with --served-model-name {model})")
        self._is_vllm = served[chosen] == "vllm"
        return chosen

    def _request(self, prompt: str, sampling: Sampling, n: int, seed: int | None) -> tuple[list[Completion], float]:
        """One chat request; its completions (prompt_index 0, fixed up by the caller) and its wall-clock."""
        kwargs = {"model": self.served_model, "messages": [{"role": "user", "content": prompt}],
                  "temperature": sampling.temperature, "top_p": sampling.top_p, "max_tokens": sampling.max_tokens}
        if n > 1:
            kwargs["n"] = n
        if seed is not None:
            kwargs["seed"] = seed
        if self._is_vllm:
            kwargs["extra_body"] = {"return_token_ids": True}
        if sampling.json_schema is not None and self._is_vllm:
            # vLLM's own form of the API's structured outputs, which can also fix the whitespace (free
            # whitespace lets a small model run on with blank lines); decoded after </think> when the
            # server runs with --reasoning-parser.
            kwargs["extra_body"]["structured_outputs"] = {"json": sampling.json_schema, "disable_any_whitespace": True}
        elif sampling.json_schema is not None:
            # The OpenAI API's structured outputs (llama.cpp's server and hosted APIs decode under it too).
            kwargs["response_format"] = {"type": "json_schema",
                                         "json_schema": {"name": "candidate", "schema": sampling.json_schema}}
        started = time.perf_counter()
        response = self._with_retries(self.client.chat.completions.create, **kwargs)
        latency = time.perf_counter() - started
        choices = sorted(response.choices, key=lambda c: c.index)
        texts = [_with_reasoning(c.message) for c in choices]
        usage = response.usage
        tokens_in = usage.prompt_tokens if usage else 0
        ids = [getattr(c, "token_ids", None) or (c.model_extra or {}).get("token_ids") for c in choices]
        if all(i is not None for i in ids):
            tokens_out = [len(i) for i in ids]
        elif usage and len(choices) == 1:
            tokens_out = [usage.completion_tokens]
        else:
            tokens_out = _split_tokens(usage.completion_tokens if usage else 0, texts) if choices else []
        return [Completion(prompt_index=0, text=text, tokens_in=tokens_in, tokens_out=out, latency_s=latency,
                           finish_reason=c.finish_reason)
                for c, text, out in zip(choices, texts, tokens_out)], latency

    def _first_round(self, prompt: str, sampling: Sampling) -> list[Completion]:
        n = sampling.n if self._n_honoured else 1
        try:
            return self._request(prompt, sampling, n, sampling.seed)[0]
        except self._openai.BadRequestError as exc:
            if n == 1:
                raise LLMError(f"the server at {self.base_url} rejected the request: {_first_line(exc)}") from None
        except self._openai.NotFoundError as exc:
            raise LLMError(f"the server at {self.base_url} does not know model {self.served_model!r}: "
                           f"{_first_line(exc)}") from None
        # The server rejected `n` > 1 (or something else, which the single request will show): one at a time.
        completion = self._one_more(prompt, sampling, 0)
        self._n_honoured = False
        return [completion]

    def _one_more(self, prompt: str, sampling: Sampling, k: int) -> Completion:
        seed = None if sampling.seed is None else sampling.seed + k
        try:
            return self._request(prompt, sampling, 1, seed)[0][0]
        except (self._openai.BadRequestError, self._openai.NotFoundError) as exc:
            raise LLMError(f"the server at {self.base_url} rejected the request: {_first_line(exc)}") from None

    # -- the Backend interface -------------------------------------------------------------

    def generate(self, prompts: list[str], sampling: Sampling) -> list[Completion]:
        firsts = [f.result() for f in [self._pool.submit(self._first_round, p, sampling) for p in prompts]]
        per_prompt = [list(c[:sampling.n]) for c in firsts]
        missing = [(i, k) for i, got in enumerate(per_prompt) for k in range(len(got), sampling.n)]
        if missing:                      # n not honoured: the rest one request each, all concurrently
            if any(len(c) == 1 for c in firsts) and sampling.n > 1:
                self._n_honoured = False
            extra = [(i, self._pool.submit(self._one_more, prompts[i], sampling, k)) for i, k in missing]
            for i, future in extra:
                per_prompt[i].append(future.result())
        completions = []
        for index, group in enumerate(per_prompt):
            for completion in group:
                completion.prompt_index = index
                completions.append(completion)
        return completions

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()


def _with_reasoning(message) -> str:
    """The message's text; a server that parses reasoning out (`vllm serve --reasoning-parser`) gets it
    put back in front as <think>…</think>, so that answers read the same from every backend."""
    extra = message.model_extra or {}
    reasoning = getattr(message, "reasoning", None) or extra.get("reasoning") or extra.get("reasoning_content")
    content = message.content or ""
    return f"<think>\n{reasoning}\n</think>\n\n{content}" if reasoning else content


def _first_line(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return (message.strip().splitlines() or [type(exc).__name__])[0]
