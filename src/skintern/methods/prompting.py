"""The untrained student, prompted: the floor every distillation method must beat."""

from __future__ import annotations

from skintern.data import Example
from skintern.methods.base import Fitted, Method
from skintern.prompts import COT_TRIGGER


class ZeroShotPrompt(Method):
    """Task description + question + "Let's think step by step." (the Std-CoT inference prompt)."""

    name = "prompt"
    trains = False

    def fit(self) -> Fitted:
        return Fitted(self.ctx.student.model, None)


class FewShotPrompt(ZeroShotPrompt):
    """BBH's own 3-shot CoT prompt before the question (zero-shot where a dataset has none)."""

    name = "prompt-fewshot"

    def prompt(self, ex: Example) -> str:
        shots = self.ctx.data.fewshot.get(ex.task) if ex.dataset == "bbh" else None
        if not shots:
            return super().prompt(ex)
        return f"{shots}\n\nQ: {ex.question.strip()}\n{COT_TRIGGER}"
