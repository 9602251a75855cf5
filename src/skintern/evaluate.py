"""Evaluation: every test item through a method's inference passes, answer extraction and accuracy.

Predictions are appended to `<name>.jsonl.partial` batch by batch, so a killed evaluation
resumes where it stopped; the finished file is renamed into place."""

from __future__ import annotations

import importlib.util
import json
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from skintern.data import Example, SourceConfig, check_unique_sources, extract_answer, is_correct, source_name
from skintern.files import changed_settings, read_jsonl, write_json, write_jsonl
from skintern.flops import ModelShape, query_flops
from skintern.generation import BACKENDS, Generation, Generator, LlamaCppEvalConfig, OpenAIEvalConfig
from skintern.schema import SettingError, check_choice, check_nonempty, check_range


@dataclass
class EvalConfig:
    """The `eval:` section: which test items every method is scored on, and how it generates."""

    datasets: list[str | SourceConfig] = field(default_factory=lambda: ["bbh"])
    """Test datasets: bbh, gsm8k (in-domain), bbsub, agieval, arc-easy, arc-challenge (out-of-domain); a user
    source (its `domain` tags it); or the name of a data.train source with a test_fraction (its test part)."""
    tasks: dict[str, list[str]] = field(default_factory=dict)
    """Per-dataset task subset; bbh defaults to data.tasks."""
    per_task: int | None = None
    """Cap on test items per task (the first N, deterministic)."""
    per_dataset: dict[str, int] = field(default_factory=dict)
    """The same cap for one dataset, overriding per_task."""
    batch_size: int = 8
    max_new_tokens: int | None = None
    """Token cap of a rationale-writing pass; None: from the data (`GenerationCaps.from_data`)."""
    before_training: bool = True
    """`skintern run` also evaluates the untrained student (method "prompt")."""
    backend: str = "auto"
    """auto | hf | vllm | openai | llamacpp: the generation engine (auto = vLLM when importable and a GPU is
    present; openai = the endpoint of `openai`, llamacpp = the GGUF file of `llamacpp`, either of which answers in
    place of the student's weights)."""
    openai: OpenAIEvalConfig | None = None
    """The endpoint `backend: openai` scores; required by it."""
    llamacpp: LlamaCppEvalConfig | None = None
    """The GGUF file `backend: llamacpp` scores; required by it."""

    def __post_init__(self):
        check_nonempty("datasets", self.datasets)
        check_unique_sources("datasets", self.datasets)
        names = self.names
        for key, mapping in (("tasks", self.tasks), ("per_dataset", self.per_dataset)):
            for name in mapping:
                if name not in names:
                    raise SettingError(f"{key}.{name}", f"not one of eval.datasets ({', '.join(names)})")
        for name, cap in self.per_dataset.items():
            check_range(f"per_dataset.{name}", cap, 1)
        if self.per_task is not None:
            check_range("per_task", self.per_task, 1)
        check_range("batch_size", self.batch_size, 1)
        if self.max_new_tokens is not None:
            check_range("max_new_tokens", self.max_new_tokens, 1)
        check_choice("backend", self.backend, BACKENDS)
        if self.backend == "openai":
            if self.openai is None:
                raise SettingError("openai", "required when eval.backend is openai (base_url, model)")
            try:
                self.openai.check_key()
            except SettingError as e:
                raise SettingError(f"openai.{e.key}", e.message) from None
        if self.backend == "llamacpp":
            if self.llamacpp is None:
                raise SettingError("llamacpp", "required when eval.backend is llamacpp (model_path)")
            if importlib.util.find_spec("llama_cpp") is None:
                raise SettingError("backend", "llamacpp needs `pip install llama-cpp-python`")

    @property
    def names(self) -> list[str]:
        return [source_name(s) for s in self.datasets]


ANSWER_MARGIN = 4
"""Tokens an answer-only pass may write beyond the longest gold answer (a different spelling, a space)."""


@dataclass(frozen=True)
class GenerationCaps:
    """Token caps that come from the data, so that a cap never decides a result: a rationale pass may write
    as much as 99 % of the teacher's training targets take, an answer pass the longest gold answer plus a
    margin. An explicit `eval.max_new_tokens` / `methods.<name>.answer_max_new_tokens` wins over these."""

    rationale: int
    answer: int

    @classmethod
    def from_data(cls, tokenizer, targets: Sequence[str], answers: Sequence[str]) -> GenerationCaps:
        """`targets`: the training targets (rationale + answer sentence); `answers`: every gold answer, train and test."""
        lengths = sorted(len(tokenizer(t, add_special_tokens=False).input_ids) + 1 for t in targets)  # + EOS
        rationale = lengths[min(len(lengths) - 1, math.ceil(0.99 * len(lengths)) - 1)] if lengths else 256
        answer = max((len(tokenizer(f" {a}.", add_special_tokens=False).input_ids) for a in answers), default=12)
        return cls(rationale=rationale, answer=answer + ANSWER_MARGIN)

    def generator(self, cfg: EvalConfig, model, tokenizer, stop_strings: Sequence[str]) -> Generator:
        """`stop_strings`: the student's prompt format's (`PromptFormat.stop_strings`)."""
        return Generator(model, tokenizer, backend=cfg.backend, batch_size=cfg.batch_size,
                         max_new_tokens=cfg.max_new_tokens or self.rationale, stop_strings=stop_strings,
                         endpoint=cfg.openai, gguf=cfg.llamacpp)


@dataclass
class EvalResult:
    accuracy: float
    n: int
    per_task: dict[str, float]
    prompt_tokens_per_query: float
    generated_tokens_per_query: float
    wall_time_per_query_s: float
    hit_cap: float
    """Share of items whose generation (any pass) stopped at the token cap."""
    no_answer: float
    """Share of items with no extractable answer."""
    predictions_path: Path
    flops_per_query: dict[str, float] | None = None  # mean over rows of each row's own count



Infer = Callable[[Sequence[Example]], list[list[Generation]]]


def evaluate(infer: Infer, examples: Sequence[Example], predictions_path: Path, batch_size: int = 8,
             shape: ModelShape | None = None, key: dict | None = None) -> EvalResult:
    """Run `infer` over every example in batches, score and save per-example predictions.

    `infer(batch)` returns each example's passes (CasCoD: rationale, then answer); the answer is read from the
    last pass and every pass counts towards the query's cost. With `shape`, each row also records its FLOPs
    (`flops.query_flops`, summed over passes). Rows already saved are reused only when they were made under the
    same `key` (what produced them: settings, weights); items not saved yet are generated and appended, so a
    killed evaluation resumes and a larger test set adds only its new items."""
    predictions_path = Path(predictions_path)
    partial = predictions_path.with_name(predictions_path.name + ".partial")
    if key is not None:
        key_path = predictions_path.with_name(predictions_path.name + ".key.json")
        changed = changed_settings(key_path, key)
        if changed:
            print(f"{predictions_path}: saved under other settings ({'; '.join(changed[:3])}); evaluating again", flush=True)
            predictions_path.unlink(missing_ok=True)
            partial.unlink(missing_ok=True)
        write_json(key_path, key)
    rows = read_jsonl(predictions_path) if predictions_path.is_file() else []
    if not rows and partial.is_file():
        rows = read_jsonl(partial, torn_tail=True)
        write_jsonl(partial, rows)  # without a line a kill cut short, so appending goes on cleanly
    done = {r["id"] for r in rows}
    todo = [ex for ex in examples if ex.id not in done]
    if todo or not predictions_path.is_file():
        if predictions_path.is_file():
            predictions_path.replace(partial)
        partial.parent.mkdir(parents=True, exist_ok=True)
        bar = tqdm(total=len(examples), initial=len(examples) - len(todo), desc=f"eval {predictions_path.stem}", unit="q")
        with partial.open("a", encoding="utf-8") as f:
            for start in range(0, len(todo), batch_size):
                chunk = todo[start : start + batch_size]
                t0 = time.perf_counter()
                passes = infer(chunk)
                seconds = (time.perf_counter() - t0) / len(chunk)
                for i, ex in enumerate(chunk):
                    row = _prediction_row(ex, passes[i], seconds, shape)
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
        "hit_cap": any(p.hit_cap for p in passes),
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
        hit_cap=sum(bool(r.get("hit_cap")) for r in rows) / n if n else 0.0,
        no_answer=sum(r["prediction"] is None for r in rows) / n if n else 0.0,
        predictions_path=predictions_path,
        flops_per_query={k: sum(r["flops"][k] for r in rows) / n for k in ("prefill", "generation")}
        if n and all("flops" in r for r in rows)
        else None,
    )
