"""Speed switches of train.finetune change speed, not the model: gradient checkpointing gives the same
weights, bf16 autocast trains, group_by_length sees the same examples."""

from __future__ import annotations

import pytest
import torch

from conftest import build_tiny_llama
from skintern.train import TrainConfig
from skintern.prompts import cot_prompt, cot_target
from skintern.train import SFTExample, finetune

QUESTIONS = ["Is the following sentence plausible? \"Joao Moutinho caught the screen pass.\"",
             "Today is Christmas Eve of 1937. What is the date tomorrow in MM/DD/YYYY? Options: (A) 12/25/1937 (B) 01/04/1938"]


def examples() -> list[SFTExample]:
    return [SFTExample(f"bbh/t/{i}", cot_prompt("", QUESTIONS[i % 2] + " x" * i), cot_target("Identify the sport.", "no"))
            for i in range(8)]


def train(tokenizer, tmp_path, **kw):
    cfg = TrainConfig(**{**dict(finetune="lora", precision="fp32", learning_rate=1e-2, batch_size=4, epochs=1.0,
                                save_steps=1000, logging_steps=1, warmup_ratio=0.0, lora_dropout=0.0, group_by_length=False), **kw})
    model, stats = finetune(build_tiny_llama(len(tokenizer)), tokenizer, examples(), cfg, tmp_path / str(sorted(kw.items())), seed=3)
    return {k: v.detach().float() for k, v in model.state_dict().items() if kw.get("finetune") == "full" or "lora_" in k}, stats


@pytest.mark.parametrize("finetune_mode", ["lora", "full"])
def test_gradient_checkpointing_gives_the_same_weights(tiny_tokenizer, tmp_path, finetune_mode):
    plain, s1 = train(tiny_tokenizer, tmp_path, finetune=finetune_mode)
    ckpt, s2 = train(tiny_tokenizer, tmp_path, finetune=finetune_mode, gradient_checkpointing=True)
    assert s1.losses == pytest.approx(s2.losses, rel=1e-5)
    assert all(torch.allclose(plain[k], ckpt[k], atol=1e-6) for k in plain)


def test_bf16_autocast_trains(tiny_tokenizer, tmp_path):
    _, stats = train(tiny_tokenizer, tmp_path, precision="bf16", learning_rate=3e-2, epochs=2.0)
    assert all(torch.isfinite(torch.tensor(stats.losses))) and stats.losses[-1] < stats.losses[0]


def test_group_by_length_sees_every_example(tiny_tokenizer, tmp_path):
    _, grouped = train(tiny_tokenizer, tmp_path, group_by_length=True)
    _, plain = train(tiny_tokenizer, tmp_path)
    assert grouped.examples == plain.examples == 8 and grouped.steps == plain.steps == 2
