"""Generate with the in-process vllm backend and print JSON: a check that .venv-vllm works.

    .venv-vllm/bin/python scripts/vllm_generate.py --model smollm2 --n 1 "prompt one" "prompt two"

Prints one JSON object: the engine's start-up seconds, the generate call's seconds, and the
completions (prompt_index, text, tokens_in, tokens_out, latency_s, finish_reason).
vLLM starts its engine in a child process, hence everything under the `__main__` guard.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    from nas_agent.llm.base import LLMError, Sampling
    from nas_agent.llm.vllm_backend import VLLMBackend

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompts", nargs="+")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--n", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.6)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--compile", action="store_true", help="torch.compile on a CPU too (minutes at start)")
    args = parser.parse_args()
    try:
        started = time.perf_counter()
        backend = VLLMBackend(args.model, max_model_len=args.max_model_len, dtype=args.dtype, seed=args.seed,
                              enforce_eager=False if args.compile else None)
        engine_start_s = time.perf_counter() - started
        started = time.perf_counter()
        completions = backend.generate(args.prompts, Sampling(temperature=args.temperature, top_p=args.top_p,
                                                              max_tokens=args.max_tokens, n=args.n, seed=args.seed))
        generate_s = time.perf_counter() - started
        backend.close()
    except LLMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"engine_start_s": round(engine_start_s, 2), "generate_s": round(generate_s, 2),
                      "completions": [dataclasses.asdict(c) for c in completions]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
