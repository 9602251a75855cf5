"""The paper's remaining baselines behind the method seam: answer-only zero-shot and fine-tuning, knowledge-
augmented fine-tuning, KARD's BM25 retriever, and the teacher's row (tiny student, fixed items)."""

from __future__ import annotations

import pytest

from skintern.methods.base import AnswerOnly
from tests.test_methods import DESC, TEST, TRAIN, Recorder, cfg, make  # noqa: F401  (fixtures)


def test_fine_tune_trains_and_answers_without_a_rationale(cfg, make):
    cfg.methods["fine-tune"].answer_max_new_tokens = 5
    method = make("fine-tune")
    pairs = method.train_pairs()
    assert [(p.id, p.prompt, p.target) for p in pairs[:2]] == [
        (TRAIN[0].id, f'{DESC}\n\nQ: Is the following sentence plausible? "Joao Moutinho caught the screen pass."\n'
                      "A: The answer is", " No."),
        (TRAIN[1].id, f'{DESC}\n\nQ: Is the following sentence plausible? "Kyle Palmieri was called for slashing."\n'
                      "A: The answer is", " Yes."),
    ]
    generate = Recorder(" No.")
    assert [[g.text for g in passes] for passes in method.infer([TEST], generate)] == [[" No."]]
    assert generate.calls == [([f"{DESC}\n\nQ: {TEST.question}\nA: The answer is"], 5)]
    assert method.result_extras() == {"answer_max_new_tokens": 5}


def test_zero_shot_asks_the_untrained_student_for_the_answer_at_once(make, tiny_model):
    method = make("zero-shot")
    fitted = method.fit()
    assert not method.trains and fitted.stats is None and fitted.model is tiny_model
    assert isinstance(method, AnswerOnly)
    generate = Recorder(" No.")
    method.infer([TEST], generate)
    assert generate.calls == [([
        f"{DESC}\n\nQ: {TEST.question}\n"
        'Reply only with the sentence "The answer is X." where X is Yes or No.\nA: The answer is'], method.ctx.caps.answer)]
