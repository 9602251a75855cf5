"""Distillation methods behind one `method:` config key, one file each (see `methods.base` for the seam).

    prompt        untrained student, zero-shot CoT (`prompt-fewshot`: BBH's 3-shot CoT prompt)
    zero-shot     untrained student, asked for the answer at once (no rationale)
    fine-tune     question -> gold answer, no rationale; answers at once
    std-cot       question -> rationale + answer
    mt-cot        rationale generation and answer prediction as two tasks; infers the answer
    step-by-step  the same with [label] / [rationale] task prefixes (Hsieh et al. 2023)
    kard          retrieved training knowledge (or passages) in the prompt, at training and at inference
    kaft          fine-tune with kard's retrieved passages in the prompt (knowledge-augmented fine-tuning)
    cascod        question -> rationale, then question + rationale -> answer (two passes)
    skintern      progressive internalization of knowledge and examples; infers from the question
    teacher       the teacher's answers to the test items (a file or the `teacher:` endpoint), no cost figures

`METHODS` is the one list of method names: config validation, CLI help, report and export read it.
Adding a method is its file plus one line here."""

from __future__ import annotations

from skintern.methods.base import Context, Fitted, Method, MethodSettings
from skintern.methods.cascod import CasCoD
from skintern.methods.finetune import FineTune
from skintern.methods.kaft import KAFT
from skintern.methods.kard import KARD
from skintern.methods.multitask import MTCoT, StepByStep
from skintern.methods.prompting import FewShotPrompt, ZeroShotAnswer, ZeroShotPrompt
from skintern.methods.skintern import SKIntern
from skintern.methods.std_cot import StdCoT
from skintern.methods.teacher import Teacher

METHODS: dict[str, type[Method]] = {
    cls.name: cls for cls in (ZeroShotPrompt, FewShotPrompt, ZeroShotAnswer, FineTune, KAFT, StdCoT, MTCoT, StepByStep,
                              KARD, CasCoD, SKIntern, Teacher)
}

UNTRAINED_BASELINE = ZeroShotPrompt.name
"""The untrained student: `skintern run` evaluates it first, reports show every method's change against it."""
COST_REFERENCE = StdCoT.name
"""Plain CoT distillation: reports give inference cost relative to it, the cost SKIntern claims to keep."""

__all__ = ["COST_REFERENCE", "METHODS", "UNTRAINED_BASELINE", "Context", "Fitted", "Method", "MethodSettings", "SKIntern"]
