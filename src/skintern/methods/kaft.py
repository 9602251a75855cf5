"""Knowledge-augmented fine-tuning (the paper's Table 1 "knowledge-aug. fine-tuning"): fine-tuning on question ->
gold answer with KARD's retrieved passages in the prompt, at training and at inference; no rationale."""

from __future__ import annotations

from dataclasses import dataclass

from skintern.data import Example
from skintern.methods.base import AnswerCapSettings, TrainPlan
from skintern.methods.finetune import FineTune, answer_prompt
from skintern.methods.kard import KARD, KARDSettings
from skintern.methods.rundata import RunData
from skintern.train import TrainConfig


@dataclass
class KAFTSettings(AnswerCapSettings, KARDSettings):
    """KARD's retrieval settings and the answer cap."""

    def __post_init__(self):
        KARDSettings.__post_init__(self)
        AnswerCapSettings.__post_init__(self)


class KAFT(FineTune, KARD):
    """Fine-tuning's pairs and answer pass (`FineTune`), KARD's retrieval."""

    name = "kaft"
    Settings = KAFTSettings
    settings: KAFTSettings

    @classmethod
    def plan(cls, settings: KAFTSettings, data: RunData, train: TrainConfig) -> TrainPlan:
        """Fine-tuning's plan with the retrieved passages in every prompt."""
        return FineTune.plan(settings, data, train).with_prompt_chars(cls.retrieved_chars(settings, data))

    def plain_prompt(self, ex: Example) -> str:
        return answer_prompt(self.ctx.data.description(ex), ex.question, self.knowledge_for(ex))
