"""Std-CoT: fine-tune on question -> teacher rationale + answer; infer from the question alone."""

from __future__ import annotations

from skintern.methods.base import Method


class StdCoT(Method):
    """The base method as it is: `Method` builds Std-CoT's pairs and its one inference pass."""

    name = "std-cot"
