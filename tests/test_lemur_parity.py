"""LEMUR parity on the real sample (../shared/data/lemur-sample): our data() against LEMUR's, side by side.

The oracle is tests/lemur_reference.py, an independent re-implementation of LEMUR's database build
(ab/nn/util/db/Write.py) and api.data() written from nn-dataset's source; it imports nothing of
nas_agent. Both read the same 38 real models and their real statistics records, quirks included.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from lemur_reference import build_database, data as lemur_data
from nas_agent.catalog import Catalog
from nas_agent.catalog.lemur import DATA_COLUMNS, data
from nas_agent.catalog.lemur_io import export_lemur, import_lemur

# Beside the checkout, as the CIFAR-10 copy (NAS_AGENT_LEMUR_SAMPLE points elsewhere).
SAMPLE = Path(os.environ.get("NAS_AGENT_LEMUR_SAMPLE",
                             Path(__file__).resolve().parents[2] / "shared" / "data" / "lemur-sample"))

QUERIES = [{}, {"only_best_accuracy": True}, {"nn": "AlexNet"}, {"nn": ("AlexNet", "ResNet")},
           {"epoch": 1}, {"task": "img-classification", "dataset": "cifar-10", "metric": "acc", "epoch": 5},
           {"only_best_accuracy": True, "nn": "FractalNet-000b91f6d44690e45b29060858c5db71"}, {"dataset": "mnist"}]


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """(our catalog of the imported sample, LEMUR's database built from the same folder)."""
    if not (SAMPLE / "stat" / "train").is_dir():
        pytest.fail(f"the real LEMUR sample is missing at {SAMPLE}")
    root = tmp_path_factory.mktemp("parity")
    build_database(SAMPLE, root / "lemur.db")
    with Catalog(root / "catalog.sqlite") as cat:
        import_lemur(cat, SAMPLE)
    return root / "catalog.sqlite", root / "lemur.db"


def _same(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    """Equal column for column: names, order, dtypes and every value (rows compared by their stat id)."""
    assert list(ours.columns) == list(theirs.columns)
    assert list(ours.dtypes) == list(theirs.dtypes)
    if ours.empty:
        return
    ours, theirs = (f.sort_values("id").reset_index(drop=True) for f in (ours, theirs))
    for column in ours.columns:
        assert ours[column].isna().tolist() == theirs[column].isna().tolist(), column
        assert ours[column].dropna().tolist() == theirs[column].dropna().tolist(), column


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: json.dumps(q) or "all")
def test_data_is_lemurs_on_the_whole_sample(both, query):
    catalog, lemur = both
    ours, theirs = data(catalog, **query), lemur_data(lemur, **query)
    _same(ours, theirs)
    if query == {}:
        assert list(ours.columns) == list(DATA_COLUMNS) and len(ours) == 3380 and ours.nn.nunique() == 38
        assert ours.duration.isna().sum() == 2089          # NULL where a record has no duration, never 0
        assert ours.id.is_unique
    # Rows come ordered by task, dataset, metric, nn and epoch, as LEMUR orders them.
    keys = ["task", "dataset", "metric", "nn", "epoch"]
    if not ours.empty:
        assert ours[keys].values.tolist() == sorted(ours[keys].values.tolist())


def test_max_rows_cuts_lemurs_order(both):
    catalog, lemur = both
    ours, theirs = data(catalog, max_rows=25), lemur_data(lemur, max_rows=25)
    assert len(ours) == len(theirs) == 25
    keys = ["task", "dataset", "metric", "nn", "epoch"]
    assert ours[keys].values.tolist() == theirs[keys].values.tolist()


def test_an_export_rebuilds_the_same_lemur_database(both, tmp_path):
    """Exported, the catalog is a folder LEMUR builds the very same data() from."""
    catalog, lemur = both
    with Catalog(catalog) as cat:
        summary = export_lemur(cat, tmp_path / "out")
    assert summary.records == 3380 and summary.models == 38
    build_database(tmp_path / "out", tmp_path / "again.db")
    _same(lemur_data(tmp_path / "again.db"), lemur_data(lemur))
    # Every code file LEMUR read came back byte for byte; no placeholder for code that was never there.
    for folder in ("nn", "metric", "transform"):
        for path in (tmp_path / "out" / folder).glob("*.py"):
            assert path.read_text() == (SAMPLE / folder / path.name).read_text()
    # And read back by nas-agent, it is the same catalog again.
    with Catalog(tmp_path / "again.sqlite") as cat:
        import_lemur(cat, tmp_path / "out")
    _same(data(tmp_path / "again.sqlite"), data(catalog))


def test_every_sample_model_validates_under_the_reviewed_profile_and_few_under_strict():
    """Code people wrote: the policy's findings are warnings under `reviewed`; the jail still runs it."""
    from nas_agent.candidate import Candidate
    from nas_agent.space.template import load_templates
    from nas_agent.validate import Validator

    files = sorted((SAMPLE / "nn").glob("*.py"))
    assert len(files) == 38
    strict, reviewed = Validator(templates=load_templates()), Validator(templates=load_templates(), profile="reviewed")
    verdicts = {}
    for path in files:
        candidate = Candidate.parse(path.read_text())
        verdicts[path.stem] = (strict.check_static(candidate, path.name), reviewed.check_static(candidate, path.name))
    assert all(r.ok and r.profile == "reviewed" for _, r in verdicts.values()), \
        {n: r.verdict.reason for n, (_, r) in verdicts.items() if not r.ok}
    assert sum(s.ok for s, _ in verdicts.values()) == 3
    # What strict refused is what reviewed reports, finding by finding.
    for name, (s, r) in verdicts.items():
        assert s.ok == (not r.warnings), name
        if not s.ok:
            assert s.verdict.stage == "policy" and s.verdict.reason in r.warnings, name
    assert any("numpy" in w for w in verdicts["FractalNet"][1].warnings)


def test_a_lemur_model_trained_again_is_a_new_trial_of_the_model_under_its_name(tmp_path):
    """Regression: training a model already imported failed with "code hash … already catalogued"."""
    from nas_agent.config import load_config
    from nas_agent.search.trainer import read_candidate, register
    from nas_agent.validate import validator_for

    config = load_config("paper").with_overrides({"catalog": str(tmp_path / "c.sqlite")})
    lemur_file = SAMPLE / "nn" / "FractalNet-193da809c433ed8ed99632b637d6c17f.py"
    with Catalog(tmp_path / "c.sqlite") as cat:
        # Not imported yet: the file's own LEMUR name, no second hash appended; its profile recorded.
        validator = validator_for(config, catalog=cat, allow_known=True, smoke=False, profile="reviewed")
        name = register(cat, read_candidate(lemur_file, validator), config, origin="manual")
        assert name == lemur_file.stem and cat.get_model(name)["profile"] == "reviewed"
        # AlexNet, imported first: training its file again files the trial under "AlexNet".
        import_lemur(cat, _only(SAMPLE, "AlexNet", tmp_path / "alexnet"))
        again = register(cat, read_candidate(SAMPLE / "nn" / "AlexNet.py", validator), config, origin="manual")
        assert again == "AlexNet" and len(cat.models()) == 2


def _only(sample: Path, nn: str, folder: Path) -> Path:
    """A copy of the sample holding one model and its statistics."""
    import shutil

    for part in ("metric", "transform"):
        shutil.copytree(sample / part, folder / part)
    (folder / "nn").mkdir(parents=True)
    shutil.copy(sample / "nn" / f"{nn}.py", folder / "nn")
    config = f"img-classification_cifar-10_acc_{nn}"
    shutil.copytree(sample / "stat" / "train" / config, folder / "stat" / "train" / config)
    return folder
