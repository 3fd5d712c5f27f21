"""The transformers backend: a Hugging Face model (folder, hub id or GGUF file) on CPU or GPU.

Slower than vLLM, but needs nothing beyond transformers, and loads a GGUF file directly
(dequantised), which is how the offline SmolLM2 model runs right after set-up.
"""

from __future__ import annotations

import time

from nas_agent.llm.base import Completion, LLMError, Sampling
from nas_agent.llm.models import resolve_model


class TransformersBackend:
    """`generate` runs one batched `model.generate` over all prompts (left-padded)."""

    name = "transformers"

    def __init__(self, model: str, device: str = "auto", dtype: str = "auto", reasoning_parser: str | None = None):
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise LLMError(f"the transformers backend needs the transformers package ({exc}); run `make setup`") from None
        self.model = model
        self.reasoning_parser = reasoning_parser   # set: a JSON schema constrains only what follows </think>
        self._schema_tokenizer = None
        folder, gguf_file = resolve_model(model, self.name)
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available()
                                   else ("cpu" if device == "auto" else device))
        kwargs = {"gguf_file": gguf_file} if gguf_file else {}
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
            torch_dtype = {"auto": torch.bfloat16 if self.device.type == "cuda" else torch.float32,
                           "bfloat16": torch.bfloat16, "float16": torch.float16,
                           "float32": torch.float32}.get(dtype, torch.float32)
            self.lm = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype, **kwargs).to(self.device)
        except (OSError, ValueError) as exc:
            raise LLMError(f"transformers cannot load model {model!r}: {str(exc).splitlines()[0]}") from None
        self.lm.eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def generate(self, prompts: list[str], sampling: Sampling) -> list[Completion]:
        import torch

        chats = [self.tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                    add_generation_prompt=True) for p in prompts]
        batch = self.tokenizer(chats, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        started = time.perf_counter()
        processors = []
        if sampling.json_schema is not None:
            processors.append(self._schema(sampling.json_schema, batch["input_ids"].shape[1]))
        with torch.inference_mode():
            output = self.lm.generate(
                **batch, do_sample=sampling.temperature > 0, temperature=sampling.temperature or None,
                top_p=sampling.top_p if sampling.temperature > 0 else None, max_new_tokens=sampling.max_tokens,
                num_return_sequences=sampling.n, pad_token_id=self.tokenizer.pad_token_id,
                logits_processor=processors or None)
        latency = time.perf_counter() - started
        prompt_length = batch["input_ids"].shape[1]
        tokens_in = batch["attention_mask"].sum(1).tolist()
        completions = []
        for row, sequence in enumerate(output):
            generated = sequence[prompt_length:]
            stops = (generated == self.tokenizer.eos_token_id) | (generated == self.tokenizer.pad_token_id)
            n_out = int(stops.int().argmax()) if bool(stops.any()) else len(generated)
            prompt_index = row // sampling.n  # generate repeats each prompt n times, in order
            completions.append(Completion(
                prompt_index=prompt_index, text=self.tokenizer.decode(generated[:n_out], skip_special_tokens=True),
                tokens_in=int(tokens_in[prompt_index]), tokens_out=n_out, latency_s=latency,
                finish_reason="length" if n_out >= sampling.max_tokens else "stop"))
        return completions

    def _schema(self, schema: dict, prompt_length: int):
        """A logits processor that keeps every answer an instance of `schema` (llguidance's token masks)."""
        from nas_agent.llm.grammar import SchemaTokenizer

        if self._schema_tokenizer is None:
            self._schema_tokenizer = SchemaTokenizer(self.tokenizer, self.lm.config.vocab_size)
        return self._schema_tokenizer.processor(schema, prompt_length, think_first=bool(self.reasoning_parser))

    def close(self) -> None:
        del self.lm
