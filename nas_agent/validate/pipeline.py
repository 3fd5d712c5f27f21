"""The validation pipeline: every candidate, from any source, passes the same stages in the same order.

    parse -> policy -> contract (and template regions) -> duplicate (code_hash) -> smoke -> duplicate (struct_hash)

The static stages run in the driver on the syntax tree; the smoke run is the only stage
that executes candidate code, and it does so in the sandboxed child. Duplicates are
looked up in this batch and in the catalog, whose hash columns are indexed.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from nas_agent.candidate import Candidate, CandidateSyntaxError
from nas_agent.space.template import Template, changed_outside_regions, has_regions
from nas_agent.tasks import GENERATION_OUT_SHAPE, is_generative
from nas_agent.validate.contract import check_contract
from nas_agent.validate.policy import PolicyConfig, check_policy, check_size, policy_findings
from nas_agent.validate.smoke import SmokeLimits, smoke_test
from nas_agent.validate.verdict import Verdict


@dataclass(frozen=True)
class Validation:
    """One candidate's verdict with the facts found on the way (hashes, size, cost) and the parsed candidate."""

    label: str
    verdict: Verdict
    code_hash: str | None = None
    struct_hash: str | None = None
    n_params: int | None = None
    flops_per_sample: int | None = None
    duplicate_of: str | None = None      # the catalog model or earlier file it repeats
    known_as: str | None = None          # allow_known: the catalog model with this very code
    smoke_seconds: float | None = None
    candidate: Candidate | None = field(default=None, repr=False, compare=False)   # None: it did not parse
    profile: str = "strict"              # the policy profile it was checked under
    warnings: tuple[str, ...] = ()       # reviewed profile: the policy's findings, reported, not refused

    @property
    def ok(self) -> bool:
        return self.verdict.ok

    def as_dict(self) -> dict:
        return {"file": self.label, "ok": self.verdict.ok, "stage": self.verdict.stage,
                "reason": self.verdict.reason, "code_hash": self.code_hash, "struct_hash": self.struct_hash,
                "n_params": self.n_params, "flops_per_sample": self.flops_per_sample,
                "duplicate_of": self.duplicate_of, "profile": self.profile, "warnings": list(self.warnings)}


@dataclass
class Validator:
    """Validates candidates against the policy, the contract, the templates, the catalog and each other.

    `catalog`: a Catalog to look duplicates up in (None: only this batch). `smoke`: limits
    of the smoke run, None to stop after the static stages. `allow_known`: code already in
    the catalog is accepted as that model (re-training a known file resumes it) instead of
    being rejected as a duplicate. `profile`: "strict" rejects on any policy finding (generated
    code); "reviewed" reports the findings as warnings (code people wrote) and relies on the jail,
    which runs every candidate either way.
    """

    policy: PolicyConfig = field(default_factory=PolicyConfig)
    smoke: SmokeLimits | None = None
    catalog: object | None = None
    templates: dict[str, Template] = field(default_factory=dict)
    workdir: Path | None = None
    allow_known: bool = False
    policy_enabled: bool = True
    profile: str = "strict"
    # Candidates parsed before, by source text (a Candidate is an immutable value): bench replays
    # share one across thousands of searches that propose the same renderings. None: no memo.
    parsed: dict[str, Candidate] | None = None
    _seen_code: dict[str, str] = field(default_factory=dict)
    _seen_struct: dict[str, str] = field(default_factory=dict)

    def validate(self, candidate: str | Candidate | None, label: str, *, missing: str = "no code",
                 missing_stage: str = "parse") -> Validation:
        """All stages; the smoke run only when the static ones pass and smoke limits are set.

        `candidate` is source text or a Candidate parsed already; either way libcst parses it once.
        None (a proposer that produced no code) is a rejection at `missing_stage` ("parse", or "truncated"
        for an answer cut off by its token limit) whose reason is `missing`.
        """
        if candidate is None:
            return Validation(label, Verdict.reject(missing_stage, missing))
        result = self.check_static(candidate, label)
        if result.ok and result.known_as is None and self.smoke is not None:
            result = self.check_smoke(result.candidate.source, result)
        if result.ok:
            self.remember(result)
        return result

    def check_static(self, candidate: str | Candidate, label: str) -> Validation:
        """parse, policy, contract, template regions and the code-hash duplicate check; nothing runs."""
        source = candidate.source if isinstance(candidate, Candidate) else candidate
        if self.policy_enabled:  # before parsing: an oversized file is not worth a parse
            verdict = check_size(source, self.policy)
            if not verdict.ok:
                return Validation(label, verdict)
        if not isinstance(candidate, Candidate) and self.parsed is not None and source in self.parsed:
            candidate = self.parsed[source]
        if not isinstance(candidate, Candidate):
            try:
                candidate = Candidate.parse(source)
            except CandidateSyntaxError as exc:
                return Validation(label, Verdict.reject("parse", str(exc)))
            if self.parsed is not None:
                self.parsed[source] = candidate
        module = candidate.module
        facts = dict(candidate=candidate, profile=self.profile)
        if self.policy_enabled and self.profile == "reviewed":
            facts["warnings"] = tuple(policy_findings(module, self.policy, text=source))
        elif self.policy_enabled:
            # The policy comes first: code that fails it never reaches a process that runs it.
            verdict = check_policy(module, self.policy, text=source)
            if not verdict.ok:
                return Validation(label, verdict, **facts)
        verdict = check_contract(module)
        if not verdict.ok:
            return Validation(label, verdict, **facts)
        template = self.templates.get(candidate.family_or(""))
        if template is not None and has_regions(source):
            changed = changed_outside_regions(source, template)
            if changed:
                return Validation(label, Verdict.reject("contract", changed), **facts)
        digest = candidate.code_hash
        known = self.catalog.find_by_code_hash(digest) if self.catalog is not None else None
        if known and self.allow_known:
            return Validation(label, Verdict.accept(), code_hash=digest, known_as=known, **facts)
        twin = self._seen_code.get(digest) or known
        if twin:
            return Validation(label, Verdict.reject(
                "duplicate", f"same code as {twin} once comments, formatting and local names are ignored"),
                code_hash=digest, duplicate_of=twin, **facts)
        return Validation(label, Verdict.accept(), code_hash=digest, **facts)

    def check_smoke(self, source: str, static: Validation) -> Validation:
        """Run the candidate once in the sandbox; reject it there or as a structural duplicate."""
        temporary = self.workdir is None
        root = Path(tempfile.mkdtemp(prefix="nas-agent-smoke-")) if temporary else self.workdir
        workdir = root / f"smoke-{(static.code_hash or 'candidate')[:12]}"
        try:
            # A generator (TASK = "img-generation") is smoke-run on uint8 images and must return NLLs.
            task = static.candidate.task_or("img-classification") if static.candidate else "img-classification"
            shapes = {"out_shape": GENERATION_OUT_SHAPE} if is_generative(task) else {}
            smoke = smoke_test(source, workdir, self.smoke, task=task, **shapes)
        finally:
            if temporary:
                shutil.rmtree(root, ignore_errors=True)
        result = replace(static, verdict=smoke.verdict, struct_hash=smoke.struct_hash, n_params=smoke.n_params,
                         flops_per_sample=smoke.flops_per_sample, smoke_seconds=smoke.seconds)
        if not smoke.verdict.ok:
            return result
        if not temporary:
            shutil.rmtree(workdir, ignore_errors=True)  # a passing run leaves nothing worth reading
        twin = self._seen_struct.get(smoke.struct_hash)
        if twin is None and self.catalog is not None:
            twin = next(iter(self.catalog.find_by_struct_hash(smoke.struct_hash)), None)
        if twin:
            return replace(result, duplicate_of=twin, verdict=Verdict.reject(
                "duplicate", f"the same network as {twin}: identical operations, shapes and parameters "
                             f"(struct_hash {smoke.struct_hash[:12]})"))
        return result

    def remember(self, result: Validation) -> None:
        """Count an accepted candidate for the duplicate checks of the ones after it."""
        if result.code_hash:
            self._seen_code.setdefault(result.code_hash, result.label)
        if result.struct_hash:
            self._seen_struct.setdefault(result.struct_hash, result.label)

    def registered_as(self, result: Validation, name: str) -> None:
        """`result`'s candidate is the catalog model `name`: later twins of it name that model, not its label.

        Labels repeat (every LLM call numbers its answers from 0), a catalog name does not.
        """
        for seen, key in ((self._seen_code, result.code_hash), (self._seen_struct, result.struct_hash)):
            if key and seen.get(key) == result.label:
                seen[key] = name


def validator_for(config, *, catalog=None, workdir: Path | None = None, allow_known: bool = False,
                  smoke: bool | None = None, profile: str | None = None) -> Validator:
    """A Validator set up from a run's Config (`[policy]` and `[validate]`) and the shipped templates.

    `profile` overrides `[policy] profile` (imported LEMUR models are validated as reviewed).
    """
    from nas_agent.space.template import load_templates

    policy = PolicyConfig(allowed_imports=PolicyConfig().allowed_imports + tuple(config.policy.extra_imports),
                          max_source_bytes=config.policy.max_source_bytes)
    v = config.validate
    limits = SmokeLimits(seconds=v.smoke_seconds, memory_mb=v.smoke_memory_mb, max_params=v.max_params,
                         max_gflops=v.max_gflops)
    return Validator(policy=policy, smoke=limits if (v.smoke if smoke is None else smoke) else None,
                     catalog=catalog, templates=load_templates(), workdir=workdir, allow_known=allow_known,
                     policy_enabled=config.policy.enabled, profile=profile or config.policy.profile)
