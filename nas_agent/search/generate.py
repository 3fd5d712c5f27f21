"""The generator: render variants of a template into unique, contract-checked candidate files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from nas_agent.space.template import Template, render_tree
from nas_agent.validate.contract import check_contract
from nas_agent.candidate import code_hash


@dataclass(frozen=True)
class GeneratedCandidate:
    """One rendered variant: where it was written, its normalised-code hash and its parameters."""

    path: Path
    code_hash: str
    params: dict[str, Any]

    @property
    def stem(self) -> str:
        return self.path.stem


def candidate_filename(family: str, digest: str) -> str:
    return f"{family}-{digest[:8]}.py"


def render_variants(template: Template, variants: Iterable[dict[str, Any]]):
    """Yield (source, code_hash, params) for each variant, skipping ones whose normalised code repeats."""
    seen: set[str] = set()
    for params in variants:
        tree = render_tree(template.tree, params)
        verdict = check_contract(tree)
        if not verdict.ok:
            # The template itself is broken: every variant would fail the same way.
            raise ValueError(f"variant {params} breaks the contract: {verdict}")
        source = tree.code
        digest = code_hash(source)
        if digest in seen:
            continue
        seen.add(digest)
        yield source, digest, params


def generate_candidates(template: Template, variants: Iterable[dict[str, Any]], out_dir: str | Path,
                        on_written: Callable[[GeneratedCandidate], None] | None = None) -> list[GeneratedCandidate]:
    """Write each unique variant to `out_dir` as `<Family>-<hash8>.py`; existing files are kept."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for source, digest, params in render_variants(template, variants):
        path = out_dir / candidate_filename(template.family, digest)
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_text(source)
            tmp.replace(path)
        candidate = GeneratedCandidate(path, digest, params)
        written.append(candidate)
        if on_written:
            on_written(candidate)
    return written
