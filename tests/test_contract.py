"""Static contract check and normalised-code hashing."""

from __future__ import annotations

from pathlib import Path

import pytest

from nas_agent.validate import check_contract, code_hash

CANDIDATES = Path(__file__).parent / "candidates"
GOOD = (CANDIDATES / "nan_loss.py").read_text()
TEMPLATES = Path(__file__).resolve().parents[1] / "templates"


def test_templates_and_test_candidates_honour_the_contract():
    templates = sorted(Path("templates").glob("*.py"))
    assert {p.name for p in templates} >= {"fractalnet.py", "resnet9.py"}
    for path in [*templates, *CANDIDATES.glob("*.py")]:
        assert check_contract(path.read_text()).ok, path


@pytest.mark.parametrize("edit, stage, words", [
    (lambda s: s.replace("def forward(self, x):", "def forward(self, x)"), "parse", "syntax error"),
    (lambda s: s.replace("class Net(nn.Module)", "class Model(nn.Module)"), "contract", "class Net"),
    (lambda s: s.replace("class Net(nn.Module)", "class Net(object)"), "contract", "subclass nn.Module"),
    (lambda s: s.replace("def supported_hyperparameters", "def hyperparameters"), "contract", "supported_hyperparameters"),
    (lambda s: s.replace("in_shape, out_shape, prm, device", "in_shape, out_shape, prm"), "contract", "__init__"),
    (lambda s: s.replace("def learn(self, train_data)", "def learn(self, data, epochs)"), "contract", "learn"),
    (lambda s: s.replace("def train_setup", "def setup"), "contract", "train_setup"),
    (lambda s: s.replace("def forward(self, x)", "def forward(self)"), "contract", "forward"),
])
def test_contract_violations_are_rejected_with_a_reason(edit, stage, words):
    verdict = check_contract(edit(GOOD))
    assert not verdict.ok
    assert verdict.stage == stage
    assert words in verdict.reason


def test_a_generator_must_hand_the_scorer_its_per_value_logits():
    generator = Path("templates/fractal_gen.py").read_text()
    assert check_contract(generator).ok
    missing = check_contract(generator.replace("def value_logits(self, x):", "def logits(self, x):"))
    assert (missing.ok, missing.stage, "value_logits(self, x)" in missing.reason) == (False, "contract", True)
    wrong = check_contract(generator.replace("def value_logits(self, x):", "def value_logits(self):"))
    assert not wrong.ok and "must take (self, x)" in wrong.reason
    # A classifier needs no such method: the rule follows the declared TASK.
    assert check_contract(GOOD).ok and "value_logits" not in GOOD


def test_code_hash_ignores_comments_docstrings_and_formatting():
    reformatted = GOOD.replace('"""Test candidate', '"""Another docstring entirely').replace(
        "        super().__init__()", "        # a new comment\n\n        super( ).__init__( )  # trailing")
    assert reformatted != GOOD
    assert code_hash(reformatted) == code_hash(GOOD)


def test_code_hash_sees_real_changes():
    assert code_hash(GOOD.replace("nn.Conv2d(in_shape[1], 8", "nn.Conv2d(in_shape[1], 16")) != code_hash(GOOD)


@pytest.mark.parametrize("family", ["../x", "a/b", "my_model", "-lead", "Ｆractal", "", "x" * 81, "a b"])
def test_a_family_that_could_not_name_a_folder_is_refused(family):
    """FAMILY names the model and its job folders: only letters, digits and hyphens (not '../', '_', spaces)."""
    source = (TEMPLATES / "fractalnet.py").read_text().replace('FAMILY = "FractalNet"', f"FAMILY = {family!r}")
    verdict = check_contract(source)
    assert verdict.stage == "contract" and "FAMILY" in verdict.reason, (family, verdict)


def test_file_names_become_valid_families_and_job_folders_stay_inside_their_root(tmp_path):
    from nas_agent.search.trainer import job_folder
    from nas_agent.space.template import family_from_stem, is_valid_family

    for stem, family in [("my_model", "my-model"), ("[red]odd", "red-odd"), ("___", "Net"), ("ResNet", "ResNet")]:
        assert family_from_stem(stem) == family and is_valid_family(family)
    assert job_folder(tmp_path, "img-classification_cifar-10_acc_Net-1a2b3c4d~00ff00ff").parent == tmp_path
    for key in ("..", "a/../../b", "", "a\\b"):
        with pytest.raises(ValueError):
            job_folder(tmp_path, key)
