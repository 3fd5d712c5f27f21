"""The vllm and openai backends against a real vLLM (CPU build) running the real SmolLM2-135M-Instruct.

vLLM lives in its own venv (`scripts/setup_vllm.sh` makes .venv-vllm) and loads the safetensors
copy of SmolLM2 that `scripts/convert_smollm2.py` writes to runs/models/smollm2; CI makes both
before the tests. These tests fail, not skip, when either is missing.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from nas_agent.catalog import Catalog
from nas_agent.config import load_config
from nas_agent.llm.base import LLMError, Sampling
from nas_agent.llm.propose import Proposer
from nas_agent.search.llm_strategy import judge_answer
from nas_agent.llm.models import SMOLLM2_CONVERTED
from nas_agent.llm.openai_backend import OpenAIBackend
from nas_agent.llm.serve import engine_env, free_port, vllm_server as vllm_server_running
from nas_agent.space import load_template, load_templates
from nas_agent.validate import Validator

pytestmark = pytest.mark.llm

REPO = Path(__file__).resolve().parents[1]
VLLM_VENV = REPO / ".venv-vllm"
PROMPTS = ["What is 2 + 2?", "Name a colour.", "Write a haiku about the sea.", "Say hello in French."]
SERVER_START_S = 420          # a cold start on two cores: ~35 s eager; more while another job loads the CPU


@pytest.fixture(scope="module")
def vllm_python() -> Path:
    python = VLLM_VENV / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{python} is missing: run scripts/setup_vllm.sh (CI does)")
    return python


@pytest.fixture(scope="module")
def smollm2_folder() -> Path:
    if not (SMOLLM2_CONVERTED / "config.json").exists():
        pytest.fail(f"the converted SmolLM2 is missing at {SMOLLM2_CONVERTED}: "
                    f"run .venv/bin/python scripts/convert_smollm2.py (CI does)")
    return SMOLLM2_CONVERTED


def _check_completions(completions, prompts: int, n: int) -> None:
    assert len(completions) == prompts * n
    assert [c.prompt_index for c in completions] == [i for i in range(prompts) for _ in range(n)]
    for c in completions:
        assert c.tokens_in > 0 and c.tokens_out > 0, c
        assert c.text.strip(), c
        assert c.latency_s > 0
        assert c.finish_reason in ("stop", "length")


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_backend_in_process_batch(vllm_python, smollm2_folder):
    """VLLMBackend in .venv-vllm: one batched chat call, 4 prompts, n=1."""
    started = time.perf_counter()
    run = subprocess.run([str(vllm_python), str(REPO / "scripts" / "vllm_generate.py"), "--model", "smollm2",
                          "--n", "1", "--max-tokens", "32", "--temperature", "0.7", *PROMPTS],
                         cwd=REPO, env=engine_env(), capture_output=True, text=True, timeout=800, check=False)
    assert run.returncode == 0, f"vllm_generate.py failed ({run.returncode}):\n{run.stderr[-3000:]}"
    # vLLM logs to stdout too; the result is the last line.
    result = json.loads(run.stdout.strip().splitlines()[-1])
    completions = result["completions"]
    assert len(completions) == 4
    assert [c["prompt_index"] for c in completions] == [0, 1, 2, 3]
    for c in completions:
        assert c["tokens_in"] > 0 and 0 < c["tokens_out"] <= 32
        assert c["text"].strip()
    print(f"engine start {result['engine_start_s']} s, generate {result['generate_s']} s, "
          f"whole run {time.perf_counter() - started:.0f} s")


@pytest.fixture(scope="module")
def vllm_server(vllm_python, smollm2_folder, tmp_path_factory):
    """`vllm serve runs/models/smollm2` from .venv-vllm on a free port; its base URL."""
    # Served by its absolute folder, without --served-model-name: the backend matches "smollm2" to it.
    log_path = tmp_path_factory.mktemp("vllm-serve") / "serve.log"
    started = time.perf_counter()
    try:
        with vllm_server_running(VLLM_VENV / "bin" / "vllm", smollm2_folder, log_path, start_s=SERVER_START_S) as url:
            print(f"vllm serve ready in {time.perf_counter() - started:.0f} s")
            yield url
    except LLMError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def served_backend(vllm_server):
    backend = OpenAIBackend("smollm2", vllm_server, retries=1, timeout_s=300, concurrency=4)
    yield backend
    backend.close()


@pytest.mark.vllm
@pytest.mark.slow
def test_openai_backend_batch_against_vllm_serve(served_backend, smollm2_folder):
    assert served_backend.served_model == str(smollm2_folder)    # "smollm2" found the served folder
    completions = served_backend.generate(PROMPTS, Sampling(temperature=0.7, max_tokens=32, n=1, seed=0))
    _check_completions(completions, prompts=4, n=1)
    assert all(c.tokens_out <= 32 for c in completions)


@pytest.mark.vllm
@pytest.mark.slow
def test_openai_backend_n_completions_grouped_by_prompt(served_backend):
    completions = served_backend.generate(PROMPTS[:3], Sampling(temperature=1.0, max_tokens=24, n=2, seed=1))
    _check_completions(completions, prompts=3, n=2)
    pairs = [(completions[2 * i].text, completions[2 * i + 1].text) for i in range(3)]
    assert any(a != b for a, b in pairs), "n=2 gave the same text twice for every prompt"


@pytest.mark.vllm
@pytest.mark.slow
def test_propose_through_vllm_serve_validates_and_records_every_answer(served_backend, tmp_path):
    """The whole propose path on the real edit prompt (~2,300 tokens): whatever SmolLM2 writes is judged and kept."""
    template = load_template(REPO / "templates" / "fractalnet.py")
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        proposer = Proposer(served_backend, Sampling(max_tokens=96, n=2, seed=0), catalog=catalog, run_id="served")
        validator = Validator(templates=load_templates(), catalog=catalog)
        proposals = [judge_answer(catalog, validator, a) for a in proposer.edit(template.source, "template:fractalnet.py")]
        calls = catalog.llm_calls(run_id="served")
    assert len(proposals) == 2 and len(calls) == 2
    assert all(c["backend"] == "openai" and c["tokens_in"] > 2000 and 0 < c["tokens_out"] <= 96 for c in calls)
    assert all(c["completion"] and "# --- nas-agent: element (begin) ---" in c["prompt"] for c in calls)
    # Each answer got a verdict: accepted, or rejected at a named stage with its reason.
    assert all((c["ok"] == 1) == (c["stage"] is None) and (c["ok"] == 1 or c["reason"]) for c in calls)
    assert [c["stage"] for c in calls] == [p.verdict.stage for p in proposals]


def test_openai_backend_without_server_fails_fast():
    port = free_port()                                   # bound and released: nothing listens there
    started = time.perf_counter()
    with pytest.raises(LLMError, match=rf"no OpenAI-compatible server at http://127.0.0.1:{port}/v1; "
                                       r"start one with `vllm serve MODEL`"):
        OpenAIBackend("smollm2", f"http://127.0.0.1:{port}/v1", retries=2, backoff_s=0.05, timeout_s=5)
    assert time.perf_counter() - started < 10


def test_vllm_backend_without_vllm_names_what_works():
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed in this venv")
    from nas_agent.llm.vllm_backend import VLLMBackend

    with pytest.raises(LLMError, match=r"scripts/setup_vllm.sh.*backend transformers.*vllm serve"):
        VLLMBackend("smollm2")


def _distinct_catalogued_points(catalog_path: Path, run_id: str | None = None) -> list[dict]:
    """The params-mode calls of a catalog, checked: schema sent, answers read, verdicts recorded."""
    with Catalog(catalog_path) as catalog:
        calls = catalog.llm_calls(run_id=run_id)
    assert calls and all(c["purpose"] == "params" and json.loads(c["sampling"])["json_schema"] for c in calls)
    # Used answers are accepted; an unused one repeated another answer of its request and was asked again.
    assert all(c["ok"] == 1 or (c["stage"] == "duplicate" and "asked again" in c["reason"]) for c in calls), calls
    return [json.loads(c["completion"]) for c in calls if c["ok"] == 1]


@pytest.mark.vllm
@pytest.mark.slow
def test_params_mode_in_process_vllm_gives_distinct_points(vllm_python, smollm2_folder, tmp_path):
    """`.venv-vllm/bin/nas-agent propose --backend vllm --mode params`: structured outputs in the engine."""
    catalog = tmp_path / "catalog.sqlite"
    run = subprocess.run([str(VLLM_VENV / "bin" / "nas-agent"), "propose", "-c", "quick", "--backend", "vllm",
                          "--model", "smollm2", "--mode", "params", "--n", "4", "--no-smoke", "--catalog", str(catalog)],
                         cwd=REPO, env={**engine_env(), "COLUMNS": "200"}, capture_output=True, text=True,
                         timeout=800, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "4 of 4 valid" in run.stdout, run.stdout
    points = _distinct_catalogued_points(catalog)
    assert len(points) == 4 and len({json.dumps(p, sort_keys=True) for p in points}) == 4


@pytest.mark.vllm
@pytest.mark.slow
def test_params_mode_through_vllm_serve_gives_distinct_untried_points(served_backend, tmp_path):
    """Structured outputs in the request (extra_body) on a real server: every answer a new point of the space."""
    config = load_config("quick")
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        proposer = Proposer.for_config(config, served_backend, catalog=catalog, run_id="served-params")
        validator = Validator(templates=load_templates(), catalog=catalog)
        answers = proposer.points("template:fractalnet.py", n=4)
        verdicts = [judge_answer(catalog, validator, a).verdict for a in answers]
    assert len(answers) == 4 and all(v.ok for v in verdicts), verdicts
    points = _distinct_catalogued_points(tmp_path / "catalog.sqlite", "served-params")
    assert len({json.dumps(p, sort_keys=True) for p in points}) == 4
