"""Batched greedy generation, answer extraction and accuracy.

Predictions are appended to `<name>.jsonl.partial` batch by batch, so a killed evaluation
resumes where it stopped; the finished file is renamed into place."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import PeftModel
from tqdm.auto import tqdm

from skintern.data import Example, extract_answer, is_correct
from skintern.files import read_jsonl
from skintern.flops import ModelShape, query_flops
from skintern.prompts import STOP_STRINGS, cut_at_stop


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    generated_tokens: int


@contextmanager
def merged_lora(model):
    """Generate with LoRA weights folded into the base weights: same outputs, no per-layer adapter matmuls."""
    merge = isinstance(model, PeftModel) and not any(getattr(m, "merged", False) for m in model.modules())
    if merge:
        model.merge_adapter()
    try:
        yield model
    finally:
        if merge:
            model.unmerge_adapter()


@torch.inference_mode()
def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    batch_size: int = 8,
    max_new_tokens: int = 256,
    stop_strings: Sequence[str] = STOP_STRINGS,
    progress: bool = False,
    backend: str = "hf",
) -> list[Generation]:
    """Greedy decoding in length-sorted batches (less padding); each row stops at EOS or a stop string.

    `backend` (eval.backend: auto | hf | vllm) may hand the prompts to vLLM under the same contract
    (see `skintern.vllm_backend`)."""
    from skintern.vllm_backend import resolve_backend, vllm_generate

    if resolve_backend(backend) == "vllm":
        return vllm_generate(model, tokenizer, prompts, max_new_tokens, stop_strings)
    model.eval()
    tokenizer.padding_side = "left"
    lengths = [len(tokenizer(p).input_ids) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
    results: list[Generation | None] = [None] * len(prompts)
    bar = tqdm(total=len(prompts), desc="generate", disable=not progress, unit="q")
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True).to(model.device)
        with merged_lora(model):
            out = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                stop_strings=list(stop_strings),
                tokenizer=tokenizer,
                pad_token_id=tokenizer.pad_token_id,
            )
        new = out[:, batch["input_ids"].shape[1] :]
        for row, i in enumerate(idx):
            ids = new[row].tolist()
            n = _generated_length(ids, tokenizer)
            text = cut_at_stop(tokenizer.decode(ids[:n], skip_special_tokens=True), stop_strings)
            results[i] = Generation(text=text, prompt_tokens=lengths[i], generated_tokens=n)
        bar.update(len(idx))
    bar.close()
    return results  # type: ignore[return-value]


def _generated_length(ids: list[int], tokenizer) -> int:
    """Tokens actually generated: up to and including the first EOS, without the padding after it."""
    eos = tokenizer.eos_token_id
    if eos in ids:
        return ids.index(eos) + 1
    while ids and ids[-1] == tokenizer.pad_token_id:
        ids = ids[:-1]
    return len(ids)


@dataclass
class EvalResult:
    accuracy: float
    n: int
    per_task: dict[str, float]
    prompt_tokens_per_query: float
    generated_tokens_per_query: float
    wall_time_per_query_s: float
    predictions_path: Path
    flops_per_query: dict[str, float] | None = None  # mean over rows of each row's own count

    def summary(self) -> dict:
        return {"accuracy": self.accuracy, "n": self.n, "per_task": self.per_task}


SecondPass = Callable[[Sequence[Example], Sequence[Generation]], Sequence[Generation]]


def evaluate(
    model,
    tokenizer,
    examples: Sequence[Example],
    prompt_fn: Callable[[Example], str],
    predictions_path: Path,
    batch_size: int = 8,
    max_new_tokens: int = 256,
    second_pass: SecondPass | None = None,
    shape: ModelShape | None = None,
    backend: str = "hf",
) -> EvalResult:
    """Generate for every example (resuming from a partial file), score and save per-example predictions.

    `second_pass(examples, first_generations)` runs a method's next pass (CasCoD's answer step); the
    answer is read from its output and its tokens count towards the query's cost. With `shape`, each
    row also records its FLOPs (`flops.query_flops`, summed over passes). `backend`: see `generate`."""
    predictions_path = Path(predictions_path)
    partial = predictions_path.with_name(predictions_path.name + ".partial")
    if predictions_path.is_file():
        rows = read_jsonl(predictions_path)
    else:
        rows = read_jsonl(partial) if partial.is_file() else []
        done = {r["id"] for r in rows}
        todo = [ex for ex in examples if ex.id not in done]
        partial.parent.mkdir(parents=True, exist_ok=True)
        bar = tqdm(total=len(examples), initial=len(examples) - len(todo), desc=f"eval {predictions_path.stem}", unit="q")
        with partial.open("a", encoding="utf-8") as f:
            for start in range(0, len(todo), batch_size):
                chunk = todo[start : start + batch_size]
                t0 = time.perf_counter()
                passes = [generate(model, tokenizer, [prompt_fn(ex) for ex in chunk], batch_size, max_new_tokens, backend=backend)]
                if second_pass is not None:
                    passes.append(list(second_pass(chunk, passes[0])))
                seconds = (time.perf_counter() - t0) / len(chunk)
                for i, ex in enumerate(chunk):
                    row = _prediction_row(ex, [p[i] for p in passes], seconds, shape)
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
                    rows.append(row)
                f.flush()
                bar.update(len(chunk))
        bar.close()
        partial.replace(predictions_path)
    wanted = {ex.id for ex in examples}
    rows = [r for r in rows if r["id"] in wanted]
    return score(rows, predictions_path)


def _prediction_row(ex: Example, passes: list[Generation], seconds: float, shape: ModelShape | None) -> dict:
    answer_text = passes[-1].text
    pred = extract_answer(answer_text, ex.kind, ex.options)
    row = {
        "id": ex.id,
        "dataset": ex.dataset,
        "task": ex.task,
        "question": ex.question,
        "gold": ex.answer,
        "output": "".join(p.text for p in passes),
        "prediction": pred,
        "correct": is_correct(pred, ex),
        "prompt_tokens": sum(p.prompt_tokens for p in passes),
        "generated_tokens": sum(p.generated_tokens for p in passes),
        "passes": len(passes),
        "seconds": seconds,
    }
    if shape is not None:
        costs = [query_flops(shape, p.prompt_tokens, p.generated_tokens) for p in passes]
        row["flops"] = {k: sum(c[k] for c in costs) for k in ("prefill", "generation")}
    return row


def score(rows: list[dict], predictions_path: Path) -> EvalResult:
    by_task: dict[str, list[bool]] = defaultdict(list)
    for r in rows:
        by_task[r["task"]].append(bool(r["correct"]))
    n = len(rows)
    mean = lambda key: sum(r[key] for r in rows) / n if n else 0.0  # noqa: E731
    return EvalResult(
        accuracy=sum(r["correct"] for r in rows) / n if n else 0.0,
        n=n,
        per_task={t: sum(v) / len(v) for t, v in sorted(by_task.items())},
        prompt_tokens_per_query=mean("prompt_tokens"),
        generated_tokens_per_query=mean("generated_tokens"),
        wall_time_per_query_s=mean("seconds"),
        predictions_path=predictions_path,
        flops_per_query={k: sum(r["flops"][k] for r in rows) / n for k in ("prefill", "generation")}
        if n and all("flops" in r for r in rows)
        else None,
    )
