"""The validation pipeline: hashes that catch copies, structure that catches rewrites, no false rejections."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nas_agent.catalog import Catalog, ModelRecord
from nas_agent.config import ConfigError, from_dict, load_config
from nas_agent.search.generate import render_variants
from nas_agent.space import FractalSpace, load_template, load_templates
from nas_agent.validate import SmokeLimits, Validator, code_hash, validator_for

from conftest import boundary_variants

SMOKE = SmokeLimits(seconds=30)

BASE = '''"""A small network."""
import torch
import torch.nn as nn
import torch.nn.functional as F


def supported_hyperparameters():
    return {"lr", "momentum", "dropout"}


class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.device = device
        self.conv = nn.Conv2d(in_shape[1], 8, 3, padding=1)
        self.drop = nn.Dropout(prm["dropout"])
        self.head = nn.Linear(8, out_shape[0])

    def forward(self, x):
        # features, then the classifier
        h = F.relu(self.conv(x))
        pooled = h.mean((2, 3))
        return self.head(self.drop(pooled))

    def train_setup(self, prm):
        self.to(self.device)
        self.criteria = (nn.CrossEntropyLoss(),)
        self.optimizer = torch.optim.SGD(self.parameters(), lr=prm["lr"], momentum=prm["momentum"])

    def learn(self, train_data):
        self.train()
        for inputs, labels in train_data:
            self.optimizer.zero_grad()
            self.criteria[0](self(inputs), labels).backward()
            self.optimizer.step()
'''

# The same code: renamed locals and forward's argument (the contract fixes the other signatures),
# moved comments, other layout and docstrings.
RENAMED = '''import torch
import torch.nn as nn
import torch.nn.functional as F
def supported_hyperparameters():
    return {"lr", "momentum", "dropout"}
class Net(nn.Module):
    """Documented differently."""
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.device = device   # moved comment
        self.conv = nn.Conv2d(in_shape[1], 8, 3,
                              padding=1)
        self.drop = nn.Dropout(prm["dropout"])
        self.head = nn.Linear(8, out_shape[0])
    def forward(self, images):
        feats = F.relu(self.conv(images))
        avg = feats.mean((2, 3))  # the classifier follows
        return self.head(self.drop(avg))
    def train_setup(self, prm):
        self.to(self.device)
        self.criteria = (nn.CrossEntropyLoss(),)
        self.optimizer = torch.optim.SGD(self.parameters(), lr=prm["lr"], momentum=prm["momentum"])
    def learn(self, train_data):
        self.train()
        for xs, ys in train_data:
            self.optimizer.zero_grad()
            self.criteria[0](self(xs), ys).backward()
            self.optimizer.step()
'''

# The same layers written differently: nn.Sequential, nn.ReLU, other attribute names and order.
REWRITTEN = BASE.replace('''        self.conv = nn.Conv2d(in_shape[1], 8, 3, padding=1)
        self.drop = nn.Dropout(prm["dropout"])
        self.head = nn.Linear(8, out_shape[0])''', '''        self.classifier = nn.Sequential(nn.Dropout(prm["dropout"]), nn.Linear(8, out_shape[0]))
        self.features = nn.Sequential(nn.Conv2d(in_shape[1], 8, kernel_size=3, stride=1, padding=1), nn.ReLU())''').replace(
    '''        h = F.relu(self.conv(x))
        pooled = h.mean((2, 3))
        return self.head(self.drop(pooled))''', '''        return self.classifier(torch.mean(self.features(x), dim=(2, 3)))''')


def _hash_differs(a: str, b: str) -> bool:
    return code_hash(a) != code_hash(b)


def test_code_hash_ignores_comments_layout_docstrings_and_local_names():
    assert code_hash(RENAMED) == code_hash(BASE)


def test_code_hash_tells_different_networks_apart():
    assert _hash_differs(BASE, BASE.replace("nn.Conv2d(in_shape[1], 8", "nn.Conv2d(in_shape[1], 16").replace(
        "nn.Linear(8", "nn.Linear(16"))
    assert _hash_differs(BASE, BASE.replace("F.relu", "F.gelu"))
    assert _hash_differs(BASE, BASE.replace("self.conv =", "self.conv2 =").replace("self.conv(", "self.conv2("))


def test_code_hash_keeps_names_that_callers_can_see():
    two_args = "def f(a, b):\n    return a - b\n\nprint(f(b=1, a=2))\n"
    swapped = "def f(b, a):\n    return b - a\n\nprint(f(b=1, a=2))\n"  # keyword callers see the difference
    assert _hash_differs(two_args, swapped)
    closure = "def outer(n):\n    def inner(k):\n        return n + k\n    return inner\n"
    renamed = "def outer(m):\n    def inner(j):\n        return m + j\n    return inner\n"
    assert code_hash(closure) == code_hash(renamed)
    shadow = "def outer(n):\n    def inner(k):\n        return k + k\n    return inner\n"
    assert _hash_differs(closure, shadow)  # a free variable is not a local of the inner function


@pytest.mark.slow
def test_struct_hash_catches_the_same_layers_written_differently(tmp_path):
    validator = Validator(smoke=SMOKE, workdir=tmp_path)
    base = validator.validate(BASE, "base.py")
    assert base.ok and base.struct_hash and base.n_params == 8 * 3 * 9 + 8 + 8 * 10 + 10
    rewritten = validator.validate(REWRITTEN, "rewritten.py")
    assert rewritten.code_hash != base.code_hash  # different code ...
    assert rewritten.struct_hash == base.struct_hash  # ... the same network
    assert rewritten.verdict.stage == "duplicate" and rewritten.duplicate_of == "base.py"

    other = Validator(smoke=SMOKE, workdir=tmp_path)
    for changed in (BASE.replace("F.relu", "F.gelu"), BASE.replace("padding=1", "padding=2"),
                    BASE.replace('nn.Dropout(prm["dropout"])', "nn.Dropout(0.5)")):
        result = other.validate(changed, "changed.py")
        assert result.ok, result.verdict
        assert result.struct_hash != base.struct_hash


def _catalog_with(path: Path, source: str, struct_hash: str | None) -> Catalog:
    catalog = Catalog(path)
    catalog.add_model(ModelRecord(name="img-classification_cifar-10_acc_Net-known", code=source, family="Net",
                                  task="img-classification", dataset="cifar-10", metric="acc",
                                  code_hash=code_hash(source), template_params={}, parent=None, origin="manual",
                                  struct_hash=struct_hash))
    return catalog


def test_duplicates_are_looked_up_in_the_catalog(tmp_path):
    with _catalog_with(tmp_path / "c.sqlite", BASE, None) as catalog:
        result = Validator(catalog=catalog).validate(RENAMED, "renamed.py")
        assert result.verdict.stage == "duplicate"
        assert result.duplicate_of == "img-classification_cifar-10_acc_Net-known"
        # Training the same file again is not a rejection: it resumes the known model.
        known = Validator(catalog=catalog, allow_known=True).validate(RENAMED, "renamed.py")
        assert known.ok and known.known_as == "img-classification_cifar-10_acc_Net-known"


def test_an_in_run_twin_is_named_by_the_model_it_became_not_by_a_label_that_repeats():
    validator = Validator()
    first = validator.validate(BASE, "proposal 0")      # every LLM call numbers its answers from 0
    assert first.ok
    assert validator.validate(RENAMED, "proposal 1").duplicate_of == "proposal 0"   # not registered yet
    validator.registered_as(first, "img-classification_cifar-10_acc_Net-first")
    again = validator.validate(RENAMED, "proposal 0")   # a later call's answer 0, the same network
    assert again.verdict.stage == "duplicate" and again.duplicate_of == "img-classification_cifar-10_acc_Net-first"


@pytest.mark.slow
def test_structural_duplicates_are_looked_up_in_the_catalog(tmp_path):
    first = Validator(smoke=SMOKE).validate(BASE, "base.py")
    with _catalog_with(tmp_path / "c.sqlite", BASE, first.struct_hash) as catalog:
        result = Validator(catalog=catalog, smoke=SMOKE).validate(REWRITTEN, "rewritten.py")
    assert result.verdict.stage == "duplicate" and result.duplicate_of.endswith("Net-known")


def _rejected_among(variants) -> list:
    template = load_template("templates/fractalnet.py")
    validator = Validator(templates=load_templates())
    results = [validator.validate(source, str(params)) for source, _, params in render_variants(template, variants)]
    assert len(results) == len(variants)
    return [r for r in results if not r.ok]


def test_no_false_rejections_on_the_boundary_variants():
    assert _rejected_among(boundary_variants(FractalSpace.from_config({}), k=10)) == []


@pytest.mark.slow
def test_no_false_rejections_on_1200_generated_variants():
    assert _rejected_among(FractalSpace.from_config({}).sample(1200, seed=0)) == []


@pytest.mark.slow
def test_generated_variants_pass_the_smoke_run_including_the_largest(tmp_path):
    template = load_template("templates/fractalnet.py")
    space = FractalSpace.from_config({})
    variants = [space.variant(0), space.variant(len(space) - 1), *space.sample(2, seed=1)]
    validator = Validator(smoke=SmokeLimits(seconds=60), templates=load_templates(), workdir=tmp_path)
    for source, _, params in render_variants(template, variants):
        result = validator.validate(source, str(params))
        assert result.ok, (params, result.verdict)
        assert result.flops_per_sample > 0 and result.n_params > 0


def test_a_template_file_may_change_only_its_editable_regions():
    template = load_template("templates/fractalnet.py")
    validator = Validator(templates=load_templates())
    edited = template.render({"N_COLUMNS": 2})
    assert validator.validate(edited, "edited.py").ok
    inside = edited.replace("nn.BatchNorm2d(channels)", "nn.GroupNorm(1, channels)", 1)  # the element region
    assert inside != edited and Validator(templates=load_templates()).validate(inside, "inside.py").ok
    outside = edited.replace("self.head = nn.Linear(channels, out_shape[0])",
                             "self.head = nn.Linear(channels, out_shape[0], bias=False)")
    assert outside != edited
    result = Validator(templates=load_templates()).validate(outside, "outside.py")
    assert result.verdict.stage == "contract"
    assert "outside the editable regions" in result.verdict.reason


def test_policy_section_of_the_config(tmp_path):
    uses_numpy = BASE.replace("import torch\n", "import torch\nimport numpy\n", 1)
    strict = validator_for(load_config(), smoke=False)
    assert strict.validate(uses_numpy, "np.py").verdict.stage == "policy"
    cfg = from_dict({"policy": {"extra_imports": ["numpy"], "max_source_bytes": 200}})
    relaxed = validator_for(cfg, smoke=False)
    assert relaxed.policy.import_allowed("numpy")
    assert relaxed.validate(uses_numpy, "np.py").verdict.reason.startswith("source is")  # 200-byte cap
    with pytest.raises(ConfigError, match="policy"):
        from_dict({"policy": {"allowed": ["os"]}})
    with pytest.raises(ConfigError, match="max_gflops"):
        from_dict({"validate": {"max_gflops": 0}})


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "nas_agent.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_validate_command_exit_codes_and_json(tmp_path):
    files = tmp_path / "files"  # not the working folder: `python -m` would import a copy.py found there
    files.mkdir()
    good, copy, bad = files / "good.py", files / "copy.py", files / "bad.py"
    good.write_text(BASE)
    copy.write_text(RENAMED)
    bad.write_text(BASE.replace("import torch\n", "import os\nimport torch\n", 1))
    ok = _cli("validate", good, "--smoke", "--catalog", tmp_path / "none.sqlite", cwd=tmp_path)
    assert ok.returncode == 2 and "no catalog" in ok.stderr  # an explicit catalog must exist
    ok = _cli("validate", good, "--smoke", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "1 of 1 passed" in ok.stdout
    mixed = _cli("validate", good, copy, bad, "--json", cwd=tmp_path)
    assert mixed.returncode == 1
    rows = [json.loads(line) for line in mixed.stdout.splitlines()]
    assert [r["file"] for r in rows] == [str(good), str(copy), str(bad)]
    assert {k for r in rows for k in r} >= {"file", "ok", "stage", "reason", "code_hash", "struct_hash"}
    assert [r["stage"] for r in rows] == [None, "duplicate", "policy"]
    assert rows[1]["code_hash"] == rows[0]["code_hash"]
    assert rows[2]["reason"].startswith("line 2: import of os")
