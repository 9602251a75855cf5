"""Multi-task distillation: rationale generation and answer prediction trained as two tasks from
one question, loss = alpha * answer + (1 - alpha) * rationale; inference predicts the answer only.

MT-CoT (Li et al. 2022) marks the tasks by their answer format; Distilling step-by-step
(Hsieh et al. 2023) by the task prefixes [label] and [rationale]."""

from __future__ import annotations

from dataclasses import dataclass

from skintern.data import Example
from skintern.methods.base import AnswerCapSettings, AnswerOnly
from skintern.prompts import rationale_body, task_head
from skintern.schema import check_range
from skintern.train import SFTExample


@dataclass
class WeightedSettings(AnswerCapSettings):
    alpha: float = 0.3
    """Weight of the answer loss; the rationale loss weighs 1 - alpha (0.3: the SKIntern paper and code)."""

    def __post_init__(self):
        super().__post_init__()
        check_range("alpha", self.alpha, 0, 1)


class MTCoT(AnswerOnly):
    """Infers with one answer-only pass under the answer cap (`AnswerOnly`)."""

    name = "mt-cot"
    Settings = WeightedSettings
    settings: WeightedSettings
    pairs_per_item = 2

    def answer_prompt(self, ex: Example) -> str:
        return f"{self._head(ex)}Q: {ex.question.strip()}\nA: The answer is"

    def rationale_prompt(self, ex: Example) -> str:
        return f"{self._head(ex)}Q: {ex.question.strip()}\nExplanation:"

    def answer_target(self, ex: Example) -> str:
        return f" {ex.answer}."

    def _head(self, ex: Example) -> str:
        return task_head(self.ctx.data.description(ex))

    def plain_prompt(self, ex: Example) -> str:
        return self.answer_prompt(ex)

    def train_pairs(self) -> list[SFTExample]:
        alpha = self.settings.alpha
        rows = []
        for ex in self.ctx.data.train:
            rationale = rationale_body(self.ctx.data.rationales[ex.id])
            rows.append(self.pair(ex.id, self.prompt(ex), self.answer_target(ex), weight=alpha, task="answer"))
            rows.append(self.pair(f"{ex.id}#rationale", self.prompt_format.prompt(self.rationale_prompt(ex)), f" {rationale}",
                                  weight=1 - alpha, task="rationale"))
        return rows


class StepByStep(MTCoT):
    name = "step-by-step"

    def answer_prompt(self, ex: Example) -> str:
        return f"[label] {self._head(ex)}Q: {ex.question.strip()}\nA:"

    def rationale_prompt(self, ex: Example) -> str:
        return f"[rationale] {self._head(ex)}Q: {ex.question.strip()}\nA:"

    def answer_target(self, ex: Example) -> str:
        return f" {ex.answer}"
