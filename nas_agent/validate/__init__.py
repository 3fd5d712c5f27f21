"""Validation of candidate code: parse, contract, hashes (policy, dedup and smoke follow the same verdicts)."""

from nas_agent.validate.contract import check_contract
from nas_agent.validate.normalize import code_hash, normalized_source
from nas_agent.validate.verdict import STAGES, Verdict

__all__ = ["STAGES", "Verdict", "check_contract", "code_hash", "normalized_source"]
