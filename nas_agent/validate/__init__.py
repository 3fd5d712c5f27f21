"""Validation of candidate code: parse, policy, contract, duplicates (code and structure), smoke run."""

from nas_agent.validate.contract import check_contract
from nas_agent.candidate.normalize import code_hash, normalized_source
from nas_agent.validate.pipeline import Validation, Validator, validator_for
from nas_agent.validate.policy import PolicyConfig, check_policy
from nas_agent.validate.smoke import SmokeLimits, SmokeResult, smoke_test
from nas_agent.validate.verdict import STAGES, Verdict

__all__ = ["STAGES", "PolicyConfig", "SmokeLimits", "SmokeResult", "Validation", "Validator", "Verdict",
           "check_contract", "check_policy", "code_hash", "normalized_source", "smoke_test", "validator_for"]
