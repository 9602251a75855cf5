"""The vLLM backend's contract: same prompts, greedy, same stop strings -> same answers as HF generate.

Runs only where vLLM is installed and a CUDA GPU is present (`pip install vllm`); skipped elsewhere."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from skintern.errors import SkinternError
from skintern.generation import Generator, resolve_backend

HAS_VLLM = importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


def test_backend_resolution():
    assert resolve_backend("hf") == "hf"
    assert resolve_backend("auto") == ("vllm" if HAS_VLLM else "hf")
    with pytest.raises(SkinternError, match="eval.backend"):
        resolve_backend("tgi")
    if not HAS_VLLM:
        with pytest.raises(SkinternError, match="pip install vllm"):
            resolve_backend("vllm")


@pytest.mark.skipif(not HAS_VLLM, reason="vLLM and a CUDA GPU are needed")
def test_vllm_gives_the_hf_answers(shared_data):
    from skintern import data as D
    from skintern.prompts import cot_prompt
    from skintern.student import load_student

    student = load_student("smollm2-135m")
    student.model.to("cuda")
    tasks = ["sports_understanding", "date_understanding", "boolean_expressions"]
    examples = D.load_benchmark("bbh", shared_data, tasks=tasks, limit_per_task=4, split="test")
    prompts = [cot_prompt(D.task_description(shared_data, ex.task), ex.question) for ex in examples]
    hf = Generator(student.model, student.tokenizer, backend="hf", batch_size=4, max_new_tokens=128)(prompts)
    fast = Generator(student.model, student.tokenizer, backend="vllm", batch_size=4, max_new_tokens=128)(prompts)
    answers = lambda gens: [D.extract_answer(g.text, ex.kind, ex.options) for g, ex in zip(gens, examples)]  # noqa: E731
    assert answers(fast) == answers(hf)
    assert [g.prompt_tokens for g in fast] == [g.prompt_tokens for g in hf]
