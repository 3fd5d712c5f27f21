"""The llm strategy: the LLM proposer's candidates built on the round's parents, with repairs of its rejections.

In `params` mode the model names points of the space (valid by construction under the
schema); in `code` mode it edits the parents' code; `mixed` splits each parent's share
between the two. The loop validates the answers like every other proposal (and records
each verdict on the answer's llm_call row); code edits rejected for a reason the model can
act on (parse, policy, contract, smoke) get a fix prompt with the validator's verdict in
the same round, up to `fixes` per round.
"""

from __future__ import annotations

from nas_agent.llm.propose import Answer, Proposer
from nas_agent.search.strategy import BaseStrategy, Outcome, Proposal, RoundContext
from nas_agent.space.protocol import settings
from nas_agent.validate import Validation, Validator

FIXABLE_STAGES = ("parse", "policy", "contract", "smoke")


class LLMStrategy(BaseStrategy):
    name = "llm"

    def __init__(self, proposer: Proposer, fixes: int = 1, mode: str = "code"):
        self.proposer, self.fixes, self.mode = proposer, fixes, mode
        self._fixable: list[Outcome] = []    # this round's rejected edits the model may repair

    def propose(self, context: RoundContext, k: int) -> list[Proposal]:
        self._fixable = []
        if k <= 0:
            return []
        self.proposer.run_id = context.run_id
        # One batched call per parent: the best parent gets the larger share.
        parents = context.parents[:max(1, min(len(context.parents), (k + 3) // 4))]
        shares = [k // len(parents) + (i < k % len(parents)) for i in range(len(parents))]
        proposals: list[Proposal] = []
        for parent, share in zip(parents, shares):
            for answer in self.proposer.propose(parent.source, parent.name, share, self.mode):
                change = "llm edit"
                if answer.mode == "params":
                    change = "llm params" + (f": {settings(answer.point)}" if answer.point else "")
                proposals.append(self._proposal(answer, parent.name, change))
        return proposals

    def observe(self, outcomes: list[Outcome]) -> None:
        self._fixable += [o for o in outcomes if o.status == "rejected" and o.stage in FIXABLE_STAGES
                          and o.proposal.source is not None and o.proposal.change.startswith("llm edit")]

    def follow_up(self, context: RoundContext) -> list[Proposal]:
        """One repair attempt for each of the first `fixes` edits rejected this round."""
        broken, self._fixable = self._fixable[:self.fixes], []
        proposals = []
        for outcome in broken:
            edit = outcome.proposal
            for answer in self.proposer.fix(edit.source, outcome.stage, outcome.reason, edit.parent, n=1):
                proposals.append(self._proposal(answer, edit.parent, f"llm fix of a {outcome.stage} rejection"))
        return proposals

    def _proposal(self, answer: Answer, parent: str, change: str) -> Proposal:
        reasoning = answer.extraction.reasoning
        if reasoning:  # the model's own summary of its change is the best one-line description
            change = f"{change}: {reasoning.strip().splitlines()[-1][:160]}"
        return Proposal(self.name, parent, change, answer.source, problem=answer.problem, llm_call=answer.call_id,
                        problem_stage=answer.problem_stage)


def judge_answer(catalog, validator: Validator, answer: Answer, label: str | None = None) -> Validation:
    """Validate one answer outside a search (`nas-agent propose`) and record the verdict on its llm_call row.

    `label` names it in verdicts (default: its llm_call, or its index for an answer not recorded).
    """
    if label is None:
        label = f"llm call {answer.call_id}" if answer.call_id is not None else f"answer {answer.index}"
    validation = validator.validate(answer.source, label, missing=answer.problem or "the answer holds no code",
                                    missing_stage=answer.problem_stage)
    if answer.call_id is not None:
        v = validation.verdict
        catalog.judge_llm_call(answer.call_id, ok=v.ok, stage=v.stage, reason=v.reason, code_hash=validation.code_hash)
    return validation
