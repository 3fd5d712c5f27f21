"""Search strategies without training: allocation, parent choice, mutations, LLM edits with repairs."""

from __future__ import annotations

import json
import random

import pytest

from nas_agent.catalog import Catalog, EpochRecord, ModelRecord, model_name
from nas_agent.config import load_config
from nas_agent.llm.base import Sampling
from nas_agent.llm.propose import Proposer
from nas_agent.llm.replay import ReplayBackend
from nas_agent.search.llm_strategy import LLMStrategy
from nas_agent.search.loop import Search
from nas_agent.search.mutate import MutateStrategy
from nas_agent.search.strategy import RoundContext, allocate, choose_parents, template_parent
from nas_agent.space import FractalSpace, load_template, load_templates, read_params
from nas_agent.validate import Validator
from nas_agent.candidate import code_hash

SMALL_SPACE = FractalSpace(n_blocks=(2, 3), n_columns=(1, 2), base_channels=(8, 16))


@pytest.fixture(scope="module")
def template():
    return load_template("templates/fractalnet.py")


def test_allocation_follows_the_weights_and_always_sums_to_k():
    rng = random.Random(0)
    # 8 x (0.5, 0.3, 0.2) = 4, 2.4, 1.6: the one left over goes to the largest remainder.
    assert allocate(8, {"llm": 0.5, "mutate": 0.3, "optuna": 0.2}, rng) == {"llm": 4, "mutate": 2, "optuna": 2}
    for k in range(0, 12):
        split = allocate(k, {"a": 1, "b": 1, "c": 1, "off": 0}, rng)
        assert sum(split.values()) == k and split["off"] == 0
        assert max(split["a"], split["b"], split["c"]) - min(split["a"], split["b"], split["c"]) <= 1


def _catalogue(catalog: Catalog, template, params: dict, accuracy: float) -> str:
    source = template.render(params)
    digest = code_hash(source)
    name = model_name("FractalNet", source)
    catalog.add_model(ModelRecord(name=name, code=source, family="FractalNet", task="img-classification",
                                  dataset="cifar-10", metric="acc", code_hash=digest,
                                  template_params=read_params(source), parent=None, origin="mutate"))
    catalog.register_transform("t", "x = 1")
    catalog.register_metric("acc", "x = 1")
    catalog.record_epoch(EpochRecord(nn=name, epoch=1, accuracy=accuracy, duration_s=1.0, prm={"lr": 0.1},
                                     transform="t", metric="acc", task="img-classification", dataset="cifar-10"))
    return name


def test_parents_are_the_best_plus_the_most_different(tmp_path, template):
    config = load_config("quick")
    with Catalog(tmp_path / "c.sqlite") as catalog:
        assert [p.name for p in choose_parents(catalog, config, template, best=2, diverse=1,
                                               rng=random.Random(0))] == ["template:fractalnet.py"]
        best = _catalogue(catalog, template, {"N_BLOCKS": 3, "ACTIVATION": "relu"}, 0.6)
        second = _catalogue(catalog, template, {"N_BLOCKS": 3, "ACTIVATION": "gelu"}, 0.5)
        near = _catalogue(catalog, template, {"N_BLOCKS": 2, "ACTIVATION": "relu"}, 0.4)
        far = _catalogue(catalog, template, {"N_BLOCKS": 2, "N_COLUMNS": 2, "BASE_CHANNELS": 16,
                                             "ACTIVATION": "silu"}, 0.1)
        parents = choose_parents(catalog, config, template, best=2, diverse=1, rng=random.Random(0))
        assert [p.name for p in parents] == [best, second, far]
        assert parents[0].accuracy == 0.6 and parents[0].params["N_BLOCKS"] == 3
        assert near not in [p.name for p in parents]


def _context(catalog, template, parents, config=None):
    return RoundContext(1, "run-1", config or load_config("quick"), catalog, template, parents, random.Random(0))


def test_mutations_are_distinct_valid_one_step_edits_inside_the_space(tmp_path, template):
    validator = Validator(templates=load_templates())
    with Catalog(tmp_path / "c.sqlite") as catalog:
        strategy = MutateStrategy(SMALL_SPACE)
        # From the template, whose defaults (4 blocks, 3 columns, 32 channels) lie outside the space.
        proposals = strategy.propose(_context(catalog, template, [template_parent(template)]), 6)
        assert len(proposals) == 6
        sources = [p.source for p in proposals]
        assert len({code_hash(s) for s in sources}) == 6
        for proposal in proposals:
            assert validator.validate(proposal.source, proposal.change).ok, proposal.change
            params = read_params(proposal.source)
            assert params["N_BLOCKS"] in (2, 3) and params["N_COLUMNS"] in (1, 2) and params["BASE_CHANNELS"] in (8, 16)
            assert proposal.strategy == "mutate" and proposal.parent == "template:fractalnet.py"
            assert " -> " in proposal.change
        # Two catalogued parents: crossovers appear and mix their parameters.
        a = _catalogue(catalog, template, {"N_BLOCKS": 2, "N_COLUMNS": 1, "BASE_CHANNELS": 8, "ACTIVATION": "relu"}, 0.5)
        b = _catalogue(catalog, template, {"N_BLOCKS": 3, "N_COLUMNS": 2, "BASE_CHANNELS": 16, "ACTIVATION": "gelu"}, 0.4)
        parents = choose_parents(catalog, load_config("quick"), template, best=2, diverse=0, rng=random.Random(0))
        crossed = [p for p in MutateStrategy(SMALL_SPACE, crossover=1.0).propose(_context(catalog, template, parents), 4)
                   if p.change.startswith("crossover")]
        assert crossed
        for proposal in crossed:
            params = read_params(proposal.source)
            for name in ("N_BLOCKS", "N_COLUMNS", "BASE_CHANNELS", "ACTIVATION"):
                assert params[name] in (parents[0].params[name], parents[1].params[name])
        assert {a, b} == {p.name for p in parents}


REPLAY = [
    # A valid edit; then a policy violation, which earns a repair prompt; the repair fixes it.
    "<think>\nGELU trains smoother.\n</think>\n```python\n# --- nas-agent: template parameters (begin) ---\n"
    "N_BLOCKS = 2\nN_COLUMNS = 2\nBASE_CHANNELS = 8\nACTIVATION = \"gelu\"\n"
    "# --- nas-agent: template parameters (end) ---\n```",
    "```python\n# --- nas-agent: element (begin) ---\ndef make_element(c_in, c_out, dropout):\n"
    "    open('/etc/passwd')\n    return nn.Conv2d(c_in, c_out, 3, padding=1)\n# --- nas-agent: element (end) ---\n```",
    "<think>\nRemove the file access.\n</think>\n```python\n# --- nas-agent: element (begin) ---\n"
    "def make_element(c_in, c_out, dropout):\n    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), "
    "nn.BatchNorm2d(c_out), nn.ReLU())\n# --- nas-agent: element (end) ---\n```",
]


def _llm_search(tmp_path, catalog, replay_texts: list[str], parents: int = 1, round_size: int = 2) -> Search:
    """A search whose only strategy is the llm, answering from a replay file; nothing is trained here."""
    replay = tmp_path / "replay.jsonl"
    replay.write_text("".join(json.dumps({"text": t}) + "\n" for t in replay_texts))
    config = load_config("quick").with_overrides({
        "catalog": str(tmp_path / "c.sqlite"), "search.round_size": round_size, "search.budget": 0,
        "search.parents": parents, "search.diversity": 0, "search.strategies": {"llm": 1.0}})
    validator = Validator(templates=load_templates(), catalog=catalog)
    proposer = Proposer(ReplayBackend(replay), Sampling(n=2), catalog=catalog)
    return Search(config, catalog, "run-1", tmp_path, template=load_template("templates/fractalnet.py"),
                  strategies={"llm": LLMStrategy(proposer, fixes=1)}, validator=validator, executor=None)


def test_a_mutation_onto_a_catalogued_network_walks_on_to_one_not_tried(tmp_path, template):
    """Regression: around a good parent the one-step neighbours are soon all catalogued; proposing them
    again only bought duplicate verdicts (and, three rounds of those, the end of the search)."""
    order = ("conv", "bn", "act", "dropout")
    square = FractalSpace(n_blocks=(2, 3), n_columns=(1, 2), base_channels=(8,), activation=("relu",),
                          element_order=(order,))
    point = {"BASE_CHANNELS": 8, "ACTIVATION": "relu", "ELEMENT_ORDER": order}
    with Catalog(tmp_path / "c.sqlite") as catalog:
        parent = _catalogue(catalog, template, {**point, "N_BLOCKS": 2, "N_COLUMNS": 1}, 0.5)
        _catalogue(catalog, template, {**point, "N_BLOCKS": 3, "N_COLUMNS": 1}, 0.4)   # both neighbours
        _catalogue(catalog, template, {**point, "N_BLOCKS": 2, "N_COLUMNS": 2}, 0.4)
        parents = [p for p in choose_parents(catalog, load_config("quick"), template, best=1, diverse=0,
                                             rng=random.Random(0))]
        assert [p.name for p in parents] == [parent]
        proposals = MutateStrategy(square, crossover=0.0).propose(_context(catalog, template, parents), 3)
        assert len(proposals) == 1                        # the one network of the square not tried yet
        params = read_params(proposals[0].source)
        assert (params["N_BLOCKS"], params["N_COLUMNS"]) == (3, 2) and ";" in proposals[0].change


def test_llm_edits_get_one_repair_and_every_call_is_recorded(tmp_path, template):
    with Catalog(tmp_path / "c.sqlite") as catalog:
        admitted = _llm_search(tmp_path, catalog, REPLAY).propose_round()
        rows = catalog.proposals(run_id="run-1")
        assert [r["stage"] for r in rows] == [None, "policy", None]
        assert rows[2]["change"].startswith("llm fix of a policy rejection: Remove the file access.")
        assert rows[0]["change"] == "llm edit: GELU trains smoother."
        calls = catalog.llm_calls(run_id="run-1")
        assert [c["purpose"] for c in calls] == ["edit", "edit", "fix"]
        # The loop recorded each verdict on its call, and the model each admitted answer became.
        assert [c["stage"] for c in calls] == [r["stage"] for r in rows]
        assert [c["nn"] for c in calls] == [r["nn"] if r["ok"] else None for r in rows]
        assert [a.name for a in admitted] == [rows[0]["nn"], rows[2]["nn"]]


def _region(n_blocks: int, activation: str) -> str:
    return ("```python\n# --- nas-agent: template parameters (begin) ---\n"
            f"N_BLOCKS = {n_blocks}\nN_COLUMNS = 2\nBASE_CHANNELS = 8\nACTIVATION = \"{activation}\"\n"
            "# --- nas-agent: template parameters (end) ---\n```")


def test_a_duplicate_of_an_llm_answer_names_the_model_it_repeats(tmp_path, template):
    """Regression: answers were labelled "proposal 0", "proposal 1"... afresh in every LLM call, so with two
    parents a repeat of the second call's first answer was filed as a twin of the first call's first answer."""
    with Catalog(tmp_path / "c.sqlite") as catalog:
        first = _catalogue(catalog, template, {"N_BLOCKS": 3, "ACTIVATION": "relu"}, 0.6)
        second = _catalogue(catalog, template, {"N_BLOCKS": 2, "ACTIVATION": "relu"}, 0.5)
        # Eight proposals: one call of four answers per parent. Call 2 answers X, then X again.
        answers = [_region(2, "gelu"), _region(3, "gelu"), _region(4, "gelu"), _region(5, "gelu"),
                   _region(2, "silu"), _region(2, "silu"), _region(3, "silu"), _region(4, "silu")]
        admitted = _llm_search(tmp_path, catalog, answers, parents=2, round_size=8).propose_round()
        rows = catalog.proposals(run_id="run-1")
        assert [r["parent"] for r in rows] == [first] * 4 + [second] * 4
        assert [r["status"] for r in rows] == ["queued"] * 5 + ["duplicate"] + ["queued"] * 2
        x = admitted[4].name
        assert rows[5]["nn"] == x and x in rows[5]["reason"] and admitted[0].name not in rows[5]["reason"]


def test_random_draws_are_uniform_valid_and_never_repeated(tmp_path, template):
    from nas_agent.search.random_strategy import RandomStrategy

    validator = Validator(templates=load_templates())
    with Catalog(tmp_path / "c.sqlite") as catalog:
        tiny = FractalSpace(n_blocks=(2, 3), n_columns=(1, 2), base_channels=(8,), activation=("relu", "gelu"),
                            element_order=(("conv", "bn", "act", "dropout"),))
        strategy = RandomStrategy(tiny)
        context = _context(catalog, template, [template_parent(template)])
        # Rounds until the space is spent: every variant once, none twice, then nothing more.
        drawn = []
        for _ in range(4):
            drawn += strategy.propose(context, 3)
        assert len(drawn) == len(tiny) == 8 == len({code_hash(p.source) for p in drawn})
        assert strategy.propose(context, 3) == []
        for proposal in drawn[:5]:
            assert validator.validate(proposal.source, proposal.change).ok, proposal.change
            assert proposal.strategy == "random" and proposal.parent == "template:fractalnet.py"
            assert read_params(proposal.source)["N_BLOCKS"] in tiny.n_blocks
    # Uniform: over many draws from the full space, each activation comes up about equally often.
    rng, space = random.Random(3), FractalSpace()
    counts = {}
    for _ in range(6000):
        activation = space.draw(rng)["ACTIVATION"]
        counts[activation] = counts.get(activation, 0) + 1
    assert set(counts) == set(space.activation) and max(counts.values()) / min(counts.values()) < 1.15


def test_random_draws_of_generators_are_valid_and_weighted_by_what_each_structure_holds():
    from nas_agent.space.generative import GenerativeSpace

    space = GenerativeSpace(hierarchies=((3072,), (1024, 3)), widths=(16, 32), depths=(1,), orders=("ar",))
    assert len(space) == 2 + 2 ** 2      # one level: 2 generators; two levels: 4
    rng = random.Random(0)
    draws = [space.draw(rng) for _ in range(3000)]
    two_levels = sum(len(d["LEVEL_SEQ"]) == 2 for d in draws) / len(draws)
    assert abs(two_levels - 4 / 6) < 0.03
    assert all(space.point_of(d) is not None and len({len(v) for v in d.values()}) == 1 for d in draws)
