"""The llm strategy: edits of the round's parents by the LLM proposer, with one repair attempt.

Proposals are validated (and recorded as llm_call rows) by the proposer itself; those
rejected for a reason the model can act on (parse, policy, contract, smoke) get a fix
prompt with the validator's verdict, up to `fixes` per round.
"""

from __future__ import annotations

from nas_agent.llm.propose import Proposer
from nas_agent.search.strategy import BaseStrategy, Proposal, RoundContext

FIXABLE_STAGES = ("parse", "policy", "contract", "smoke")


class LLMStrategy(BaseStrategy):
    name = "llm"

    def __init__(self, proposer: Proposer, fixes: int = 1):
        self.proposer, self.fixes = proposer, fixes

    def propose(self, context: RoundContext, k: int) -> list[Proposal]:
        if k <= 0:
            return []
        self.proposer.run_id = context.run_id
        # One batched call per parent: the best parent gets the larger share.
        parents = context.parents[:max(1, min(len(context.parents), (k + 3) // 4))]
        shares = [k // len(parents) + (i < k % len(parents)) for i in range(len(parents))]
        proposals: list[Proposal] = []
        for parent, share in zip(parents, shares):
            for answer in self.proposer.edit(parent.source, parent.name, n=share):
                proposals.append(self._proposal(answer, parent.name, "llm edit"))
        fixable = [p for p in proposals if p.source is not None and p.validation.verdict.stage in FIXABLE_STAGES]
        for broken in fixable[:self.fixes]:
            for answer in self.proposer.fix(broken.source, broken.validation.verdict, broken.parent, n=1):
                proposals.append(self._proposal(answer, broken.parent,
                                                f"llm fix of a {broken.validation.verdict.stage} rejection"))
        return proposals

    def _proposal(self, answer, parent: str, change: str) -> Proposal:
        v = answer.validation
        reasoning = answer.extraction.reasoning
        if reasoning:  # the model's own summary of its change is the best one-line description
            change = f"{change}: {reasoning.strip().splitlines()[-1][:160]}"
        return Proposal(self.name, parent, change, answer.source, validation=v, token=answer.call_id)
