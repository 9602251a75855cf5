"""The LM head on target tokens only against the full-logits path: step time, training tokens/s and peak
memory, for a Std-CoT batch and a SKIntern first-stage batch (knowledge + 3 worked examples), side by side.

Each of the four runs is its own process, so its peak memory (RSS on CPU, torch.cuda.max_memory_allocated on a
GPU) is its own. Real BBH items and teacher outputs from the shared data; LoRA as in compare-cpu.

    python benchmarks/lm_head.py [--model smollm2-135m] [--batch 8] [--steps 3] [--data-dir ../shared/data]
                                 [--task date_understanding] [--gradient-checkpointing]

date_understanding's first-stage rows are about 1,050 tokens, a little over compare-cpu's max_length (1,024), so
its peak memory bounds compare-cpu's; sports_understanding's are about 400.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time

import torch
from transformers import DataCollatorForSeq2Seq, TrainingArguments

from skintern import data as D
from skintern.data import DataConfig
from skintern.evaluate import EvalConfig
from skintern.methods.rundata import load_run_data
from skintern.prompts import augmented_prompt, cot_prompt, cot_target, worked_example
from skintern.student import load_student
from skintern.train import SFTExample, TrainConfig, WeightedLossTrainer, resolve_precision, tokenize, with_lora

def batch_pairs(kind: str, n: int, data_dir: str | None, task: str) -> list[SFTExample]:
    """n training pairs of `task`: Std-CoT's (question -> rationale + answer) or SKIntern's first stage (the same
    pair with the item's knowledge uncompressed and the 3 next items of its task as worked examples in the prompt)."""
    rd = load_run_data(DataConfig(data_dir=data_dir, tasks=[task], require_knowledge=True), EvalConfig(per_task=1))
    items = rd.train[: n + 3]
    pairs = []
    for i, ex in enumerate(items[:n]):
        target = cot_target(rd.rationales[ex.id], ex.answer)
        description = rd.description(ex)
        if kind == "std-cot":
            prompt = cot_prompt(description, ex.question)
        else:
            shots = [worked_example(o.question, rd.rationales[o.id], o.answer) for o in items[i + 1 : i + 4]]
            prompt = augmented_prompt(description, ex.question, rd.knowledge.get(ex.task, ex.index).text(), shots)
        pairs.append(SFTExample(ex.id, prompt, target))
    return pairs


def one_run(model_name: str, kind: str, full_logits: bool, batch: int, steps: int, data_dir: str | None,
            task: str, checkpointing: bool) -> dict:
    student = load_student(model_name)
    cfg = TrainConfig(finetune="lora", batch_size=batch, max_length=4096)
    rows, _ = tokenize(student.tokenizer, batch_pairs(kind, batch, data_dir, task), cfg.max_length)
    student.tokenizer.padding_side = "right"
    collated = DataCollatorForSeq2Seq(student.tokenizer, padding=True, label_pad_token_id=-100)(rows)
    model = with_lora(student.model, cfg)
    if checkpointing:  # as finetune does with train.gradient_checkpointing
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    precision = resolve_precision(cfg.precision)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = WeightedLossTrainer(model=model, args=TrainingArguments(
            output_dir=tmp, report_to="none", use_cpu=not torch.cuda.is_available(), bf16=precision == "bf16"),
            full_logits=full_logits)
        trainer.create_optimizer()
        model.train()  # as Trainer.train does: dropout on, gradient checkpointing active
        times = []
        for step in range(steps + 1):  # the first step warms up, untimed
            start = time.perf_counter()
            with trainer.compute_loss_context_manager():
                loss = trainer.compute_loss(model, {k: v.to(model.device) for k, v in collated.items()})
            loss.backward()
            trainer.optimizer.step()
            trainer.optimizer.zero_grad()
            if step:
                times.append(time.perf_counter() - start)
    tokens = int(collated["attention_mask"].sum())
    peak = (torch.cuda.max_memory_allocated() if torch.cuda.is_available()
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"kind": kind, "path": "full logits" if full_logits else "target only", "tokens": tokens,
            "targets": int((collated["labels"][:, 1:] != -100).sum()), "seq": collated["input_ids"].shape[1],
            "step_s": sum(times) / len(times), "tokens_per_s": tokens * len(times) / sum(times), "peak_gib": peak / 2**30,
            "precision": precision}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--task", default="date_understanding", help="BBH task whose train items make the batches")
    ap.add_argument("--gradient-checkpointing", action="store_true", help="as train.gradient_checkpointing: true")
    ap.add_argument("--one", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)  # a child run
    args = ap.parse_args()
    if args.one:
        kind, path = args.one
        print(json.dumps(one_run(args.model, kind, path == "full", args.batch, args.steps, args.data_dir,
                                 args.task, args.gradient_checkpointing)))
        return
    D.resolve_data_dir(args.data_dir)
    print(f"model {args.model}, LoRA, {args.task} items, batch {args.batch}, {args.steps} timed steps after one warm-up; one process per run"
          + (", gradient checkpointing" if args.gradient_checkpointing else ""))
    print(f"{'batch':<20} {'path':<12} {'seq':>5} {'targets':>7} {'step s':>7} {'tokens/s':>9} {'peak GiB':>9}")
    runs = {}
    for kind in ("std-cot", "skintern-stage-0"):
        for path in ("full", "target"):
            cmd = [sys.executable, __file__, "--model", args.model, "--batch", str(args.batch), "--steps", str(args.steps),
                   "--task", args.task, "--one", kind, path] + (["--data-dir", args.data_dir] if args.data_dir else []) \
                + (["--gradient-checkpointing"] if args.gradient_checkpointing else [])
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            r = runs[kind, path] = json.loads(out)
            print(f"{kind:<20} {r['path']:<12} {r['seq']:>5} {r['targets']:>7} {r['step_s']:>7.2f} {r['tokens_per_s']:>9.1f} "
                  f"{r['peak_gib']:>9.2f}")
    for kind in ("std-cot", "skintern-stage-0"):
        full, target = runs[kind, "full"], runs[kind, "target"]
        print(f"{kind}: peak memory x{target['peak_gib'] / full['peak_gib']:.2f}, step time x{target['step_s'] / full['step_s']:.2f} "
              f"(target only / full logits; precision {target['precision']})")


if __name__ == "__main__":
    main()
