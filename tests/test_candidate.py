"""Parsing candidate source: Python's parser and a nesting bound stand before libcst's native parser."""

from __future__ import annotations

from pathlib import Path

import pytest

from nas_agent.candidate import MAX_NESTING, CandidateSyntaxError, parse_module, syntax_problem

REPO = Path(__file__).resolve().parents[1]


def test_real_model_code_is_far_below_the_nesting_bound():
    for path in [*REPO.glob("templates/*.py"), *REPO.glob("tests/candidates/*.py")]:
        assert syntax_problem(path.read_text()) is None, path
        assert parse_module(path.read_text()).code == path.read_text()


@pytest.mark.parametrize("source, words", [
    ("x = " + "-" * 97 + "1\n", None),           # 100 levels: the module, the assignment, 97 minus signs, the 1
    ("x = " + "-" * 200 + "1\n", "levels deep"),
    ("x = " + " or ".join(["a"] * 150) + "\n", "levels deep"),           # flat for Python, a binary chain for libcst
    ("x = " + "(" * 300 + "1" + ")" * 300 + "\n", "too many nested parentheses"),
    ("x = a" + ".b" * 5000 + "\n", "nested too deeply"),
    ("x = 1\x00\n", "null bytes"),
])
def test_sources_libcst_cannot_take_are_refused_before_it_sees_them(source, words):
    problem = syntax_problem(source)
    if words is None:
        assert problem is None and MAX_NESTING >= 100
    else:
        assert problem is not None and words in problem, problem
        with pytest.raises(CandidateSyntaxError):
            parse_module(source)
