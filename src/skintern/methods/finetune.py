"""Fine-tuning (the paper's Table 1 "fine-tuning"): the student learns question -> gold answer, with no
rationale, and answers at once, so it pays only for the question and a few answer tokens."""

from __future__ import annotations

from skintern.data import Example
from skintern.methods.base import AnswerCapSettings, AnswerOnly, TrainPlan
from skintern.methods.rundata import RunData
from skintern.prompts import DIRECT_START, task_head
from skintern.train import SFTExample, TrainConfig


def answer_prompt(description: str, question: str, knowledge: str = "") -> str:
    """Task description, optional knowledge (laid out as KARD's), question, and the start of a direct answer."""
    know = f"Knowledge:\n{knowledge.strip()}\n\n" if knowledge.strip() else ""
    return f"{task_head(description)}{know}Q: {question.strip()}\nA: {DIRECT_START}"


class FineTune(AnswerOnly):
    name = "fine-tune"
    Settings = AnswerCapSettings

    def plain_prompt(self, ex: Example) -> str:
        return answer_prompt(self.ctx.data.description(ex), ex.question)

    def train_pairs(self) -> list[SFTExample]:
        return [self.pair(ex.id, self.prompt(ex), f" {ex.answer}.") for ex in self.ctx.data.train]

    @classmethod
    def plan(cls, settings: AnswerCapSettings, data: RunData, train: TrainConfig) -> TrainPlan:
        """One pair per training item, question + answer (the teacher's rationales are not trained on)."""
        chars = sum(len(ex.question) + len(ex.answer) for ex in data.train)
        return TrainPlan(len(data.train), len(data.train), train.epochs, int(chars * train.epochs / 4),
                         train.max_steps if train.max_steps > 0 else None)
