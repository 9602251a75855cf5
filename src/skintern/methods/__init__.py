"""Distillation methods behind one `method:` config key. One file per method says how it builds
its training examples (`fit`) and how it answers at inference (`prompt`, `second_pass`).

    prompt        untrained student, zero-shot CoT (`prompt-fewshot`: BBH's 3-shot CoT prompt)
    std-cot       question -> rationale + answer
    mt-cot        rationale generation and answer prediction as two tasks; infers the answer
    step-by-step  the same with [label] / [rationale] task prefixes (Hsieh et al. 2023)
    kard          retrieved training knowledge in the prompt, at training and at inference
    cascod        question -> rationale, then question + rationale -> answer (two passes)
    skintern      progressive internalization of knowledge and examples; infers from the question
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from skintern.data import Example
from skintern.errors import SkinternError
from skintern.evaluate import Generation, generate
from skintern.prompts import cot_prompt, cot_target
from skintern.train import SFTExample, TrainStats, finetune


@dataclass
class Context:
    """Everything a method needs: config, data, the student and where to write."""

    cfg: object  # skintern.config.RunConfig
    data: object  # skintern.run.RunData
    student: object  # skintern.student.Student
    run_dir: Path


class Method:
    name = "base"
    trains = True

    def __init__(self, ctx: Context):
        self.ctx = ctx

    # -- inference
    def prompt(self, ex: Example) -> str:
        return cot_prompt(self.ctx.data.description(ex), ex.question)

    second_pass = None  # or a callable (examples, first generations) -> generations
    max_new_tokens: int | None = None  # None: eval.max_new_tokens

    # -- training
    def train_examples(self) -> list[SFTExample]:
        raise NotImplementedError

    @property
    def weights_dir(self) -> Path:
        """Where `fit` leaves the trained weights (in `final/`)."""
        return self.ctx.run_dir / "train" / self.name

    def fit(self) -> TrainStats | None:
        """Train the student in place; returns the stats (None for methods that do not train)."""
        model, stats = self._finetune(self.train_examples(), self.weights_dir)
        self.ctx.student.model = model
        return stats

    def _finetune(self, examples: Sequence[SFTExample], out: Path, epochs: float | None = None):
        cfg = self.ctx.cfg
        return finetune(self.ctx.student.model, self.ctx.student.tokenizer, examples, cfg.train, out,
                        seed=cfg.seed, epochs=epochs, desc=self.name)

    # -- helpers shared by methods
    def cot_pair(self, ex: Example, prompt: str | None = None) -> SFTExample:
        rationale = self.ctx.data.rationales[ex.id]
        return SFTExample(ex.id, prompt if prompt is not None else self.prompt(ex), cot_target(rationale, ex.answer))

    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[Generation]:
        cfg = self.ctx.cfg
        return generate(self.ctx.student.model, self.ctx.student.tokenizer, prompts, cfg.eval.batch_size, max_new_tokens)


def get_method(name: str) -> type[Method]:
    from skintern.methods import cascod, kard, multitask, prompting, skintern, std_cot

    registry = {
        cls.name: cls
        for cls in (
            prompting.ZeroShotPrompt,
            prompting.FewShotPrompt,
            std_cot.StdCoT,
            multitask.MTCoT,
            multitask.StepByStep,
            kard.KARD,
            cascod.CasCoD,
            skintern.SKIntern,
        )
    }
    if name not in registry:
        raise SkinternError(f"method: unknown method {name!r} (known: {', '.join(registry)})")
    return registry[name]
