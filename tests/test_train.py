"""Training mechanics on a tiny in-code Llama: masking, falling loss, checkpoints and resume."""

from __future__ import annotations

import pytest
import torch
from transformers import TrainerCallback

from skintern.train import TrainConfig
from skintern.errors import SkinternError
from skintern.prompts import cot_prompt, cot_target
from skintern.train import SFTExample, finetune, tokenize

PAIRS = [
    ("Is the following sentence plausible? \"Joao Moutinho caught the screen pass.\"",
     "Joao Moutinho is a soccer player. The screen pass is part of American football. So the answer is no.", "no"),
    ("Today is Christmas Eve of 1937. What is the date tomorrow in MM/DD/YYYY?",
     "Today is 12/24/1937, so tomorrow is 12/25/1937. So the answer is (B).", "(B)"),
]


def examples(n: int = 8) -> list[SFTExample]:
    return [
        SFTExample(f"bbh/t/{i}", cot_prompt("Answer the question.", q), cot_target(r, a))
        for i, (q, r, a) in enumerate(PAIRS * (n // len(PAIRS)))
    ]


def config(**kw) -> TrainConfig:
    base = dict(finetune="full", precision="fp32", learning_rate=5e-3, batch_size=2, epochs=1.0, save_steps=2, logging_steps=1, warmup_ratio=0.0)
    base.update(kw)
    return TrainConfig(**base)


def test_labels_mask_prompt_and_end_with_eos(tiny_tokenizer):
    rows, dropped = tokenize(tiny_tokenizer, examples(2), max_length=512)
    assert dropped == 0
    row = rows[0]
    prompt_len = len(tiny_tokenizer(examples(2)[0].prompt).input_ids)
    assert row["labels"][:prompt_len] == [-100] * prompt_len
    assert row["labels"][prompt_len:] == row["input_ids"][prompt_len:]
    assert row["input_ids"][-1] == tiny_tokenizer.eos_token_id
    target = tiny_tokenizer.decode(row["input_ids"][prompt_len:-1])
    assert target.endswith("Therefore, the answer is no.")


def test_too_long_examples_are_dropped_and_counted(tiny_tokenizer):
    rows, dropped = tokenize(tiny_tokenizer, examples(4), max_length=20)
    assert rows == [] and dropped == 4


def test_no_example_fits_is_a_clear_error(tiny_model, tiny_tokenizer, tmp_path):
    with pytest.raises(SkinternError, match="max_length=20"):
        finetune(tiny_model, tiny_tokenizer, examples(4), config(max_length=20), tmp_path / "out")


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_loss_falls(tiny_model, tiny_tokenizer, tmp_path, mode):
    cfg = config(finetune=mode, epochs=6.0, learning_rate=2e-2, save_steps=1000)
    model, stats = finetune(tiny_model, tiny_tokenizer, examples(8), cfg, tmp_path / "out", seed=1)
    assert stats.steps == 24 and stats.examples == 8
    assert stats.losses[-1] < 0.7 * stats.losses[0]
    assert (tmp_path / "out" / "done.json").is_file()
    assert (tmp_path / "out" / "final").is_dir()


class StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kw):
        if state.global_step == self.step:
            raise KeyboardInterrupt


def test_resume_after_kill_matches_uninterrupted(tiny_tokenizer, tmp_path, monkeypatch):
    from conftest import build_tiny_llama

    cfg = config(epochs=3.0, save_steps=2)
    reference, _ = finetune(build_tiny_llama(len(tiny_tokenizer)), tiny_tokenizer, examples(8), cfg, tmp_path / "a", seed=3)

    import skintern.train as train_module

    original = train_module.WeightedLossTrainer

    def killed_trainer(*args, **kw):
        trainer = original(*args, **kw)
        trainer.add_callback(StopAt(5))
        return trainer

    monkeypatch.setattr(train_module, "WeightedLossTrainer", killed_trainer)
    with pytest.raises(KeyboardInterrupt):
        finetune(build_tiny_llama(len(tiny_tokenizer)), tiny_tokenizer, examples(8), cfg, tmp_path / "b", seed=3)
    assert (tmp_path / "b" / "checkpoint-4").is_dir() and not (tmp_path / "b" / "done.json").exists()
    monkeypatch.setattr(train_module, "WeightedLossTrainer", original)

    resumed, stats = finetune(build_tiny_llama(len(tiny_tokenizer)), tiny_tokenizer, examples(8), cfg, tmp_path / "b", seed=3)
    assert stats.steps == 12
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_finished_training_is_not_repeated(tiny_tokenizer, tmp_path):
    from conftest import build_tiny_llama

    cfg = config(epochs=1.0)
    first, stats = finetune(build_tiny_llama(len(tiny_tokenizer)), tiny_tokenizer, examples(4), cfg, tmp_path / "o")
    again, stats2 = finetune(build_tiny_llama(len(tiny_tokenizer), seed=9), tiny_tokenizer, examples(4), cfg, tmp_path / "o")
    assert stats2 == stats
    for a, b in zip(first.state_dict().values(), again.state_dict().values()):
        torch.testing.assert_close(a, b)
