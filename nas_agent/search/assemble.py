"""Build a search's parts from its config: executor, LLM backend, strategies, Optuna storage.

Everything that can fail on a bad setting (an unreachable Ray address, a missing LLM
package or model) is built here before the catalog is touched, so a search that cannot
start leaves the catalog as it was.
"""

from __future__ import annotations

from pathlib import Path

from nas_agent.catalog import Catalog
from nas_agent.config import Config, ConfigError
from nas_agent.tasks import is_generative
from nas_agent.search.strategy import Strategy
from nas_agent.space.fractal import FractalSpace
from nas_agent.space.template import Template
from nas_agent.validate.pipeline import Validator


def optuna_storage(config: Config) -> str:
    """The Optuna RDB URL of a catalog's studies (open it with `optuna-dashboard URL`)."""
    return f"sqlite:///{Path(config.catalog).resolve().parent / 'optuna.sqlite3'}"


def make_executor(config: Config):
    """The executor `[search] executor` names; a Ray cluster is connected to (or started) here."""
    if config.search.executor == "ray":
        from nas_agent.search.ray_executor import RayExecutor

        return RayExecutor(config.search.ray_address or None)
    from nas_agent.search.executors import LocalExecutor

    return LocalExecutor(config.device, workers=config.search.workers)


def wants(config: Config, strategy: str) -> bool:
    return config.search.strategies.get(strategy, 0) > 0


def make_backend_if_needed(config: Config):
    """The LLM backend when the llm strategy has weight, else None (loading a model takes a while)."""
    if not wants(config, "llm"):
        return None
    from nas_agent.llm import make_backend

    return make_backend(config.llm)


def check_strategies(config: Config) -> None:
    """Raise ConfigError, before anything starts, for strategies or a [space] the run's task cannot use."""
    if not is_generative(config.task):
        return
    unsupported = [name for name in ("optuna", "hpo") if wants(config, name)]
    if unsupported:
        raise ConfigError(f"search.strategies: {', '.join(unsupported)} cannot search task {config.task} yet; "
                          f"use mutate and llm (conf/generative.toml)")
    from nas_agent.space.generative import GenerativeSpace

    try:
        GenerativeSpace.from_config(config.space)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def make_strategies(config: Config, catalog: Catalog, run_id: str, template: Template, validator: Validator,
                    backend) -> dict[str, Strategy]:
    """The strategies with positive weight, set up for this run (Optuna studies are named after it)."""
    check_strategies(config)
    strategies: dict[str, Strategy] = {}
    if is_generative(config.task):  # the fractal generators' own space and mutations
        from nas_agent.search.generative_mutate import GenerativeMutateStrategy
        from nas_agent.space.generative import GenerativeSpace

        if wants(config, "mutate"):
            strategies["mutate"] = GenerativeMutateStrategy(GenerativeSpace.from_config(config.space),
                                                            crossover=config.search.crossover)
        space = None
    else:
        space = FractalSpace.from_config(config.space)
    if wants(config, "mutate") and space is not None:
        from nas_agent.search.mutate import MutateStrategy

        strategies["mutate"] = MutateStrategy(space, crossover=config.search.crossover)
    if wants(config, "optuna"):
        from nas_agent.search.optuna_strategy import OptunaStrategy

        strategies["optuna"] = OptunaStrategy(space, optuna_storage(config), f"{run_id}-arch",
                                              seed=config.search.seed)
    if wants(config, "hpo"):
        from nas_agent.search.hpo import HPOStrategy

        strategies["hpo"] = HPOStrategy(optuna_storage(config), f"{run_id}-hpo", top=config.search.hpo_top,
                                        pruner=config.search.pruner, seed=config.search.seed)
    if backend is not None:
        from nas_agent.llm import sampling_of
        from nas_agent.llm.propose import Proposer
        from nas_agent.search.llm_strategy import LLMStrategy

        proposer = Proposer(backend, sampling_of(config.llm), validator, catalog=catalog, run_id=run_id,
                            epochs=config.train.epochs, max_params=config.validate.max_params, task=config.task)
        strategies["llm"] = LLMStrategy(proposer, fixes=config.search.llm_fixes)
    return strategies
