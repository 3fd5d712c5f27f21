"""The template space and generator: size, uniqueness, contract, and real forward passes."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
import torch

from nas_agent.search.generate import generate_candidates
from nas_agent.space import FractalSpace, TemplateError, load_template, read_params, render_params
from nas_agent.validate import check_contract, code_hash

from conftest import boundary_variants


@pytest.fixture(scope="module")
def template():
    return load_template("fractalnet.py")


def test_space_holds_at_least_the_papers_1200_variants():
    space = FractalSpace()
    assert len(space) >= 1200
    assert len(space) == len({repr(v) for v in space})  # every index decodes to a different variant


def test_count_command_prints_the_space_size():
    out = subprocess.run([sys.executable, "-m", "nas_agent.cli", "generate", "--count"],
                         capture_output=True, text=True, check=True).stdout
    assert int(out.strip()) == len(FractalSpace())


def _unique_and_within_the_contract(template, variants, folder) -> None:
    written = generate_candidates(template, variants, folder)
    files = sorted(folder.glob("*.py"))
    assert len(written) == len(files) == len(variants)
    hashes = set()
    for path in files:
        source = path.read_text()
        verdict = check_contract(source)
        assert verdict.ok, f"{path.name}: {verdict}"
        hashes.add(code_hash(source))
    assert len(hashes) == len(variants)


def test_the_boundary_variants_are_unique_files_within_the_contract(template, tmp_path):
    _unique_and_within_the_contract(template, boundary_variants(FractalSpace(), k=12, seed=3), tmp_path)


@pytest.mark.slow
def test_1200_generated_files_are_unique_and_pass_the_contract(template, tmp_path):
    _unique_and_within_the_contract(template, FractalSpace().sample(1200, seed=3), tmp_path)


def test_generation_is_deterministic_for_a_seed(template, tmp_path):
    a = [c.code_hash for c in generate_candidates(template, FractalSpace().sample(20, seed=7), tmp_path / "a")]
    b = [c.code_hash for c in generate_candidates(template, FractalSpace().sample(20, seed=7), tmp_path / "b")]
    c = [c.code_hash for c in generate_candidates(template, FractalSpace().sample(20, seed=8), tmp_path / "c")]
    assert a == b
    assert a != c


def test_rendering_rewrites_only_the_parameter_region(template):
    values = {"N_BLOCKS": 2, "ELEMENT_ORDER": ("bn", "act", "conv", "dropout"), "ACTIVATION": "gelu"}
    source = template.render(values)
    assert read_params(source) == {**template.defaults, **values}
    changed = [(a, b) for a, b in zip(template.source.splitlines(), source.splitlines()) if a != b]
    assert len(changed) == 3
    assert all(line.split("=")[0].strip() in values for line, _ in changed)


def test_unknown_parameter_is_an_error(template):
    with pytest.raises(TemplateError, match="NOT_A_PARAM"):
        render_params(template.source, {"NOT_A_PARAM": 1})


def _load(path):
    spec = importlib.util.spec_from_file_location(path.stem.replace("-", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sampled_variants_build_and_run_forward_and_backward(template, tmp_path):
    torch.manual_seed(0)
    for candidate in generate_candidates(template, FractalSpace().sample(10, seed=11), tmp_path):
        module = _load(candidate.path)
        net = module.Net((1, 3, 32, 32), (10,), {"lr": 0.01, "momentum": 0.9, "dropout": 0.1}, "cpu")
        x = torch.randn(4, 3, 32, 32)
        net.train()
        out = net(x)
        assert out.shape == (4, 10)
        out.sum().backward()
        net.eval()
        with torch.no_grad():
            assert torch.isfinite(net(x)).all()
        n_convs = sum(isinstance(m, torch.nn.Conv2d) for m in net.modules())
        p = candidate.params
        assert n_convs == p["N_BLOCKS"] * (2 ** p["N_COLUMNS"] - 1)  # the fractal expansion's conv count


def test_global_drop_path_trains_one_column(template, tmp_path):
    """With global drop-path always on, a batch runs exactly one column: fewer convs fire."""
    path = tmp_path / "global.py"
    path.write_text(template.render({"N_BLOCKS": 1, "N_COLUMNS": 3, "GLOBAL_DROP_PATH": 1.0}))
    net = _load(path).Net((1, 3, 32, 32), (10,), {"dropout": 0.0}, "cpu")
    calls = []
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(lambda *a: calls.append(1))
    torch.manual_seed(1)
    seen = set()
    for _ in range(30):
        calls.clear()
        net.train()(torch.randn(2, 3, 32, 32))
        seen.add(len(calls))
    assert seen <= {1, 2, 4} and len(seen) > 1  # column k has 2**k convs
    calls.clear()
    net.eval()(torch.randn(2, 3, 32, 32))
    assert len(calls) == 7  # evaluation uses every column


def test_the_papers_space_is_expressible_and_its_extremes_build(template, tmp_path):
    """conf/paper-space.toml: blocks 1-5, columns 1-7, widths 64-512, element sequences of length 2-4 with repetition."""
    from nas_agent.config import load_config
    from nas_agent.space.fractal import element_sequences

    space = FractalSpace.from_config(load_config("paper-space").space)
    sequences = element_sequences(("conv", "bn", "act", "dropout"), (2, 3, 4))
    assert len(sequences) == 219 and ("conv", "conv") in sequences and ("bn", "act") not in sequences
    assert len(space) == 5 * 7 * 4 * 219 == 30_660
    extremes = [{**space.variant(0), "N_BLOCKS": 1, "N_COLUMNS": 7, "ELEMENT_ORDER": ("conv", "conv", "conv", "conv")},
                {**space.variant(0), "N_BLOCKS": 5, "N_COLUMNS": 1, "BASE_CHANNELS": 512,
                 "ELEMENT_ORDER": ("dropout", "bn", "conv")}]
    torch.manual_seed(0)
    for candidate in generate_candidates(template, extremes, tmp_path):
        assert check_contract(candidate.path.read_text()).ok
        module = _load(candidate.path)
        net = module.Net((1, 3, 32, 32), (10,), {"lr": 0.01, "momentum": 0.9, "dropout": 0.2}, "cpu")
        assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    deepest = module.Net((1, 3, 32, 32), (10,), {"dropout": 0.2}, "cpu")
    widths = [m.out_channels for m in deepest.modules() if isinstance(m, torch.nn.Conv2d)]
    assert max(widths) == 512     # the paper's widest blocks, past the template's default cap of 256
    with pytest.raises(ValueError, match="element_order or element_lengths"):
        FractalSpace.from_config({"element_lengths": [2], "element_order": [["conv", "bn"]]})
