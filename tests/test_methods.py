"""Each method's training format and inference procedure on fixed examples (tiny student, no data files)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from skintern.config import METHODS, RunConfig
from skintern.data import Example
from skintern.evaluate import Generation
from skintern.knowledge import KnowledgeRecord, KnowledgeStore
from skintern.methods import Context, get_method
from skintern.prompts import cot_prompt
from skintern.run import RunData
from skintern.student import Student
from skintern.train import SFTExample, WeightedLossTrainer, tokenize

DESC = "Determine whether a sentence is plausible."


def sports(i: int, name: str, sport_word: str, answer: str) -> Example:
    return Example("bbh", "sports_understanding", i,
                   f'Is the following sentence plausible? "{name} {sport_word}."', answer, "yes_no")


TRAIN = [
    sports(0, "Joao Moutinho", "caught the screen pass", "No"),
    sports(1, "Kyle Palmieri", "was called for slashing", "Yes"),
    sports(2, "Jamal Murray", "was perfect from the line", "Yes"),
]
TEST = sports(10, "Kyle Palmieri", "scored a touchdown", "No")
RATIONALES = {
    TRAIN[0].id: "Joao Moutinho is a soccer player. The screen pass is football. So the answer is no.",
    TRAIN[1].id: "Kyle Palmieri is a hockey player. Slashing is hockey. So the answer is yes.",
    TRAIN[2].id: "Jamal Murray is a basketball player. Free throws are basketball. So the answer is yes.",
}
KNOWLEDGE = KnowledgeStore([
    KnowledgeRecord("sports_understanding", i, f"1. Find the sport of player {i}.\n2. Match the event.",
                    f"1. Each athlete plays one sport.\n2. Fact number {i}.") for i in range(3)
])


@pytest.fixture
def ctx(tiny_model, tiny_tokenizer, tmp_path) -> Context:
    cfg = RunConfig(output_dir=str(tmp_path))
    cfg.knowledge.embedder = "tfidf"
    rd = RunData(data_dir=Path("."), train_pool=TRAIN, train=TRAIN, rationales=RATIONALES, tests={"bbh": [TEST]},
                 descriptions={"sports_understanding": DESC},
                 fewshot={"sports_understanding": f"{DESC}\n\nQ: shot?\nA: Let's think step by step. So the answer is yes."},
                 knowledge=KNOWLEDGE)
    return Context(cfg=cfg, data=rd, student=Student(tiny_model, tiny_tokenizer, "tiny", "."), run_dir=tmp_path)


def test_every_config_method_is_registered():
    assert {get_method(m).name for m in METHODS} == set(METHODS)


def test_std_cot_format(ctx):
    method = get_method("std-cot")(ctx)
    first = method.train_examples()[0]
    assert first.prompt == f"{DESC}\n\nQ: {TRAIN[0].question}\nA: Let's think step by step."
    assert first.target == " Joao Moutinho is a soccer player. The screen pass is football. Therefore, the answer is No."
    assert method.prompt(TEST) == cot_prompt(DESC, TEST.question) and method.second_pass is None


def test_prompting_zero_and_few_shot(ctx):
    zero, few = get_method("prompt")(ctx), get_method("prompt-fewshot")(ctx)
    assert zero.fit() is None and not zero.trains
    assert zero.prompt(TEST) == cot_prompt(DESC, TEST.question)
    assert few.prompt(TEST).startswith(f"{DESC}\n\nQ: shot?") and few.prompt(TEST).endswith(
        f"Q: {TEST.question}\nA: Let's think step by step.")


@pytest.mark.parametrize("name, answer_prompt_end, answer_target", [
    ("mt-cot", "\nA: The answer is", " No."),
    ("step-by-step", "\nA:", " No"),
])
def test_multitask_formats(ctx, name, answer_prompt_end, answer_target):
    ctx.cfg.methods.alpha = 0.7
    method = get_method(name)(ctx)
    rows = method.train_examples()
    assert len(rows) == 2 * len(TRAIN)
    answer, rationale = rows[0], rows[1]
    assert answer.prompt.endswith(answer_prompt_end) and answer.target == answer_target and answer.weight == 0.7
    assert rationale.target == " Joao Moutinho is a soccer player. The screen pass is football."
    assert rationale.weight == pytest.approx(0.3)
    if name == "step-by-step":
        assert answer.prompt.startswith("[label] ") and rationale.prompt.startswith("[rationale] ")
    assert method.prompt(TEST) == method.answer_prompt(TEST)
    assert method.max_new_tokens == ctx.cfg.methods.answer_max_new_tokens


def test_cascod_two_passes(ctx):
    method = get_method("cascod")(ctx)
    rows = method.train_examples()
    rationale, answer = rows[0], rows[1]
    assert rationale.prompt == cot_prompt(DESC, TRAIN[0].question)
    assert rationale.target == " Joao Moutinho is a soccer player. The screen pass is football."
    assert answer.prompt == f"{rationale.prompt} Joao Moutinho is a soccer player. The screen pass is football.\nTherefore, the answer is"
    assert answer.target == " No."
    firsts = [Generation(" Kyle Palmieri plays hockey. So the answer is yes.", 30, 12)]
    seconds = method.second_pass([TEST], firsts)
    assert seconds[0].text.startswith(" Therefore, the answer is")
    expected_prompt = method.answer_prompt(TEST, "Kyle Palmieri plays hockey.")
    assert seconds[0].prompt_tokens == len(ctx.student.tokenizer(expected_prompt).input_ids)


def test_kard_puts_retrieved_training_knowledge_in_train_and_test_prompts(ctx):
    ctx.cfg.methods.kard_top_k = 2
    method = get_method("kard")(ctx)
    prompt = method.prompt(TEST)
    assert "Knowledge:\nLearning summary:" in prompt and prompt.endswith(f"Q: {TEST.question}\nA: Let's think step by step.")
    assert "player 1" in prompt  # the Kyle Palmieri training item is the nearest
    train_prompt = method.train_examples()[0].prompt
    assert "player 0" not in train_prompt  # a training item never retrieves its own knowledge
    assert len(ctx.student.tokenizer(prompt).input_ids) > len(ctx.student.tokenizer(cot_prompt(DESC, TEST.question)).input_ids)


def test_weighted_loss_is_weighted_mean_of_per_example_losses(tiny_model, tiny_tokenizer):
    from transformers import DataCollatorForSeq2Seq, TrainingArguments

    pairs = [SFTExample("a", "Q: one?\nA:", " yes", weight=0.8), SFTExample("b", "Q: two two?\nA:", " no no no", weight=0.2)]
    rows, _ = tokenize(tiny_tokenizer, pairs, 64)
    batch = DataCollatorForSeq2Seq(tiny_tokenizer, padding=True, label_pad_token_id=-100)(rows)
    trainer = WeightedLossTrainer(model=tiny_model, args=TrainingArguments(output_dir="/tmp/unused", report_to="none", use_cpu=True))
    loss = trainer.compute_loss(tiny_model, dict(batch))
    with torch.no_grad():
        per = [tiny_model(input_ids=torch.tensor([r["input_ids"]]), labels=torch.tensor([r["labels"]])).loss for r in rows]
    assert loss.item() == pytest.approx((0.8 * per[0] + 0.2 * per[1]).item(), rel=1e-5)
