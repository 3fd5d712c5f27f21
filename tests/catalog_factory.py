"""A realistic catalog filled through the Catalog API: real template code, seeded per-epoch results.

For the tests whose subject is what is done with a catalog (report, browsing, LEMUR files,
exports) rather than training itself. The models are real FractalNet variants rendered from
the template (and the reference ResNet-9), their parameter counts counted from the built
networks; the search's records (proposals, verdicts, LLM calls, events) are written the way
the search loop writes them. Everything is seeded, so each build is the same catalog.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nas_agent.catalog import Catalog, EpochRecord, ModelRecord, model_name
from nas_agent.config import load_config
from nas_agent.search.reference import reference_candidate
from nas_agent.search.trainer import METRIC, METRIC_CODE, transform_of, trial_prm
from nas_agent.space import FractalSpace, load_template
from nas_agent.candidate import code_hash

TASK, DATASET = "img-classification", "cifar-10"
STRATEGIES = ("mutate", "optuna", "llm")
HOSTILE = Path(__file__).resolve().parent / "hostile"
# Files whose static verdicts stand in for an LLM's bad answers: parse, policy and contract.
REJECTED_FILES = ("syntax_error", "unbalanced_brackets", "os_system", "eval_call", "subprocess_import",
                  "missing_net", "wrong_init_signature")
# The smoke stage needs a sandbox child; this is its wording for the smoke run's size ceiling.
SMOKE_REJECTION = ("smoke", "61,264,010 parameters, above the 50,000,000 limit (validate.max_params)")


def real_rejections() -> list[tuple[str, str]]:
    """(stage, reason) pairs as the validator writes them, from real hostile files of tests/hostile/."""
    from nas_agent.space import load_templates
    from nas_agent.validate import Validator

    validator = Validator(templates=load_templates())
    found = []
    for stem in REJECTED_FILES:
        verdict = validator.validate((HOSTILE / f"{stem}.py").read_text(), f"{stem}.py").verdict
        assert not verdict.ok, stem
        found.append((verdict.stage, verdict.reason))
    return [*found, SMOKE_REJECTION]


@dataclass
class Built:
    """What the factory put in, for the tests to check the catalog's views against."""

    path: Path
    run_ids: list[str]
    trained: list[str] = field(default_factory=list)          # models with results, reference included
    reference: str | None = None
    failed: list[str] = field(default_factory=list)
    epochs: dict[str, int] = field(default_factory=dict)      # model -> recorded epochs
    rejected_by_stage: dict[str, int] = field(default_factory=dict)
    proposals_by_strategy: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    llm_calls: int = 0
    llm_valid: int = 0
    by_run: dict[str, list[str]] = field(default_factory=dict)


def _n_params(source: str) -> int:
    namespace: dict = {}
    exec(compile(source, "<candidate>", "exec"), namespace)  # our own template code, not a proposal
    net = namespace["Net"]((1, 3, 32, 32), (10,), {"lr": 0.01, "momentum": 0.9, "dropout": 0.0}, torch.device("cpu"))
    return sum(p.numel() for p in net.parameters())


def _curve(rng: random.Random, epochs: int, quality: float) -> list[float]:
    """A plausible rising test-accuracy curve that ends near `quality`."""
    start = 0.10 + 0.6 * quality * rng.uniform(0.45, 0.7)
    values = [start + (quality - start) * (1 - 0.5 ** (e + 1)) / (1 - 0.5 ** epochs) + rng.uniform(-0.01, 0.01)
              for e in range(epochs)]
    return [round(min(max(v, 0.05), 0.99), 4) for v in values]


def build_catalog(path: Path, *, models: int = 14, epochs: int = 3, seed: int = 0) -> Built:
    """Write the catalog at `path`: two search runs, `models` trained FractalNets, the reference, rejections."""
    rng = random.Random(seed)
    cfg = load_config("quick").with_overrides({"train.epochs": epochs, "catalog": str(path)})
    template = load_template(cfg.template)
    variants = FractalSpace.from_config(cfg.space).sample(models + 1, seed)
    transform, transform_code = transform_of(cfg)
    prm = trial_prm(cfg)
    built = Built(path=Path(path), run_ids=[])
    rejections = real_rejections()
    with Catalog(path) as cat:
        cat.register_transform(transform, transform_code)
        cat.register_metric(METRIC, METRIC_CODE)
        names: list[str] = []

        def add(source: str, family: str, parent, origin, run_id) -> str:
            digest = code_hash(source)
            name = model_name(family, source)
            cat.add_model(ModelRecord(name=name, code=source, family=family, task=TASK, dataset=DATASET,
                                      metric=METRIC, code_hash=digest, template_params={}, parent=parent,
                                      origin=origin, n_params=_n_params(source)), run_id=run_id)
            return name

        def train(name: str, run_id: str, quality: float) -> None:
            cat.set_status(name, "running", run_id=run_id)
            for e, accuracy in enumerate(_curve(rng, epochs, quality), start=1):
                cat.record_epoch(EpochRecord(
                    nn=name, epoch=e, accuracy=accuracy, duration_s=rng.uniform(8, 30), prm=prm,
                    transform=transform, metric=METRIC, task=TASK, dataset=DATASET,
                    train_loss=round(2.3 - 1.2 * accuracy, 4), test_loss=round(2.2 - 1.1 * accuracy, 4),
                    train_accuracy=min(accuracy + 0.03, 0.99), samples_per_second=rng.uniform(800, 1500),
                    epoch_max=epochs, occupied_ram_kb=rng.uniform(5e5, 9e5)))
            cat.set_status(name, "done", run_id=run_id)
            built.trained.append(name)
            built.epochs[name] = epochs
            built.by_run.setdefault(run_id, []).append(name)

        for run_index in range(2):
            run_id = cat.start_run(f"nas-agent search --config quick --budget {models // 2}", cfg.to_dict())
            built.run_ids.append(run_id)
            if run_index == 0:
                ref = reference_candidate(cfg)
                built.reference = add(ref.source, ref.family, None, "reference", run_id)
                train(built.reference, run_id, 0.62)
            for round_ in range(1, 3):
                for k in range(-(-models // 4)):
                    index = len(names)
                    if index >= models:
                        break
                    strategy = STRATEGIES[index % len(STRATEGIES)]
                    parent = names[rng.randrange(len(names))] if names and strategy != "optuna" else None
                    source = template.render(variants[index])
                    name = add(source, template.family, parent, strategy, run_id)
                    names.append(name)
                    change = f"N_COLUMNS {variants[index]['N_COLUMNS']}, ACTIVATION {variants[index]['ACTIVATION']}"
                    if strategy == "llm":
                        call_id = cat.add_llm_call(
                            run_id=run_id, purpose="edit", parent=parent, backend="transformers", model="smollm2",
                            sampling={"temperature": 0.6}, prompt="...", completion="```python ...```",
                            reasoning_chars=rng.randrange(0, 400), tokens_in=900 + rng.randrange(200),
                            tokens_out=300 + rng.randrange(80), latency_s=round(rng.uniform(4, 9), 2),
                            finish_reason="stop")
                        # As the search loop records it: the call first, then the verdict on its code.
                        cat.judge_llm_call(call_id, ok=True, stage=None, reason="", code_hash=code_hash(source), nn=name)
                        built.llm_calls += 1
                        built.llm_valid += 1
                    pid = cat.add_proposal(run_id=run_id, round=round_, strategy=strategy, parent=parent,
                                           change=change, nn=name, code_hash=code_hash(source), ok=True,
                                           status="queued")
                    built.proposals_by_strategy[strategy] = built.proposals_by_strategy.get(strategy, 0) + 1
                    if index == 3:  # one candidate fails in training
                        cat.set_status(name, "running", run_id=run_id)
                        cat.set_status(name, "failed", reason="training loss is nan in epoch 1", run_id=run_id)
                        cat.update_proposal(pid, status="failed", reason="training loss is nan in epoch 1")
                        built.failed.append(name)
                        built.by_run.setdefault(run_id, []).append(name)
                        continue
                    quality = rng.uniform(0.25, 0.6)
                    train(name, run_id, quality)
                    cat.update_proposal(pid, status="done", accuracy=cat.best_accuracy(name))
                # Each round also yields a duplicate and a few rejected proposals.
                if names:
                    twin = names[-1]
                    cat.add_proposal(run_id=run_id, round=round_, strategy="mutate", parent=names[0],
                                     change="N_BLOCKS 3", nn=twin, ok=False, stage="duplicate",
                                     reason=f"same code as {twin}", status="duplicate")
                    built.duplicates += 1
                    built.proposals_by_strategy["mutate"] = built.proposals_by_strategy.get("mutate", 0) + 1
                for stage, reason in rng.sample(rejections, 3):
                    cat.add_llm_call(run_id=run_id, purpose="edit", parent=names[0] if names else None,
                                     backend="transformers", model="smollm2", sampling={"temperature": 0.6},
                                     prompt="...", completion="no code", reasoning_chars=0, tokens_in=950,
                                     tokens_out=384, latency_s=round(rng.uniform(4, 9), 2), finish_reason="length",
                                     ok=False, stage=stage, reason=reason)
                    built.llm_calls += 1
                    cat.add_proposal(run_id=run_id, round=round_, strategy="llm", parent=names[0] if names else None,
                                     change="llm edit", ok=False, stage=stage, reason=reason, status="rejected")
                    built.rejected_by_stage[stage] = built.rejected_by_stage.get(stage, 0) + 1
                    built.proposals_by_strategy["llm"] = built.proposals_by_strategy.get("llm", 0) + 1
            cat.end_run(run_id, "finished")
        # A hand-made file rejected by a sweep: an event, not a proposal.
        sweep = cat.start_run("nas-agent sweep candidates", cfg.to_dict())
        cat.add_event("candidates/hostile.py", "rejected", stage="policy",
                      reason=rejections[2][1], run_id=sweep)
        cat.end_run(sweep, "finished")
        built.rejected_by_stage["policy"] = built.rejected_by_stage.get("policy", 0) + 1
    return built
