"""Evaluation mechanics: stop strings, token counts, scoring, resumable predictions."""

from __future__ import annotations

import json

import pytest
import torch

from skintern.data import Example
from skintern.evaluate import evaluate, score
from skintern.generation import Generation, Generator, generated_length
from skintern.prompts import cot_prompt, cut_at_stop


def ex(i: int, answer: str = "(B)", task: str = "date_understanding") -> Example:
    return Example("bbh", task, i, f"Question number {i}?\nOptions:\n(A) x\n(B) y", answer, "choice", ("x", "y"))


def test_cut_at_stop_drops_the_invented_next_question():
    assert cut_at_stop(" It is y. Therefore, the answer is (B).\nQ: another") == " It is y. Therefore, the answer is (B)."
    assert cut_at_stop("no stop here") == "no stop here"


def test_generated_length_counts_up_to_first_eos(tiny_tokenizer):
    eos, pad = tiny_tokenizer.eos_token_id, tiny_tokenizer.pad_token_id
    assert generated_length([5, 6, eos, pad, pad], tiny_tokenizer) == 3
    assert generated_length([5, 6, 7], tiny_tokenizer) == 3


def test_batched_generation_equals_one_by_one(tiny_model, tiny_tokenizer):
    prompts = [cot_prompt("", f"Question {i} {'long ' * i}?") for i in range(5)]
    batched = Generator(tiny_model, tiny_tokenizer, batch_size=5, max_new_tokens=12)(prompts)
    one_by_one = Generator(tiny_model, tiny_tokenizer, batch_size=1, max_new_tokens=12)
    single = [one_by_one([p])[0] for p in prompts]
    assert [g.text for g in batched] == [g.text for g in single]
    assert [g.prompt_tokens for g in batched] == [len(tiny_tokenizer(p).input_ids) for p in prompts]
    assert all(1 <= g.generated_tokens <= 12 for g in batched)


def test_score_per_task_and_overall(tmp_path):
    rows = [
        {"task": "a", "correct": True, "prediction": "(A)", "prompt_tokens": 10, "generated_tokens": 4, "seconds": 1.0},
        {"task": "a", "correct": False, "prediction": None, "hit_cap": True, "prompt_tokens": 20, "generated_tokens": 6,
         "seconds": 3.0},
        {"task": "b", "correct": True, "prediction": "(B)", "hit_cap": False, "prompt_tokens": 30, "generated_tokens": 8,
         "seconds": 2.0},
    ]
    res = score(rows, tmp_path / "p.jsonl")
    assert res.accuracy == pytest.approx(2 / 3) and res.n == 3
    assert res.per_task == {"a": 0.5, "b": 1.0}
    assert res.prompt_tokens_per_query == 20 and res.generated_tokens_per_query == 6
    assert res.wall_time_per_query_s == 2.0
    assert res.hit_cap == pytest.approx(1 / 3) and res.no_answer == pytest.approx(1 / 3)


def test_a_generation_cut_by_the_cap_is_marked(tiny_model, tiny_tokenizer):
    prompt = cot_prompt("", "Is the sky blue?")
    (cut,) = Generator(tiny_model, tiny_tokenizer, max_new_tokens=3, stop_strings=("\n\n\n\n",))([prompt])
    assert cut.generated_tokens == 3 and cut.hit_cap  # the random tiny model never says EOS this soon
    (stopped,) = Generator(tiny_model, tiny_tokenizer, max_new_tokens=3, stop_strings=(cut.text[-1],))([prompt])
    assert not stopped.hit_cap  # a stop string ended it


def test_caps_come_from_the_data(tiny_tokenizer):
    from skintern.evaluate import ANSWER_MARGIN, GenerationCaps

    targets = [" x" * n for n in range(1, 101)]  # 1..100 tokens, +1 EOS each
    caps = GenerationCaps.from_data(tiny_tokenizer, targets, ["No", "a much longer gold answer"])
    lengths = sorted(len(tiny_tokenizer(t, add_special_tokens=False).input_ids) + 1 for t in targets)
    assert caps.rationale == lengths[98]  # the 99th percentile of 100 targets
    longest = len(tiny_tokenizer(" a much longer gold answer.", add_special_tokens=False).input_ids)
    assert caps.answer == longest + ANSWER_MARGIN


def test_evaluation_resumes_from_partial_predictions(tiny_model, tiny_tokenizer, tmp_path):
    examples = [ex(i) for i in range(6)]
    path = tmp_path / "pred.jsonl"
    done = {"id": examples[0].id, "dataset": "bbh", "task": "date_understanding", "question": "", "gold": "(B)",
            "output": "Therefore, the answer is (B).", "prediction": "(B)", "correct": True,
            "prompt_tokens": 7, "generated_tokens": 3, "seconds": 0.1}
    path.with_name("pred.jsonl.partial").write_text(json.dumps(done) + "\n")
    prompted = []

    def prompt_fn(e):
        prompted.append(e.id)
        return cot_prompt("", e.question)

    generate = Generator(tiny_model, tiny_tokenizer, max_new_tokens=4)
    res = evaluate(lambda batch: [[g] for g in generate([prompt_fn(e) for e in batch])], examples, path, batch_size=4)
    assert examples[0].id not in prompted and len(prompted) == 5
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["id"] for r in rows][0] == examples[0].id and len(rows) == 6
    assert not path.with_name("pred.jsonl.partial").exists()
    assert res.n == 6 and res.per_task["date_understanding"] == pytest.approx(res.accuracy)
    assert res.accuracy >= 1 / 6  # the resumed row is correct


def test_second_pass_gives_the_answer_and_its_tokens_count(tiny_model, tiny_tokenizer, tmp_path):
    from skintern.flops import model_shape, query_flops

    examples = [ex(0), ex(1, answer="(A)")]
    generate = Generator(tiny_model, tiny_tokenizer, max_new_tokens=2)

    def two_passes(batch):
        firsts = generate([cot_prompt("", e.question) for e in batch])
        return [[g, Generation("So the answer is (B).", g.prompt_tokens + 5, 3)] for g in firsts]

    shape = model_shape(tiny_model.config)
    res = evaluate(two_passes, examples, tmp_path / "p.jsonl", shape=shape)
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert res.accuracy == 0.5 and [r["prediction"] for r in rows] == ["(B)", "(B)"]
    first_prompt = len(tiny_tokenizer(cot_prompt("", examples[0].question)).input_ids)
    first_gen = rows[0]["generated_tokens"] - 3
    assert rows[0]["passes"] == 2 and rows[0]["prompt_tokens"] == 2 * first_prompt + 5
    one, two = query_flops(shape, first_prompt, first_gen), query_flops(shape, first_prompt + 5, 3)
    assert rows[0]["flops"]["prefill"] == pytest.approx(one["prefill"] + two["prefill"])
    assert rows[0]["flops"]["generation"] == pytest.approx(one["generation"] + two["generation"])
    assert res.flops_per_query["prefill"] == pytest.approx((rows[0]["flops"]["prefill"] + rows[1]["flops"]["prefill"]) / 2)


def test_lora_is_merged_for_generation_and_unmerged_after(tiny_model, tiny_tokenizer):
    from skintern.train import TrainConfig, with_lora

    model = with_lora(tiny_model, TrainConfig()).eval()
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    prompt = cot_prompt("", "Is the sky blue?")
    ids = tiny_tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        unmerged = model.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=tiny_tokenizer.pad_token_id)
    expected = tiny_tokenizer.decode(unmerged[0, ids.input_ids.shape[1]:], skip_special_tokens=True)
    generate = Generator(model, tiny_tokenizer, max_new_tokens=8, stop_strings=("\n\n\n\n",))
    assert generate([prompt])[0].text == expected
    assert not any(getattr(m, "merged", False) for m in model.modules())
