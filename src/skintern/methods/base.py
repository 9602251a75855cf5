"""The method seam. A method is three things: its settings (a dataclass, the `methods.<name>:` section of a
config, checked when the config loads), how it builds training pairs (`train_pairs`, `fit`) and how it
answers (`infer`: the passes of each test item through one `Generator`).

`fit` returns the trained model instead of changing shared state, so the orchestrator reads like a recipe:
load student -> build method -> fit -> evaluate -> write entry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from skintern.data import Example
from skintern.evaluate import GenerationCaps
from skintern.generation import Generation, Generator
from skintern.methods.rundata import RunData
from skintern.prompts import PromptFormat, cot_prompt, cot_target
from skintern.retrieval import RetrievalConfig
from skintern.schema import check_range
from skintern.student import Student
from skintern.teacher.config import TeacherConfig
from skintern.train import ContinuedOptimizer, SFTExample, TrainConfig, TrainStats, finetune


@dataclass
class MethodSettings:
    """A method without settings of its own."""


@dataclass
class AnswerCapSettings(MethodSettings):
    answer_max_new_tokens: int | None = None
    """Token cap of an answer-only pass; None: the longest gold answer plus a margin (`GenerationCaps`)."""

    def __post_init__(self):
        if self.answer_max_new_tokens is not None:
            check_range("answer_max_new_tokens", self.answer_max_new_tokens, 1)


@dataclass
class Context:
    """What a method works with: the run's data, the untrained student and the shared settings."""

    data: RunData
    student: Student
    train: TrainConfig
    retrieval: RetrievalConfig
    teacher: TeacherConfig
    seed: int
    run_dir: Path
    caps: GenerationCaps
    """Token caps from the data, for passes whose cap the config leaves open."""


@dataclass
class TrainPlan:
    """What a method's training will do, worked out from the data alone (`skintern run --dry-run`)."""

    items: int
    pairs: int
    epochs: float
    """Passes over the pairs (SKIntern: summed over its stages)."""
    tokens: int
    """Training tokens over all passes, estimated at 4 characters a token."""
    max_steps: int | None = None
    """With train.max_steps: optimizer steps over all stages, which then bound the training instead of epochs."""

    def with_prompt_chars(self, chars: float) -> TrainPlan:
        """The plan with `chars` more prompt characters in every pair (KARD's retrieved passages)."""
        return replace(self, tokens=self.tokens + int(chars * self.pairs * self.epochs / 4))

    @property
    def budget(self) -> str:
        """How often the method sees each training item, comparable between methods of a compare."""
        passes = f"{self.max_steps} steps" if self.max_steps else f"{self.epochs:g} epochs"
        return f"{self.items} items x {passes}"


@dataclass
class Fitted:
    """The outcome of `fit`: the model to evaluate and its training stats (None when nothing trained)."""

    model: Any
    stats: TrainStats | None


class Method:
    """Base of every method: Std-CoT's prompt and training pairs, one inference pass."""

    name: ClassVar[str]
    Settings: ClassVar[type[MethodSettings]] = MethodSettings
    trains: ClassVar[bool] = True
    pairs_per_item: ClassVar[int] = 1
    student_answers: ClassVar[bool] = True
    """False when the answers come from elsewhere (the teacher): the entry then has no cost figures, since the
    student's tokens and FLOPs would not be what those answers cost."""

    def __init__(self, settings: MethodSettings, ctx: Context):
        self.settings, self.ctx = settings, ctx

    @classmethod
    def answers_with_cot_prompt(cls) -> bool:
        """Whether the method answers in one pass on the bare CoT prompt (`prompts.cot_prompt`), the prompt an
        export's model card, Modelfile and `ask` render; true exactly when it keeps the base's inference."""
        return all(getattr(cls, f) is getattr(Method, f) for f in ("prompt", "plain_prompt", "infer"))

    @classmethod
    def weights_dir(cls, run_dir: Path, settings: MethodSettings) -> Path:
        """Where `fit` leaves the trained weights (in `final/`), known before anything is built."""
        return run_dir / "train" / cls.name

    # -- inference
    @property
    def prompt_format(self) -> PromptFormat:
        """The student's prompt format: every trained method's prompts and targets pass through it here."""
        return self.ctx.student.prompt_format

    def prompt(self, ex: Example) -> str:
        """The input of the first (usually only) inference pass, in the student's prompt format."""
        return self.prompt_format.prompt(self.plain_prompt(ex))

    def plain_prompt(self, ex: Example) -> str:
        """`prompt` as plain text, ending in its reply cue line (what methods override)."""
        return cot_prompt(self.ctx.data.description(ex), ex.question)

    def infer(self, examples: Sequence[Example], generate: Generator) -> list[list[Generation]]:
        """The passes of each example: one rationale-and-answer generation."""
        return [[g] for g in generate([self.prompt(ex) for ex in examples])]

    # -- training
    def train_pairs(self) -> list[SFTExample]:
        return [self.cot_pair(ex) for ex in self.ctx.data.train]

    def fit(self) -> Fitted:
        model, stats = self.finetune(self.train_pairs(), self.weights_dir(self.ctx.run_dir, self.settings))
        return Fitted(model, stats)

    @classmethod
    def plan(cls, settings: MethodSettings, data: RunData, train: TrainConfig) -> TrainPlan:
        """Std-CoT's plan: one pair per training item, question + rationale."""
        chars = sum(len(ex.question) + len(data.rationales[ex.id]) for ex in data.train)
        passes = cls.pairs_per_item * train.epochs
        return TrainPlan(len(data.train), cls.pairs_per_item * len(data.train), train.epochs, int(chars * passes / 4),
                         train.max_steps if train.max_steps > 0 else None)

    @classmethod
    def check(cls, settings: MethodSettings, data: RunData, teacher: TeacherConfig) -> None:
        """Fail before a model loads on inputs the method reads itself (KARD's passage file, the teacher's
        answers); most methods read nothing beyond the run's data."""

    @classmethod
    def describe(cls, settings: MethodSettings) -> str:
        """What to tell a reader about the method's own settings in a plan or a model card (SKIntern: its schedule)."""
        return ""

    def result_extras(self) -> dict[str, Any]:
        """Extra fields of the method's results entry (SKIntern: its schedule)."""
        return {}

    # -- helpers shared by methods
    def finetune(self, pairs: Sequence[SFTExample], out: Path, model=None, epochs: float | None = None,
                 optimizers: ContinuedOptimizer | None = None):
        """Train `model` (default: the untrained student) on `pairs`; returns (model, stats). `optimizers`: one
        optimizer and LR schedule carried on from an earlier call (SKIntern's stages)."""
        ctx = self.ctx
        return finetune(ctx.student.model if model is None else model, ctx.student.tokenizer, pairs, ctx.train, out,
                        seed=ctx.seed, epochs=epochs, desc=self.name, optimizers=optimizers)

    def pair(self, id: str, prompt: str, target: str, **kwargs) -> SFTExample:
        """A training pair: `prompt` already in the prompt format, `target` ending the reply in it (every method's
        pairs are made here, so the target's end matches what evaluation stops at)."""
        return SFTExample(id, prompt, self.prompt_format.target(target), **kwargs)

    def cot_pair(self, ex: Example, prompt: str | None = None) -> SFTExample:
        """`ex`'s rationale-and-answer pair; `prompt` (in the prompt format): default `prompt(ex)`."""
        rationale = self.ctx.data.rationales[ex.id]
        return self.pair(ex.id, prompt if prompt is not None else self.prompt(ex), cot_target(rationale, ex.answer))


class AnswerOnly(Method):
    """A method that answers without a rationale: one pass under the answer cap (`AnswerCapSettings`)."""

    settings: AnswerCapSettings

    def infer(self, examples: Sequence[Example], generate: Generator) -> list[list[Generation]]:
        return [[g] for g in generate([self.prompt(ex) for ex in examples], self.answer_cap)]

    @property
    def answer_cap(self) -> int:
        return self.settings.answer_max_new_tokens or self.ctx.caps.answer

    def result_extras(self) -> dict[str, Any]:
        return {"answer_max_new_tokens": self.answer_cap}
