"""A fair floor (#15 point 6): the untrained student is prompted the way it expects, in its chat template where
its tokenizer has one, and told on every dataset to end with the sentence the scorer reads."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from skintern.config import RunConfig
from skintern.data import Example, extract_answer, is_correct, load_benchmark
from skintern.generation import Generator
from skintern.methods.rundata import RunData
from skintern.prompts import cot_prompt
from skintern.run import build_method
from skintern.student import Student, load_student

DESC = "Determine whether a sentence is plausible."
SHOTS = f"{DESC}\n\nQ: shot?\nA: Let's think step by step. So the answer is yes."
SPORTS = Example("bbh", "sports_understanding", 10, 'Is the following sentence plausible? "Kyle Palmieri scored a touchdown."',
                 "No", "yes_no")
ARC = Example("arc-easy", "ARC-Easy", 0, "Question: Which gas do plants take in?\nOptions:\n(A) oxygen\n(B) carbon dioxide",
              "(B)", "choice", ("oxygen", "carbon dioxide"))
CHAT = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
YES_NO = 'End with the sentence "Therefore, the answer is X." where X is Yes or No.'
LETTER = 'End with the sentence "Therefore, the answer is X." where X is the letter of the correct option, like (A).'


def untrained(name: str, tokenizer, tmp_path: Path, tests: dict | None = None):
    rd = RunData(data_dir=Path("."), train_pool=[], train=[], rationales={}, tests=tests or {},
                 descriptions={"sports_understanding": DESC}, fewshot={"sports_understanding": SHOTS})
    return build_method(name, RunConfig(output_dir=str(tmp_path)), rd, Student(None, tokenizer, "tiny", "."), tmp_path)


def chat_tokenizer(tokenizer, template: str = CHAT):
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = template
    return tok


def test_without_a_chat_template_the_plain_format_gains_the_answer_instruction(tiny_tokenizer, tmp_path):
    zero, few = (untrained(name, tiny_tokenizer, tmp_path) for name in ("prompt", "prompt-fewshot"))
    q = SPORTS.question
    assert zero.prompt(SPORTS) == f"{DESC}\n\nQ: {q}\n{YES_NO}\nA: Let's think step by step."
    assert few.prompt(SPORTS) == f"{SHOTS}\n\nQ: {q}\n{YES_NO}\nA: Let's think step by step."
    arc = f"Q: {ARC.question}\n{LETTER}\nA: Let's think step by step."
    assert zero.prompt(ARC) == few.prompt(ARC) == arc


def test_with_a_chat_template_the_question_is_the_user_turn_and_the_reply_starts_the_reasoning(tiny_tokenizer, tmp_path):
    tok = chat_tokenizer(tiny_tokenizer)
    zero, few = (untrained(name, tok, tmp_path) for name in ("prompt", "prompt-fewshot"))
    q = SPORTS.question
    assert zero.prompt(SPORTS) == f"<|user|>\n{DESC}\n\nQ: {q}\n{YES_NO}</s>\n<|assistant|>\nLet's think step by step."
    assert few.prompt(SPORTS) == f"<|user|>\n{SHOTS}\n\nQ: {q}\n{YES_NO}</s>\n<|assistant|>\nLet's think step by step."
    arc = f"<|user|>\nQ: {ARC.question}\n{LETTER}</s>\n<|assistant|>\nLet's think step by step."
    assert zero.prompt(ARC) == few.prompt(ARC) == arc
    # a trained student keeps the format it was trained in (student.prompt_format, plain by default)
    assert untrained("std-cot", tok, tmp_path).prompt(SPORTS) == cot_prompt(DESC, q)


def test_a_template_that_writes_the_bos_token_does_not_get_a_second_one(tiny_tokenizer, tmp_path):
    tok = chat_tokenizer(tiny_tokenizer, "{{ bos_token }}" + CHAT)
    tok.add_special_tokens({"bos_token": "<s>"})
    tok.add_bos_token = True  # the tokenizer adds <s> itself, as Llama's and Gemma's do
    prompt = untrained("prompt", tok, tmp_path).prompt(ARC)
    assert prompt == f"<|user|>\nQ: {ARC.question}\n{LETTER}</s>\n<|assistant|>\nLet's think step by step."
    assert tok(prompt).input_ids.count(tok.bos_token_id) == 1


@pytest.mark.slow
def test_smollm2_answers_more_often_in_its_chat_template(shared_data, tmp_path):
    """Old prompt (plain Q:/A:, no instruction) vs new on the first 10 ARC-Easy test items, greedy, 128 tokens."""
    student = load_student("smollm2-135m")
    tok = student.tokenizer
    assert tok.eos_token == "<|im_end|>"  # the end of the assistant turn ends generation
    items = load_benchmark("arc-easy", shared_data, limit_per_task=10)
    method = build_method("prompt", RunConfig(output_dir=str(tmp_path)),
                          RunData(shared_data, [], [], {}, {"arc-easy": items}, {}, {}), student, tmp_path)
    new = [method.prompt(ex) for ex in items]
    assert tok(new[0]).input_ids[:2] == [tok.bos_token_id, tok.convert_tokens_to_ids("system")]  # one <|im_start|>
    generate = Generator(student.model, tok, batch_size=10, max_new_tokens=128)
    scores = {}
    for name, prompts in (("old", [cot_prompt("", ex.question) for ex in items]), ("new", new)):
        outs = generate(prompts)
        preds = [extract_answer(o.text, ex.kind, ex.options) for o, ex in zip(outs, items)]
        scores[name] = (sum(p is not None for p in preds) / len(items), sum(map(is_correct, preds, items)) / len(items),
                        sum(o.generated_tokens for o in outs) / len(outs))
    print("share with an answer, accuracy, mean generated tokens:", scores)
    assert scores["new"][0] >= 0.9 and scores["new"][0] >= scores["old"][0] + 0.3
    assert scores["new"][2] < scores["old"][2]
