"""Multi-task distillation: rationale generation and answer prediction trained as two tasks from
one question, loss = alpha * answer + (1 - alpha) * rationale; inference predicts the answer only.

MT-CoT (Li et al. 2022) marks the tasks by their answer format; Distilling step-by-step
(Hsieh et al. 2023) by the task prefixes [label] and [rationale]."""

from __future__ import annotations

from skintern.data import Example
from skintern.methods import Method
from skintern.prompts import rationale_body, task_head
from skintern.train import SFTExample


class MTCoT(Method):
    name = "mt-cot"

    def answer_prompt(self, ex: Example) -> str:
        return f"{self._head(ex)}Q: {ex.question.strip()}\nA: The answer is"

    def rationale_prompt(self, ex: Example) -> str:
        return f"{self._head(ex)}Q: {ex.question.strip()}\nExplanation:"

    def answer_target(self, ex: Example) -> str:
        return f" {ex.answer}."

    def _head(self, ex: Example) -> str:
        return task_head(self.ctx.data.description(ex))

    def prompt(self, ex: Example) -> str:
        return self.answer_prompt(ex)

    @property
    def max_new_tokens(self) -> int:
        return self.ctx.cfg.methods.answer_max_new_tokens

    def train_examples(self) -> list[SFTExample]:
        alpha = self.ctx.cfg.methods.alpha
        rows = []
        for ex in self.ctx.data.train:
            rationale = rationale_body(self.ctx.data.rationales[ex.id])
            rows.append(SFTExample(ex.id, self.answer_prompt(ex), self.answer_target(ex), weight=alpha))
            rows.append(SFTExample(f"{ex.id}#rationale", self.rationale_prompt(ex), f" {rationale}", weight=1 - alpha))
        return rows


class StepByStep(MTCoT):
    name = "step-by-step"

    def answer_prompt(self, ex: Example) -> str:
        return f"[label] {self._head(ex)}Q: {ex.question.strip()}\nA:"

    def rationale_prompt(self, ex: Example) -> str:
        return f"[rationale] {self._head(ex)}Q: {ex.question.strip()}\nA:"

    def answer_target(self, ex: Example) -> str:
        return f" {ex.answer}"
