"""Std-CoT: fine-tune on question -> teacher rationale + answer; infer from the question alone."""

from __future__ import annotations

from skintern.methods import Method
from skintern.train import SFTExample


class StdCoT(Method):
    name = "std-cot"

    def train_examples(self) -> list[SFTExample]:
        return [self.cot_pair(ex) for ex in self.ctx.data.train]
