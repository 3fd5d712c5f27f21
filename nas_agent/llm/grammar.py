"""Constrained decoding for the transformers backend: llguidance's token masks as a logits processor.

vLLM decodes under a JSON schema itself; for `model.generate` this processor does the same
with llguidance (the grammar engine vLLM and llama.cpp use): before each token it masks every
token the schema does not allow next. With a reasoning model the mask starts only once the
model has closed its thinking (`</think>`), which is what vLLM's reasoning parsers do too.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import LogitsProcessor

THINK_END = "</think>"


class SchemaTokenizer:
    """An llguidance view of a Hugging Face tokenizer (about a second to build: made once per backend)."""

    def __init__(self, hf_tokenizer, vocab_size: int):
        import llguidance.hf

        self.hf = hf_tokenizer
        self.ll = llguidance.hf.from_tokenizer(hf_tokenizer, n_vocab=vocab_size)

    def processor(self, schema: dict, prompt_length: int, think_first: bool) -> SchemaLogitsProcessor:
        return SchemaLogitsProcessor(self, schema, prompt_length, think_first)


class SchemaLogitsProcessor(LogitsProcessor):
    """Allows, in every row of a batch, only the tokens that keep its answer an instance of `schema`."""

    def __init__(self, tokenizer: SchemaTokenizer, schema: dict, prompt_length: int, think_first: bool):
        import llguidance

        self.tokenizer, self.prompt_length, self.think_first = tokenizer, prompt_length, think_first
        self._llguidance = llguidance
        # Fixed whitespace: free whitespace lets a small model run on with blank lines to the token limit.
        self.grammar = llguidance.LLMatcher.grammar_from_json_schema(schema, defaults={"whitespace_flexible": False})
        self.matchers: dict[int, object] = {}   # row -> its matcher, from where its answer starts
        self.starts: dict[int, int] = {}        # row -> generated tokens before its answer
        self.fed: dict[int, int] = {}           # row -> answer tokens its matcher has consumed

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.prompt_length:]
        for row in range(generated.shape[0]):
            if row not in self.starts and not self._answer_begins(row, generated[row]):
                continue
            matcher = self.matchers[row]
            new = generated[row, self.starts[row] + self.fed[row]:].tolist()
            if new and not matcher.is_stopped():
                matcher.consume_tokens(new)
            self.fed[row] += len(new)
            if matcher.is_error():
                continue   # a token the mask allowed was refused: leave the row free, the reader will judge it
            scores[row] = self._masked(matcher, scores[row])
        return scores

    def _answer_begins(self, row: int, tokens: torch.Tensor) -> bool:
        """Whether row `row` has reached its answer (at once, or after </think>); starts its matcher if so."""
        if self.think_first:
            # </think> is one token or a few: the last few tokens decoded are enough to see it close.
            tail = self.tokenizer.hf.decode(tokens[-8:].tolist(), skip_special_tokens=False)
            if THINK_END not in tail:
                return False
        self.starts[row] = len(tokens)
        self.fed[row] = 0
        self.matchers[row] = self._llguidance.LLMatcher(self.tokenizer.ll, self.grammar)
        return True

    def _masked(self, matcher, scores: torch.Tensor) -> torch.Tensor:
        bits = np.unpackbits(np.frombuffer(matcher.compute_bitmask(), dtype=np.uint8), bitorder="little")
        allowed = torch.zeros(scores.shape[0], dtype=torch.bool, device=scores.device)
        usable = min(len(bits), scores.shape[0])
        allowed[:usable] = torch.from_numpy(bits[:usable].astype(bool)).to(scores.device)
        return scores.masked_fill(~allowed, float("-inf"))
