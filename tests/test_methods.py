"""Each method's training format and inference procedure on fixed examples (tiny student, no data files)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from skintern.config import RunConfig
from skintern.data import Example
from skintern.evaluate import ANSWER_MARGIN
from skintern.generation import Generation, Generator
from skintern.knowledge import KnowledgeRecord, KnowledgeStore
from skintern.methods import METHODS, Method
from skintern.methods.rundata import RunData
from skintern.prompts import cot_prompt
from skintern.run import build_method
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
def cfg(tmp_path) -> RunConfig:
    cfg = RunConfig(output_dir=str(tmp_path))
    cfg.retrieval.embedder = "tfidf"
    return cfg


@pytest.fixture
def make(cfg, tiny_model, tiny_tokenizer, tmp_path):
    """Build a method on the tiny student and the fixed data, with the settings of `cfg`."""
    rd = RunData(data_dir=Path("."), train_pool=TRAIN, train=TRAIN, rationales=RATIONALES, tests={"bbh": [TEST]},
                 descriptions={"sports_understanding": DESC},
                 fewshot={"sports_understanding": f"{DESC}\n\nQ: shot?\nA: Let's think step by step. So the answer is yes."},
                 knowledge=KNOWLEDGE)
    student = Student(tiny_model, tiny_tokenizer, "tiny", ".")
    return lambda name: build_method(name, cfg, rd, student, tmp_path)


class Recorder:
    """A generator stand-in that records each call's prompts and cap and answers with fixed text."""

    def __init__(self, text: str = " It is so. Therefore, the answer is (A)."):
        self.text, self.calls = text, []

    def __call__(self, prompts, max_new_tokens=None):
        self.calls.append((list(prompts), max_new_tokens))
        return [Generation(self.text, 10, 5) for _ in prompts]


def test_the_registry_names_every_method_once():
    assert all(name == cls.name and issubclass(cls, Method) for name, cls in METHODS.items())
    assert list(METHODS) == ["prompt", "prompt-fewshot", "zero-shot", "fine-tune", "kaft", "std-cot", "mt-cot", "step-by-step",
                            "kard", "cascod", "skintern", "teacher"]


def test_std_cot_format(make):
    method = make("std-cot")
    first = method.train_pairs()[0]
    assert first.prompt == f"{DESC}\n\nQ: {TRAIN[0].question}\nA: Let's think step by step."
    assert first.target == " Joao Moutinho is a soccer player. The screen pass is football. Therefore, the answer is No."
    assert method.prompt(TEST) == cot_prompt(DESC, TEST.question)
    generate = Recorder()
    assert [len(p) for p in method.infer([TEST], generate)] == [1]
    assert generate.calls == [([cot_prompt(DESC, TEST.question)], None)]  # one pass, under eval.max_new_tokens


def test_prompting_zero_and_few_shot(make, tiny_model):
    zero, few = make("prompt"), make("prompt-fewshot")
    fitted = zero.fit()
    assert fitted.stats is None and fitted.model is tiny_model and not zero.trains
    instruction = 'End with the sentence "Therefore, the answer is X." where X is Yes or No.'
    assert zero.prompt(TEST) == f"{DESC}\n\nQ: {TEST.question}\n{instruction}\nA: Let's think step by step."
    assert few.prompt(TEST).startswith(f"{DESC}\n\nQ: shot?") and few.prompt(TEST).endswith(
        f"Q: {TEST.question}\n{instruction}\nA: Let's think step by step.")


@pytest.mark.parametrize("name, answer_prompt_end, answer_target", [
    ("mt-cot", "\nA: The answer is", " No."),
    ("step-by-step", "\nA:", " No"),
])
def test_multitask_formats(cfg, make, name, answer_prompt_end, answer_target):
    cfg.methods[name].alpha = 0.7
    method = make(name)
    rows = method.train_pairs()
    assert len(rows) == 2 * len(TRAIN)
    answer, rationale = rows[0], rows[1]
    assert answer.prompt.endswith(answer_prompt_end) and answer.target == answer_target and answer.weight == 0.7
    assert rationale.target == " Joao Moutinho is a soccer player. The screen pass is football."
    assert rationale.weight == pytest.approx(0.3)
    if name == "step-by-step":
        assert answer.prompt.startswith("[label] ") and rationale.prompt.startswith("[rationale] ")
    assert method.prompt(TEST) == method.answer_prompt(TEST)
    generate = Recorder()
    method.infer([TEST], generate)
    assert generate.calls == [([method.answer_prompt(TEST)], method.answer_cap)]
    # no cap set: the longest gold answer (" No." / " Yes.") plus the margin, from the data
    longest = max(len(method.ctx.student.tokenizer(f" {a}.", add_special_tokens=False).input_ids) for a in ("No", "Yes"))
    assert method.answer_cap == longest + ANSWER_MARGIN and method.result_extras() == {"answer_max_new_tokens": method.answer_cap}
    cfg.methods[name].answer_max_new_tokens = 3
    assert make(name).answer_cap == 3


def test_cascod_two_passes(make, tiny_model, tiny_tokenizer):
    method = make("cascod")
    rows = method.train_pairs()
    rationale, answer = rows[0], rows[1]
    assert rationale.prompt == cot_prompt(DESC, TRAIN[0].question)
    assert rationale.target == " Joao Moutinho is a soccer player. The screen pass is football."
    assert answer.prompt == f"{rationale.prompt} Joao Moutinho is a soccer player. The screen pass is football.\nTherefore, the answer is"
    assert answer.target == " No."
    generate = Recorder(" Kyle Palmieri plays hockey. So the answer is yes.")
    (passes,) = method.infer([TEST], generate)
    assert len(passes) == 2 and passes[1].text.startswith(" Therefore, the answer is")
    expected_prompt = method.answer_prompt(TEST, "Kyle Palmieri plays hockey.")
    assert generate.calls == [([method.prompt(TEST)], None), ([expected_prompt], method.answer_cap)]
    # both passes go through the one generator the run builds from eval settings (its backend included)
    real = Generator(tiny_model, tiny_tokenizer, max_new_tokens=4)
    (passes,) = method.infer([TEST], real)
    assert passes[1].prompt_tokens > passes[0].prompt_tokens


def test_kard_puts_retrieved_training_knowledge_in_train_and_test_prompts(cfg, make, tiny_tokenizer):
    cfg.methods["kard"].top_k = 2
    method = make("kard")
    prompt = method.prompt(TEST)
    assert "Knowledge:\nLearning summary:" in prompt and prompt.endswith(f"Q: {TEST.question}\nA: Let's think step by step.")
    assert "player 1" in prompt  # the Kyle Palmieri training item is the nearest
    train_prompt = method.train_pairs()[0].prompt
    assert "player 0" not in train_prompt  # a training item never retrieves its own knowledge
    assert len(tiny_tokenizer(prompt).input_ids) > len(tiny_tokenizer(cot_prompt(DESC, TEST.question)).input_ids)


def test_kard_and_kaft_plans_count_the_retrieved_passages(cfg):
    """The dry run's training tokens: KARD's are Std-CoT's, KAFT's fine-tuning's, plus top_k of the corpus's mean
    knowledge record in every pair and pass."""
    rd = RunData(data_dir=Path("."), train_pool=TRAIN, train=TRAIN, rationales=RATIONALES, tests={"bbh": [TEST]},
                 descriptions={}, fewshot={}, knowledge=KNOWLEDGE)
    cfg.methods["kard"].top_k = cfg.methods["kaft"].top_k = 2
    mean_record = sum(len(KNOWLEDGE.get(ex.task, ex.index).text()) for ex in TRAIN) / len(TRAIN)
    added = int(2 * mean_record * len(TRAIN) * cfg.train.epochs / 4)
    for method, without in (("kard", "std-cot"), ("kaft", "fine-tune")):
        plan = METHODS[method].plan(cfg.settings(method), rd, cfg.train)
        bare = METHODS[without].plan(cfg.settings(without), rd, cfg.train)
        assert added > 0 and plan.tokens == bare.tokens + added
        assert (plan.items, plan.pairs, plan.epochs) == (bare.items, bare.pairs, bare.epochs)


def test_weighted_loss_is_the_weighted_sum_of_per_task_token_means(tiny_model, tiny_tokenizer):
    """At alpha = 0.5 both tasks weigh the same and must still be averaged separately: a task is what the row
    trains, not its weight."""
    from transformers import DataCollatorForSeq2Seq, TrainingArguments

    pairs = [SFTExample("a", "Q: one?\nA:", " yes", weight=0.5, task="answer"),
             SFTExample("b", "Q: two two?\nA:", " no no no because", weight=0.5, task="rationale"),
             SFTExample("c", "Q: three?\nA:", " no", weight=0.5, task="answer")]
    rows, _ = tokenize(tiny_tokenizer, pairs, 64)
    batch = DataCollatorForSeq2Seq(tiny_tokenizer, padding=True, label_pad_token_id=-100)(rows)
    trainer = WeightedLossTrainer(model=tiny_model, args=TrainingArguments(output_dir="/tmp/unused", report_to="none", use_cpu=True))
    loss = trainer.compute_loss(tiny_model, dict(batch))
    with torch.no_grad():
        sums, counts = {}, {}
        for pair, row in zip(pairs, rows):
            out = tiny_model(input_ids=torch.tensor([row["input_ids"]]), labels=torch.tensor([row["labels"]]))
            n = sum(label != -100 for label in row["labels"][1:])
            sums[pair.task] = sums.get(pair.task, 0.0) + out.loss.item() * n
            counts[pair.task] = counts.get(pair.task, 0) + n
    expected = 0.5 * sums["answer"] / counts["answer"] + 0.5 * sums["rationale"] / counts["rationale"]
    assert loss.item() == pytest.approx(expected, rel=1e-5)
