"""A local `vllm serve` for the openai backend: started on a free port, waited for, always stopped.

Used by the tests and benchmarks that drive the openai backend against a real server; a user
runs `vllm serve MODEL` by hand and points `[llm] base_url` at it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from nas_agent.llm.base import LLMError


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on (bound and released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def engine_env() -> dict[str, str]:
    """The environment of a CPU vLLM engine: a small KV cache, no hub lookups, no venv of the caller."""
    env = dict(os.environ)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")   # GiB: plenty for a 135M model and a search round's prompts
    env["HF_HUB_OFFLINE"] = "1"                     # everything is local; never wait on a hub
    env.pop("VIRTUAL_ENV", None)
    return env


@contextlib.contextmanager
def vllm_server(vllm: Path, model: Path, log_path: Path, *, max_model_len: int = 4096, start_s: float = 420,
                extra: tuple[str, ...] = ()) -> Iterator[str]:
    """Run `vllm serve model` (the `vllm` command at `vllm`) until the block ends; yields its /v1 base URL.

    --max-num-batched-tokens is set to the context length: vllm-cpu 0.32 prefills a longer prompt in
    chunks, which kills its engine on a seeded request ("CPU Generator does not use offset").
    Raises LLMError with the log's tail when the server exits or does not answer in `start_s` seconds.
    """
    port = free_port()
    command = [str(vllm), "serve", str(model), "--host", "127.0.0.1", "--port", str(port), "--enforce-eager",
               "--max-model-len", str(max_model_len), "--max-num-batched-tokens", str(max_model_len),
               "--seed", "0", *extra]
    base_url = f"http://127.0.0.1:{port}/v1"
    with open(log_path, "w") as log:
        server = subprocess.Popen(command, env=engine_env(), stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        try:
            _wait_until_ready(server, base_url, log_path, start_s)
            yield base_url
        finally:
            _stop(server)


def _wait_until_ready(server: subprocess.Popen, base_url: str, log_path: Path, start_s: float) -> None:
    started = time.perf_counter()
    while True:
        if server.poll() is not None:
            raise LLMError(f"vllm serve exited with {server.returncode}:\n{log_path.read_text()[-3000:]}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{base_url}/models", timeout=5) as answer:
                if answer.status == 200:
                    return
        if time.perf_counter() - started > start_s:
            raise LLMError(f"vllm serve did not answer in {start_s:.0f} s:\n{log_path.read_text()[-3000:]}")
        time.sleep(1)


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (it and its engine process), SIGKILL after 30 s."""
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    except ProcessLookupError:
        pass
