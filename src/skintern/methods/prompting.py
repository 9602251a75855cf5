"""The untrained student, prompted: the floor every distillation method must beat.

A fair floor prompts the student the way it expects: an Instruct model in its chat template, and every dataset
with an instruction to end with the sentence the scorer reads (`prompts.untrained_prompt`). Trained students
keep the format they were trained in (`student.prompt_format`, `Method.prompt`)."""

from __future__ import annotations

from skintern.data import Example
from skintern.methods.base import AnswerCapSettings, AnswerOnly, Fitted, Method
from skintern.prompts import task_head, untrained_prompt


class ZeroShotPrompt(Method):
    """Task description + question + answer instruction, then "Let's think step by step." to start the reply."""

    name = "prompt"
    trains = False

    def fit(self) -> Fitted:
        return Fitted(self.ctx.student.model, None)

    def prompt(self, ex: Example) -> str:
        return untrained_prompt(self.ctx.student.tokenizer, self.context(ex), ex.question, ex.kind)

    def context(self, ex: Example) -> str:
        """What comes before the question."""
        return task_head(self.ctx.data.description(ex))


class FewShotPrompt(ZeroShotPrompt):
    """BBH's own 3-shot CoT prompt before the question (zero-shot where a dataset has none); under a chat
    template the shots are part of the user turn, as one text, so both formats show them the same way."""

    name = "prompt-fewshot"

    def context(self, ex: Example) -> str:
        shots = self.ctx.data.fewshot.get(ex.task) if ex.dataset == "bbh" else None
        return f"{shots}\n\n" if shots else super().context(ex)


class ZeroShotAnswer(AnswerOnly, ZeroShotPrompt):
    """The untrained student asked for the answer at once (the paper's "zero-shot", beside zero-shot CoT): task
    description + question + an instruction to answer directly; the reply starts with "The answer is"."""

    name = "zero-shot"
    Settings = AnswerCapSettings

    def prompt(self, ex: Example) -> str:
        return untrained_prompt(self.ctx.student.tokenizer, self.context(ex), ex.question, ex.kind, direct=True)
