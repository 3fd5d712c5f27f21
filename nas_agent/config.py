"""One configuration object per run: loaded from conf/*.toml, overridable from the command line.

conf/default.toml is the base layer of every config file: a key a file leaves out has the
default's value. The dataclasses below hold the same values (a test keeps the two equal), so
code that builds a TrainConfig() gets the recipe a user reads in default.toml.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas_agent.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = REPO_ROOT / "conf"


class ConfigError(UserError, ValueError):
    """An unreadable or invalid configuration; the message is one line saying what to fix."""


@dataclass
class TrainConfig:
    """The training recipe every candidate of a run gets."""

    epochs: int = 5
    batch_size: int = 256
    eval_batch_size: int = 0            # 0: 1000 on CUDA, 64 on CPU (where large batches run slower)
    optimizer: str = "sgd"              # sgd | adamw
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "onecycle"          # onecycle | constant | cosine
    warmup_fraction: float = 0.2        # onecycle: share of steps spent warming up
    label_smoothing: float = 0.1
    dropout: float = 0.1
    crop_padding: int = 4               # 0 disables random crop
    flip: bool = True
    grad_clip: float = 0.0              # 0 disables clipping
    amp: str = "auto"                   # auto (bf16 on CUDA and on CPUs with native bf16) | off
    channels_last: str = "auto"         # auto (on CUDA) | on | off
    checkpoint_blocks: bool = False     # activation checkpointing of fractal blocks
    loop: str = "fast"                  # fast: the trainer drives forward | contract: Net.train_setup/learn
    bn_recalibration: int = 2000        # training images that re-estimate BatchNorm statistics before each test; 0: off
    seed: int = 0


@dataclass
class DataConfig:
    dir: str = ""                        # empty: $NAS_AGENT_DATA, else torchvision's download
    cache_dir: str = ""                  # empty: $NAS_AGENT_CACHE or ~/.cache/nas-agent
    train_subset: int = 0                # 0: all 50,000
    test_subset: int = 0                 # 0: all 10,000


@dataclass
class LimitsConfig:
    """Per-candidate limits enforced on the child process."""

    seconds: float = 3600.0              # wall clock, whole candidate
    memory_mb: int = 16384               # address space of the child on CPU
    threads: int = 0                     # torch threads per child; 0: cores / jobs


@dataclass
class PolicySettings:
    """The static safety policy (nas_agent.validate.policy); the defaults are the safe setting."""

    enabled: bool = True                 # false skips the policy: only for code you wrote yourself
    # strict: a finding rejects the candidate (generated code). reviewed: findings are warnings and
    # the jail is the wall (code people wrote: imported LEMUR models, your own files).
    profile: str = "strict"
    extra_imports: list = field(default_factory=list)     # modules allowed on top of the default list
    max_source_bytes: int = 100_000


@dataclass
class ValidateConfig:
    """The smoke run every candidate gets in the sandbox before training, and its ceilings."""

    smoke: bool = True
    smoke_seconds: float = 60.0          # wall clock and CPU time of the smoke child
    smoke_memory_mb: int = 4096          # address space of the smoke child
    max_params: int = 50_000_000
    max_gflops: float = 20.0             # forward FLOPs per image


@dataclass
class LLMConfig:
    """The LLM that proposes edits: which backend, which model, how to sample, how to run it."""

    backend: str = "vllm"                # vllm | openai | transformers | replay
    model: str = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"  # HF id, local folder, GGUF file, or "smollm2"
    temperature: float = 0.6             # DeepSeek-R1's recommended sampling
    top_p: float = 0.95
    max_tokens: int = 0                  # 0: sized for the model and mode (see nas_agent.llm.max_tokens_of)
    n: int = 8                           # proposals per round
    seed: int = 0
    # params: a JSON point of the space, decoded under a schema (valid by construction);
    # code: the editable regions rewritten as code (free edits, the element region); mixed: half each.
    mode: str = "mixed"
    # "auto": deepseek_r1 for DeepSeek-R1 models (think freely, constrain only the answer after
    # </think>); "deepseek_r1"; "none" for a model that answers straight away.
    reasoning_parser: str = "auto"
    # vLLM engine
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.85
    max_model_len: int = 16384
    dtype: str = "auto"
    # openai: any OpenAI-compatible server (vllm serve, llama.cpp server, ...)
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str = ""                # name of the environment variable holding the key, if any
    timeout_s: float = 600.0
    retries: int = 3
    concurrency: int = 8
    # transformers
    device: str = "auto"
    # replay: a JSON Lines file of recorded completions
    replay_file: str = ""


def _default_strategies() -> dict:
    return {"llm": 0.5, "mutate": 0.3, "optuna": 0.2}


@dataclass
class SearchConfig:
    """The search loop: budgets, rounds, strategy mix, parents, and where candidates train."""

    budget: int = 20                     # candidates (and HPO trials) to train; 0: until `hours` is spent
    hours: float = 0.0                   # wall-clock limit of the search; 0: none
    round_size: int = 8                  # proposals asked for per round
    strategies: dict = field(default_factory=_default_strategies)   # name -> weight: llm, mutate, optuna, hpo, random
    parents: int = 3                     # best models each round builds on
    diversity: int = 1                   # plus this many picked for being unlike them
    crossover: float = 0.25              # mutate: share of crossovers when there are two parents or more
    llm_fixes: int = 1                   # llm: repair attempts per round for rejected proposals
    hpo_top: int = 2                     # hpo: tune the training recipe of the best N models
    pruner: str = "median"               # hpo: median | halving (successive halving), on per-epoch accuracy
    patience: int = 3                    # stop after this many rounds in a row without a new candidate
    fidelity: str = "full"               # full: every candidate trains train.epochs | halving (successive halving)
    min_epochs: int = 1                  # halving: epochs every admitted candidate trains first
    reduction: int = 3                   # halving: the best 1/reduction of each rung continues, from its checkpoint
    epoch_budget: int = 0                # epochs to train in all, over every candidate (0: no limit)
    executor: str = "local"              # local | ray
    workers: int = 0                     # local: candidates trained at once (0: one per GPU, else 1)
    ray_address: str = ""                # ray: address of a running cluster; empty starts a local one
    seed: int = 0


@dataclass
class ReferenceConfig:
    """The reference network trained once per recipe as every leaderboard's baseline row."""

    template: str = "templates/resnet9.py"   # empty: no reference network
    params: dict = field(default_factory=dict)  # template parameters to change, e.g. {BASE_CHANNELS = 16}


@dataclass
class PretrainConfig:
    """Pre-training on synthetic datasets (nas-agent fractals render/stylize) before fine-tuning on CIFAR-10."""

    datasets: list = field(default_factory=list)   # dataset folders; in a search each is a variant (empty: off)
    epochs: int = 2                      # pre-training epochs on the synthetic set
    lr: float = 0.0                      # pre-training learning rate; 0: train.lr
    finetune_subset: int = 0             # CIFAR-10 training images to fine-tune on; 0: data.train_subset
    finetune_epochs: int = 0             # 0: train.epochs
    scratch: bool = True                 # search: also train a scratch trial with the same fine-tuning recipe
    top: int = 1                         # search: the N best new candidates of each round get the variants (0: all)


@dataclass
class Config:
    name: str = "default"
    device: str = "auto"                 # auto | cpu | cuda | cuda:N
    catalog: str = "runs/catalog.sqlite"
    task: str = "img-classification"
    dataset: str = "cifar-10"
    template: str = "templates/fractalnet.py"
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    policy: PolicySettings = field(default_factory=PolicySettings)
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    space: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def with_overrides(self, overrides: dict[str, Any]) -> "Config":
        """A copy with dotted keys replaced (`train.epochs`, `data.dir`, `device`); None values are ignored."""
        data = self.to_dict()
        for dotted, value in overrides.items():
            if value is None:
                continue
            node = data
            *parents, leaf = dotted.split(".")
            for key in parents:
                node = node[key]
            node[leaf] = value
        return from_dict(data, source="command line")


SECTIONS = {"train": TrainConfig, "data": DataConfig, "limits": LimitsConfig, "policy": PolicySettings,
            "validate": ValidateConfig, "llm": LLMConfig, "search": SearchConfig, "reference": ReferenceConfig,
            "pretrain": PretrainConfig}


def _build(cls, values: dict[str, Any], where: str):
    """Instantiate a config dataclass, checking key names and value types against its defaults."""
    defaults = cls()
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    kwargs = {}
    for key, value in values.items():
        default = getattr(defaults, key)
        if cls is Config and key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: [{key}] must be a table")
            value = _build(SECTIONS[key], value, f"{where} [{key}]")
        elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif not isinstance(value, type(default)) or (isinstance(value, bool) and not isinstance(default, bool)):
            raise ConfigError(f"{where}: {key} must be {type(default).__name__}, got {value!r}")
        kwargs[key] = value
    return cls(**kwargs)


def _check(config: Config, where: str) -> Config:
    t = config.train
    problems = []
    if t.epochs < 1:
        problems.append("train.epochs must be at least 1")
    if t.batch_size < 1 or t.eval_batch_size < 0:
        problems.append("train.batch_size must be positive and train.eval_batch_size >= 0")
    if t.lr <= 0:
        problems.append("train.lr must be positive")
    if t.optimizer not in ("sgd", "adamw"):
        problems.append(f"train.optimizer must be sgd or adamw, not {t.optimizer!r}")
    if t.schedule not in ("onecycle", "constant", "cosine"):
        problems.append(f"train.schedule must be onecycle, constant or cosine, not {t.schedule!r}")
    if t.amp not in ("auto", "off") or t.channels_last not in ("auto", "on", "off"):
        problems.append("train.amp must be auto|off and train.channels_last auto|on|off")
    if t.loop not in ("fast", "contract"):
        problems.append(f"train.loop must be fast or contract, not {t.loop!r}")
    if not 0 <= t.dropout < 1 or not 0 <= t.label_smoothing < 1:
        problems.append("train.dropout and train.label_smoothing must be in [0, 1)")
    if config.data.train_subset < 0 or config.data.test_subset < 0:
        problems.append("data subsets must be >= 0")
    if config.limits.seconds <= 0 or config.limits.memory_mb <= 0:
        problems.append("limits.seconds and limits.memory_mb must be positive")
    if config.policy.profile not in ("strict", "reviewed"):
        problems.append(f"policy.profile must be strict or reviewed, not {config.policy.profile!r}")
    if not all(isinstance(m, str) for m in config.policy.extra_imports):
        problems.append("policy.extra_imports must be a list of module names")
    v = config.validate
    if v.smoke_seconds <= 0 or v.smoke_memory_mb <= 0 or v.max_params <= 0 or v.max_gflops <= 0:
        problems.append("validate.smoke_seconds, smoke_memory_mb, max_params and max_gflops must be positive")
    llm = config.llm
    if llm.backend not in ("vllm", "openai", "transformers", "replay"):
        problems.append(f"llm.backend must be vllm, openai, transformers or replay, not {llm.backend!r}")
    if not (0 <= llm.temperature <= 5 and 0 < llm.top_p <= 1 and llm.max_tokens >= 0 and llm.n > 0):
        problems.append("llm: temperature must be in [0, 5], top_p in (0, 1], max_tokens >= 0 (0: sized for the "
                        "model and mode) and n positive")
    if llm.mode not in ("params", "code", "mixed"):
        problems.append(f"llm.mode must be params, code or mixed, not {llm.mode!r}")
    if llm.reasoning_parser not in ("auto", "deepseek_r1", "none"):
        problems.append(f"llm.reasoning_parser must be auto, deepseek_r1 or none, not {llm.reasoning_parser!r}")
    search = config.search
    unknown = set(search.strategies) - {"llm", "mutate", "optuna", "hpo", "random"}
    if unknown:
        problems.append(f"search.strategies: unknown strategy {', '.join(sorted(unknown))}; "
                        f"choose from llm, mutate, optuna, hpo, random")
    elif not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0
                 for w in search.strategies.values()) or not any(w > 0 for w in search.strategies.values()):
        problems.append("search.strategies: weights must be numbers >= 0, at least one of them positive")
    if search.budget < 0 or search.hours < 0:
        problems.append("search.budget and search.hours must be >= 0")
    if search.round_size < 1 or search.parents < 1 or search.diversity < 0 or search.patience < 1:
        problems.append("search.round_size, search.parents and search.patience must be >= 1, search.diversity >= 0")
    if not 0 <= search.crossover <= 1:
        problems.append("search.crossover must be in [0, 1]")
    if search.pruner not in ("median", "halving"):
        problems.append(f"search.pruner must be median or halving, not {search.pruner!r}")
    if search.fidelity not in ("full", "halving"):
        problems.append(f"search.fidelity must be full or halving, not {search.fidelity!r}")
    if search.min_epochs < 1 or search.reduction < 2 or search.epoch_budget < 0:
        problems.append("search.min_epochs must be >= 1, search.reduction >= 2 and search.epoch_budget >= 0")
    if search.executor not in ("local", "ray"):
        problems.append(f"search.executor must be local or ray, not {search.executor!r}")
    if search.workers < 0 or search.llm_fixes < 0 or search.hpo_top < 1:
        problems.append("search.workers and search.llm_fixes must be >= 0, search.hpo_top >= 1")
    pre = config.pretrain
    if pre.epochs < 1 or pre.lr < 0 or pre.finetune_subset < 0 or pre.finetune_epochs < 0 or pre.top < 0:
        problems.append("pretrain.epochs must be >= 1; pretrain.lr, finetune_subset, finetune_epochs and top >= 0")
    if not all(isinstance(d, str) and d for d in pre.datasets):
        problems.append("pretrain.datasets must be a list of dataset folders (nas-agent fractals render --out DIR)")
    if not (config.device in ("auto", "cpu", "cuda") or config.device.startswith("cuda:")):
        problems.append(f"device must be auto, cpu, cuda or cuda:N, not {config.device!r}")
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems))
    return config


def from_dict(data: dict[str, Any], source: str = "config") -> Config:
    """Validate a plain dict (as parsed from TOML) into a Config."""
    return _check(_build(Config, data, source), source)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def _layer(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """`top` over `base`, section by section; a value inside a section (a strategy mix, a
    `params` table) replaces the base's whole, so `strategies = {mutate = 1}` means mutate alone."""
    merged = dict(base)
    for key, value in top.items():
        if key in SECTIONS and isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key] = {**base[key], **value}
        else:
            merged[key] = value
    return merged


def load_config(path: str | Path | None = None) -> Config:
    """Load a TOML config (a path, or a name in conf/ such as `paper`) over conf/default.toml; None gives the default."""
    default = CONF_DIR / "default.toml"
    path = Path(path) if path is not None else default
    if not path.exists() and not path.suffix and (CONF_DIR / f"{path}.toml").exists():
        path = CONF_DIR / f"{path}.toml"
    data = _read_toml(path)
    if path.resolve() != default.resolve():
        data = _layer(_read_toml(default), data)
    return from_dict(data, source=str(path))
