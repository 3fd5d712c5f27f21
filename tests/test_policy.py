"""The static safety policy: hostile snippets are rejected at `policy`, model code passes."""

from __future__ import annotations

from pathlib import Path

import pytest

from nas_agent.space import FractalSpace, load_template
from nas_agent.validate.policy import PolicyConfig, check_policy

from conftest import boundary_variants

CANDIDATES = Path(__file__).parent / "candidates"

HOSTILE = {
    "os.system": "import os\nos.system('rm -rf /')",
    "subprocess": "import subprocess\nsubprocess.run(['ls'])",
    "builtins dict": "__builtins__['__import__']('os')",
    "dunder import": "__import__('os').system('x')",
    "eval": "x = eval('1 + 1')",
    "exec": "exec('import os')",
    "compile": "code = compile('1', 'f', 'eval')",
    "open for writing": "with open('/tmp/x', 'w') as f:\n    f.write('x')",
    "torch.save": "import torch\ntorch.save({}, 'weights.pt')",
    "aliased torch.load": "import torch as t\nstate = t.load('weights.pt')",
    "from torch import save": "from torch import save",
    "torch.hub": "import torch\ntorch.hub.load('x', 'y')",
    "socket": "import socket\nsocket.create_connection(('example.org', 80))",
    "threading": "import threading\nthreading.Thread(target=print).start()",
    "multiprocessing": "import multiprocessing",
    "torch.multiprocessing": "import torch\ntorch.multiprocessing.spawn(print)",
    "pickle": "import pickle",
    "shutil": "import shutil",
    "pathlib": "from pathlib import Path\nPath('x').write_text('y')",
    "importlib": "import importlib\nimportlib.import_module('os')",
    "ctypes": "import ctypes",
    "sys": "import sys\nsys.modules['os']",
    "subclasses walk": "().__class__.__base__.__subclasses__()",
    "globals": "g = globals()",
    "vars": "v = vars()",
    "getattr computed": "import torch\nf = getattr(torch, 'sa' + 've')",
    "getattr dunder": "getattr(object, '__subclasses__')",
    "setattr private": "setattr(x, '_secret', 1)",
    "frame walk": "def f():\n    pass\ng = f.__code__",
    "generator frame": "def g():\n    yield 1\nframe = g().gi_frame.f_globals",
    "breakpoint": "breakpoint()",
    "input builtin": "name = input()",
    "private torch internals": "import torch\ntorch._C._set_something(1)",
    "aliased private internals": "import torch as t\nt._C._set_something(1)",
    "private via from-import alias": "from torch import nn as q\nq._private_thing",
    "relative import": "from . import secrets",
    "star import": "from torch import *",
    "default arg smuggling": "def f(e=eval):\n    return e('1')",
    "cpp extension": "import torch.utils.cpp_extension",
    # Gaps a hostile LLM found in the deny-list, each closed since.
    "fullwidth eval (NFKC)": "x = \uff45\uff56\uff41\uff4c('1')",
    "fullwidth torch.save": "import torch\ntorch.\uff53\uff41\uff56\uff45({}, 'w.pt')",
    "builtin bound in dead code": "if False:\n    eval = None\nx = eval('1')",
    "builtin declared global": "def f():\n    global exec\n    exec('import os')",
    "getattr as a value": "ga = getattr\nf = ga(object, 'x')",
    "getattr through reduce": "import functools\nf = functools.reduce(getattr, ['a', 'b'], object)",
    "getattr with star args": "args = (object, '__subclasses__')\nf = getattr(*args)",
    "torch.os re-export": "import torch\ntorch.os.system('id')",
    "torch.sys re-export": "import torch\nm = torch.sys.modules",
    "torch.builtins re-export": "import torch\nf = torch.builtins.open",
    "torch.importlib re-export": "import torch\nm = torch.importlib.import_module('os')",
    "torch.inspect re-export": "import torch\ns = torch.inspect.stack()",
    "distributed through nn.parallel": "import torch\nd = torch.nn.parallel.distributed.dist",
    "typing.sys re-export": "import typing\nm = typing.sys.modules",
    "walrus alias": "import torch\ny = (t := torch).load('w.pt')",
    "module in a list": "import torch\nmods = [torch]\nmods[0].load('w.pt')",
    "module as an argument": "import torch\ndef f(m):\n    return m.load('w.pt')\nf(torch)",
    "private attribute on a local": "def f(t):\n    return t._cdata",
    "dunder in a match pattern": "match e:\n    case object(__class__=c):\n        pass",
    "private in a match pattern": "match e:\n    case object(_x=c):\n        pass",
    "format reaching attributes": "s = '{0.__traceback__.tb_frame}'.format(e)",
    "format on a computed string": "s = ('{0.' + 'x}').format(e)",
    "format_map": "s = '{a.b}'.format_map(d)",
    "format reaching attributes from a spec": "s = '{:{0.__class__}}'.format(e)",
    "string annotation": "def f(x: \"__import__('os').system('id')\"):\n    pass",
    "module attribute assignment": "import torch.nn.functional as F\nF.cross_entropy = lambda *a: 0",
    "class attribute assignment": "from torch import Tensor\nTensor.argmax = lambda self, dim=None: self",
    "nested module assignment": "import torch\ntorch.nn.Module.__call__ = None",
    "augmented module assignment": "import math\nmath.pi += 1",
    "setattr on a module": "import torch\nsetattr(torch, 'load', None)",
    "deleting from a module": "import torch\ndel torch.nn.functional.relu",
    "aten kernel replaced": "import torch\nlib = torch.library.Library('aten', 'IMPL')",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_code_is_rejected_at_policy_with_a_line(name):
    verdict = check_policy(HOSTILE[name])
    assert not verdict.ok, name
    assert verdict.stage == "policy"
    assert verdict.reason.startswith("line ")


@pytest.mark.parametrize("source", [
    "def forward(self, input):\n    return input",       # a parameter that shadows a builtin is fine
    "import torch.nn as nn\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()",
    "from torch import nn\nimport torch.nn.functional as F\ny = F.relu",
    "from typing import Optional\nimport math\nz = math.sqrt(2)",
    "x = layer.open",                                    # an attribute named like a builtin
    "import torch\nn = torch.nn.utils.clip_grad_norm_",
    "h = getattr(module, 'weight')",
    "import collections\nok = isinstance([], collections.abc.Sequence)",   # a submodule of an allowed one
    "import torch\nt = torch\ny = t.zeros(1)",                 # a plain alias of a module
    "import torch\nuse = torch.cuda.is_available()",
    "def f(self):\n    return self._cache",                   # private attributes of the model itself
    "s = '{} of {:>4}'.format(1, 2)",                        # plain format fields
    "s = '{:.2f} at {:{w}.3}'.format(0.5, 1.5, w=8)",        # a precision is not an attribute
    "match x:\n    case [a, b]:\n        pass",
    "from torch import nn\ndef forward(self, x: int) -> int:\n    return x",
    "import torch\nacts = {'relu': torch.relu}\nf = acts['relu']",
])
def test_model_code_passes(source):
    assert check_policy(source).ok, check_policy(source)


def test_huge_source_is_rejected_before_parsing():
    verdict = check_policy("x = 1\n" * 50_000, PolicyConfig(max_source_bytes=100_000))
    assert verdict.stage == "policy" and "byte limit" in verdict.reason


def test_syntax_errors_are_parse_rejections():
    assert check_policy("def (:\n").stage == "parse"


def _policy_rejects(variants) -> list:
    template = load_template("fractalnet.py")
    return [(params, verdict) for params in variants if not (verdict := check_policy(template.render(params))).ok]


def test_boundary_variants_and_test_candidates_pass():
    assert _policy_rejects(boundary_variants(FractalSpace(), k=10, seed=5)) == []
    for path in CANDIDATES.glob("*.py"):
        assert check_policy(path.read_text()).ok, path


@pytest.mark.slow
def test_200_template_variants_pass():
    assert _policy_rejects(FractalSpace().sample(200, seed=5)) == []


@pytest.mark.parametrize("chain", ["torch.fx.symbolic_trace", "torch.utils.benchmark.Timer", "torch.func.vmap",
                                   "torch.testing.assert_close", "torch.nn.parallel.distributed.dist"])
def test_modules_outside_the_allow_list_are_refused_loaded_or_not(chain):
    """Every module object an attribute chain passes through must be listed; a lazily loaded one too."""
    verdict = check_policy(f"import torch\nimport torch.nn as nn\nx = {chain}\n")
    assert not verdict.ok and "which candidates may not use" in verdict.reason, (chain, verdict)


@pytest.mark.parametrize("chain", ["torch.linalg.norm", "torch.fft.rfft", "torch.utils.checkpoint.checkpoint",
                                   "nn.utils.parametrize.register_parametrization", "torch.cuda.amp.autocast"])
def test_the_modules_model_code_needs_are_allowed(chain):
    assert check_policy(f"import torch\nimport torch.nn as nn\nx = {chain}\n").ok, chain


@pytest.mark.parametrize("chain", ["torch.compile", "torch.jit.script", "torch.onnx.export", "torch.export.export"])
def test_compilers_and_exporters_are_refused(chain):
    """They spawn compilers or load native code (the jail refuses both at run time; the policy says so first)."""
    verdict = check_policy(f"import torch\nx = {chain}\n")
    assert not verdict.ok and "not allowed" in verdict.reason, (chain, verdict)
    assert check_policy("import torch\nx = torch.compiled_with_cxx11_abi\n").ok  # a prefix is not a match
