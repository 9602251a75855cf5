"""Training tokens/s: the SKIntern progressive trainer (`train.finetune` stage after stage) against one
plain `transformers.Trainer` on the same tokenized rows, in the same order (sequential sampling, so its
batches pad like the per-stage ones), for the same total steps; prints the overhead.

The progressive trainer pays for a Trainer per stage (set-up, a save of `final/`, done.json); the target
is < 10 % overhead. Default: a tiny in-code Llama, so it runs in a minute on CPU; --model smollm2-135m
(or any student name) for a real model.

    python benchmarks/train_throughput.py [--model tiny|NAME] [--stages 3] [--steps-per-stage 4] [--batch 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from skintern.prompts import augmented_prompt, cot_target, worked_example  # noqa: E402
from skintern.train import SFTExample, TrainConfig, finetune, tokenize, with_lora  # noqa: E402

QUESTION = 'Is the following sentence plausible? "Joao Moutinho caught the screen pass in the NFC championship."'
KNOWLEDGE = "Learning summary:\n1. Identify the sport.\n2. Check the event.\nSupplementary knowledge:\n1. The NFC is American football."


def load(model_name: str):
    if model_name == "tiny":
        from conftest import build_tiny_llama, build_tokenizer

        tok = build_tokenizer()
        return build_tiny_llama(len(tok)), tok
    from skintern.student import load_student

    s = load_student(model_name)
    return s.model, s.tokenizer


def stage_examples(stages: int, n: int) -> list[list[SFTExample]]:
    """Inputs shrink stage by stage (knowledge, then examples drop out), targets stay, as in SKIntern."""
    target = cot_target("Joao Moutinho is a soccer player. The NFC championship is part of American football.", "no")
    out = []
    for s in range(stages):
        shots = [worked_example(QUESTION, "Soccer is not American football.", "no")] * (stages - 1 - s)
        know = KNOWLEDGE if s < stages - 1 else None
        out.append([SFTExample(f"x/{s}/{i}", augmented_prompt("", QUESTION + " ." * i, know, shots), target) for i in range(n)])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--stages", type=int, default=3)
    ap.add_argument("--steps-per-stage", type=int, default=4)
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()
    cfg = TrainConfig(finetune="lora", precision="fp32", batch_size=args.batch, epochs=1.0, save_steps=10_000,
                      logging_steps=10_000, warmup_ratio=0.0, group_by_length=False)
    per_stage = stage_examples(args.stages, args.batch * args.steps_per_stage)
    model, tok = load(args.model)
    tokens = sum(len(r["input_ids"]) for ex in per_stage for r in tokenize(tok, ex, cfg.max_length)[0])

    with tempfile.TemporaryDirectory() as tmp:  # an untimed warm-up step, so neither side pays first-run costs
        finetune(model, tok, per_stage[0][: args.batch], cfg, Path(tmp) / "warm-up", seed=0)
        model, tok = load(args.model)
        start = time.perf_counter()
        for s, examples in enumerate(per_stage):
            model, _ = finetune(model, tok, examples, cfg, Path(tmp) / f"stage-{s}", seed=0)
        progressive = time.perf_counter() - start

        model, tok = load(args.model)
        rows = [r for ex in per_stage for r in tokenize(tok, ex, cfg.max_length)[0]]
        rows = [{k: v for k, v in r.items() if k not in ("weight", "task")} for r in rows]
        targs = TrainingArguments(output_dir=str(Path(tmp) / "plain"), per_device_train_batch_size=args.batch,
                                  max_steps=args.stages * args.steps_per_stage, learning_rate=cfg.learning_rate,
                                  save_strategy="no", report_to="none", use_cpu=True, logging_steps=10_000,
                                  remove_unused_columns=False, disable_tqdm=True, dataloader_pin_memory=False,
                                  train_sampling_strategy="sequential")
        trainer = Trainer(model=with_lora(model, cfg), args=targs, train_dataset=rows,
                          data_collator=DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100))
        start = time.perf_counter()
        trainer.train()
        trainer.save_model(str(Path(tmp) / "plain" / "final"))
        plain = time.perf_counter() - start

    steps = args.stages * args.steps_per_stage
    print(f"model {args.model}: {args.stages} stages x {args.steps_per_stage} steps x batch {args.batch}, {tokens} tokens")
    print(f"progressive (finetune per stage): {tokens / progressive:10.1f} tokens/s  ({progressive:.1f} s, {steps} steps)")
    print(f"plain Trainer (one run)         : {tokens / plain:10.1f} tokens/s  ({plain:.1f} s, {steps} steps)")
    print(f"overhead: {100 * (progressive - plain) / plain:+.1f} %  (target < 10 %)")


if __name__ == "__main__":
    main()
