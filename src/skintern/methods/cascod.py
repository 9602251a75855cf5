"""CasCoD (Dai et al. 2024): cascading decomposed CoT distillation. The student learns
question -> rationale and question + rationale -> answer; inference runs both passes through the same
generator, and both count towards the cost of a query."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from skintern.data import Example
from skintern.generation import Generation, Generator
from skintern.methods.base import Method
from skintern.methods.multitask import WeightedSettings
from skintern.prompts import ANSWER_SENTENCE, rationale_body
from skintern.train import SFTExample

ANSWER_CUE = ANSWER_SENTENCE.split("{}")[0].rstrip()  # "Therefore, the answer is"


class CasCoD(Method):
    name = "cascod"
    Settings = WeightedSettings
    settings: WeightedSettings
    pairs_per_item = 2

    def answer_prompt(self, ex: Example, rationale: str) -> str:
        return f"{self.prompt(ex)} {rationale.strip()}\n{ANSWER_CUE}"

    def train_pairs(self) -> list[SFTExample]:
        alpha = self.settings.alpha
        rows = []
        for ex in self.ctx.data.train:
            rationale = rationale_body(self.ctx.data.rationales[ex.id])
            rows.append(self.pair(f"{ex.id}#rationale", self.prompt(ex), f" {rationale}", weight=1 - alpha, task="rationale"))
            rows.append(self.pair(ex.id, self.answer_prompt(ex, rationale), f" {ex.answer}.", weight=alpha, task="answer"))
        return rows

    def infer(self, examples: Sequence[Example], generate: Generator) -> list[list[Generation]]:
        """The rationale pass, then each generated rationale (cut before any answer it already states) fed back
        for the answer under the answer cap."""
        firsts = generate([self.prompt(ex) for ex in examples])
        answer_prompts = [self.answer_prompt(ex, rationale_body(g.text)) for ex, g in zip(examples, firsts)]
        answers = generate(answer_prompts, self.answer_cap)
        seconds = [Generation(f" {ANSWER_CUE}{a.text}", a.prompt_tokens, a.generated_tokens, a.hit_cap) for a in answers]
        return [list(pair) for pair in zip(firsts, seconds)]

    @property
    def answer_cap(self) -> int:
        return self.settings.answer_max_new_tokens or self.ctx.caps.answer

    def result_extras(self) -> dict[str, Any]:
        return {"answer_max_new_tokens": self.answer_cap}
