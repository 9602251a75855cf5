"""The LM head on target tokens only gives the loss and the gradients of the full-logits path."""

from __future__ import annotations

import pytest
import torch
from transformers import DataCollatorForSeq2Seq, TrainingArguments

from conftest import build_tiny_llama
from skintern.train import SFTExample, TrainConfig, WeightedLossTrainer, tokenize, with_lora

LONG_PROMPT = "Knowledge: " + " ".join(f"fact {i} is that 0 1 2 3 4 5." for i in range(40)) + "\nQ: one?\nA:"


def pairs(weighted: bool) -> list[SFTExample]:
    alpha = 0.3 if weighted else 1.0
    kinds = [("answer", alpha), ("rationale", 1 - alpha)] if weighted else [("", 1.0), ("", 1.0)]
    return [
        SFTExample("a", LONG_PROMPT, " yes", weight=kinds[0][1], task=kinds[0][0]),  # target right after a long prompt
        SFTExample("b", "Q: two two?\nA:", " no no no because of the screen pass", weight=kinds[1][1], task=kinds[1][0]),
        SFTExample("c", "Q: three?\nA:", " no", weight=kinds[0][1], task=kinds[0][0]),
    ]


@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weighted"])
@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_target_only_loss_and_gradients_equal_the_full_logits_path(tiny_tokenizer, tmp_path, weighted, finetune):
    rows, dropped = tokenize(tiny_tokenizer, pairs(weighted), 1024)
    assert dropped == 0 and len(rows[0]["input_ids"]) > 200  # the long prompt is most of its row
    batch = DataCollatorForSeq2Seq(tiny_tokenizer, padding=True, label_pad_token_id=-100)(rows)
    results = []
    for full_logits in (True, False):
        model = with_lora(build_tiny_llama(len(tiny_tokenizer), seed=3), TrainConfig(finetune=finetune, lora_dropout=0.0))
        if finetune == "lora":  # a trained-looking adapter, so LoRA gradients reach through B
            torch.manual_seed(0)
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    torch.nn.init.normal_(p, std=0.1)
        trainer = WeightedLossTrainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), report_to="none",
                                                                          use_cpu=True), full_logits=full_logits)
        loss = trainer.compute_loss(model, dict(batch))
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
        results.append((loss.detach(), grads))
    (full_loss, full_grads), (loss, grads) = results
    torch.testing.assert_close(loss, full_loss, rtol=1e-5, atol=1e-5)
    assert grads.keys() == full_grads.keys() and grads
    for name in grads:
        torch.testing.assert_close(grads[name], full_grads[name], rtol=1e-5, atol=1e-6, msg=name)


def test_only_target_positions_reach_the_lm_head(tiny_tokenizer, tmp_path):
    rows, _ = tokenize(tiny_tokenizer, pairs(False), 1024)
    batch = DataCollatorForSeq2Seq(tiny_tokenizer, padding=True, label_pad_token_id=-100)(rows)
    model = build_tiny_llama(len(tiny_tokenizer))
    seen = []
    model.lm_head.register_forward_hook(lambda module, args, out: seen.append(args[0].shape))
    trainer = WeightedLossTrainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True))
    trainer.compute_loss(model, dict(batch))
    targets = int((batch["labels"][:, 1:] != -100).sum())
    assert seen == [torch.Size([targets, model.config.hidden_size])]
    assert targets < batch["input_ids"].numel() / 4  # most positions are prompt and padding
