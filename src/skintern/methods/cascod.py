"""CasCoD (Dai et al. 2024): cascading decomposed CoT distillation. The student learns
question -> rationale and question + rationale -> answer; inference runs both passes, and both
count towards the cost of a query."""

from __future__ import annotations

from collections.abc import Sequence

from skintern.data import Example
from skintern.evaluate import Generation
from skintern.methods import Method
from skintern.prompts import ANSWER_SENTENCE, rationale_body
from skintern.train import SFTExample

ANSWER_CUE = ANSWER_SENTENCE.split("{}")[0].rstrip()  # "Therefore, the answer is"


class CasCoD(Method):
    name = "cascod"

    def answer_prompt(self, ex: Example, rationale: str) -> str:
        return f"{self.prompt(ex)} {rationale.strip()}\n{ANSWER_CUE}"

    def train_examples(self) -> list[SFTExample]:
        alpha = self.ctx.cfg.methods.alpha
        rows = []
        for ex in self.ctx.data.train:
            rationale = rationale_body(self.ctx.data.rationales[ex.id])
            rows.append(SFTExample(f"{ex.id}#rationale", self.prompt(ex), f" {rationale}", weight=1 - alpha))
            rows.append(SFTExample(ex.id, self.answer_prompt(ex, rationale), f" {ex.answer}.", weight=alpha))
        return rows

    def second_pass(self, examples: Sequence[Example], firsts: Sequence[Generation]) -> list[Generation]:
        """Feed each generated rationale (cut before any answer it already states) back for the answer."""
        prompts = [self.answer_prompt(ex, rationale_body(g.text)) for ex, g in zip(examples, firsts)]
        answers = self.generate(prompts, self.ctx.cfg.methods.answer_max_new_tokens)
        return [Generation(f" {ANSWER_CUE}{a.text}", a.prompt_tokens, a.generated_tokens) for a in answers]
