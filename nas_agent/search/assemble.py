"""Build a search's parts from its config: executor, LLM backend, strategies, Optuna storage.

Everything that can fail on a bad setting (an unreachable Ray address, a missing LLM
package or model) is built here before the catalog is touched, so a search that cannot
start leaves the catalog as it was.
"""

from __future__ import annotations

from pathlib import Path

from nas_agent.catalog import Catalog
from nas_agent.config import Config, ConfigError
from nas_agent.tasks import task_of
from nas_agent.search.strategy import Strategy


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
    """Raise ConfigError, before anything starts, for a [space] the run's task cannot use."""
    try:
        task_of(config.task).space_of(config.space)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def make_strategies(config: Config, catalog: Catalog, run_id: str, backend, *,
                    storage: str | None = None) -> dict[str, Strategy]:
    """The strategies with positive weight, set up for this run over its task's space (studies are named after it).

    `storage`: the Optuna storage URL (default: the catalog's optuna.sqlite3; "" keeps the architecture
    study in memory).
    """
    check_strategies(config)
    storage = optuna_storage(config) if storage is None else storage
    task = task_of(config.task)
    space = task.space_of(config.space)
    strategies: dict[str, Strategy] = {}
    if wants(config, "mutate"):
        from nas_agent.search.mutate import MutateStrategy

        strategies["mutate"] = MutateStrategy(space, crossover=config.search.crossover)
    if wants(config, "random"):
        from nas_agent.search.random_strategy import RandomStrategy

        strategies["random"] = RandomStrategy(space)
    if wants(config, "optuna"):
        from nas_agent.search.optuna_strategy import OptunaStrategy

        strategies["optuna"] = OptunaStrategy(space, storage, f"{run_id}-arch",
                                              seed=config.search.seed, lower_is_better=task.lower_is_better)
    if wants(config, "hpo"):
        from nas_agent.search.hpo import HPOStrategy

        strategies["hpo"] = HPOStrategy(storage or optuna_storage(config), f"{run_id}-hpo", top=config.search.hpo_top,
                                        pruner=config.search.pruner, seed=config.search.seed,
                                        lower_is_better=task.lower_is_better)
    if backend is not None:
        from nas_agent.llm.propose import Proposer
        from nas_agent.search.llm_strategy import LLMStrategy

        proposer = Proposer.for_config(config, backend, catalog=catalog, run_id=run_id)
        strategies["llm"] = LLMStrategy(proposer, fixes=config.search.llm_fixes, mode=config.llm.mode)
    return strategies
