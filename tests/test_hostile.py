"""The hostile corpus: every file is rejected at its declared stage, in time, and nothing escapes the sandbox.

Each file in tests/hostile/ declares in its header the stage that must reject it, a time
limit, and (for payloads that would write a file) the path that must never appear. Files
marked `sandbox: smoke` (or `contained`) are also run in the sandbox with the policy
skipped, to show the second wall holds on its own.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from nas_agent.sandbox import landlock
from nas_agent.space import load_templates
from nas_agent.validate import SmokeLimits, Validator, smoke_test

from conftest import corpus_header

pytestmark = pytest.mark.sandbox

HOSTILE = Path(__file__).resolve().parent / "hostile"
SMOKE_LIMITS = SmokeLimits(seconds=20, memory_mb=4096)


@dataclass(frozen=True)
class Hostile:
    path: Path
    expect: str
    limit: float
    why: str
    touches: str | None
    sandbox: str | None    # "smoke": rejected there too; "contained": may run, but must write nothing

    @property
    def source(self) -> str:
        return self.path.read_text()


def _corpus() -> list[Hostile]:
    files = []
    for path in sorted(HOSTILE.glob("*.py")):
        header = corpus_header(path)
        files.append(Hostile(path, header["expect"], float(header["limit"]), header["why"],
                             header.get("touches"), header.get("sandbox")))
    return files


CORPUS = _corpus()
STATIC = [h for h in CORPUS if h.expect != "smoke"]
SMOKE = [h for h in CORPUS if h.expect == "smoke"]
BYPASS = [h for h in CORPUS if h.sandbox]


def _clean(hostiles) -> None:
    for h in hostiles:
        if h.touches and os.path.exists(h.touches):
            os.remove(h.touches)


def test_the_corpus_covers_every_stage_and_the_attacks_the_issue_names():
    assert len(CORPUS) >= 30
    assert {h.expect for h in CORPUS} == {"parse", "contract", "policy", "smoke"}
    names = {h.path.stem for h in CORPUS}
    for required in ("os_system", "builtins_subprocess", "getattr_concat", "eval_call", "exec_call", "compile_call",
                     "open_write", "torch_save_tmp", "socket_import", "threading_import", "subclasses_escape",
                     "infinite_loop_init", "infinite_loop_forward", "time_sleep", "huge_parameter",
                     "recursion_bomb", "wrong_output_shape", "nan_output", "syntax_error", "missing_net",
                     "wrong_init_signature", "huge_source"):
        assert required in names


@pytest.mark.parametrize("hostile", STATIC, ids=lambda h: h.path.stem)
def test_static_stages_reject_without_running_anything(hostile):
    validator = Validator(templates=load_templates())
    started = time.monotonic()
    result = validator.validate(hostile.source, hostile.path.name)
    assert time.monotonic() - started < hostile.limit
    assert result.verdict.stage == hostile.expect, result.verdict
    assert result.verdict.reason  # something a person (or the LLM) can act on


def _smoke_all(hostiles, validator_factory):
    def one(h):
        started = time.monotonic()
        return h, validator_factory().validate(h.source, h.path.name), time.monotonic() - started
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(one, hostiles))


@pytest.mark.slow
def test_runtime_attacks_are_stopped_by_the_smoke_run(tmp_path):
    _clean(SMOKE)
    results = _smoke_all(SMOKE, lambda: Validator(smoke=SMOKE_LIMITS, workdir=tmp_path / "sandbox"))
    for hostile, result, seconds in results:
        assert result.verdict.stage == "smoke", (hostile.path.name, result.verdict)
        assert seconds < hostile.limit, (hostile.path.name, seconds)
    reasons = {h.path.stem: r.verdict.reason for h, r, _ in results}
    assert reasons["infinite_loop_forward"].startswith("timeout")
    assert reasons["huge_parameter"].startswith("out of memory")
    assert "shape" in reasons["wrong_output_shape"]
    assert "NaN" in reasons["nan_output"]
    assert "RecursionError" in reasons["recursion_bomb"]
    assert "parameters, above" in reasons["too_many_parameters"]
    # The driver (this process) is unharmed: a good candidate still passes.
    good = (HOSTILE.parent / "candidates" / "nan_loss.py").read_text().replace(' * float("nan")', "")
    assert Validator(smoke=SMOKE_LIMITS).validate(good, "good.py").ok


@pytest.mark.slow
def test_with_the_policy_skipped_the_sandbox_still_stops_every_payload(tmp_path):
    """The second wall alone: audit hook plus Landlock, no static policy in front."""
    assert landlock.abi_version() >= 1, "this kernel has no Landlock: the sandbox cannot stop native writes"
    _clean(BYPASS)
    before = set(os.listdir("/tmp"))

    def one(h):
        return h, smoke_test(h.source, tmp_path / h.path.stem, SMOKE_LIMITS)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(one, BYPASS))
    for hostile, result in results:
        if hostile.sandbox == "smoke":
            assert result.verdict.stage == "smoke", (hostile.path.name, result.verdict)
        assert result.seconds < 60
        if hostile.touches:
            assert not os.path.exists(hostile.touches), f"{hostile.path.name} wrote {hostile.touches}"
    assert {n for n in set(os.listdir("/tmp")) - before if n.startswith("nas_agent")} == set()
    # What the children wrote stayed in their own folders.
    for hostile, _ in results:
        assert (tmp_path / f"{hostile.path.stem}.log").exists()
