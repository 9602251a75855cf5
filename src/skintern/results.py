"""Typed results: one `Entry` per evaluated method, one `Results` per results.json.

`skintern run` and `compare` write them, `report` and `export` read them, all through these classes, so a
field has one name and one type everywhere. Reading tolerates keys it does not know (files of other
releases) and names the file and the field of anything malformed."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from skintern.errors import SkinternError
from skintern.files import read_json, write_json
from skintern.schema import SettingError, from_dict, to_dict


@dataclass
class DatasetScore:
    accuracy: float
    n: int
    per_task: dict[str, float] = field(default_factory=dict)
    per_seed: list[float] | None = None
    """Accuracy of each seed, in the entry's `seeds` order (combined compares)."""
    hit_cap: float | None = None
    """Share of items whose generation stopped at the token cap (cut short)."""
    no_answer: float | None = None
    """Share of items with no extractable answer."""

    def __post_init__(self):
        for key, value in [("accuracy", self.accuracy), *((f"per_seed[{i}]", a) for i, a in enumerate(self.per_seed or []))]:
            if math.isnan(value) or not 0 <= value <= 1:
                raise SettingError(key, f"expected an accuracy in [0, 1], got {value!r}")
        if self.n < 0:
            raise SettingError("n", f"expected a count >= 0, got {self.n}")


@dataclass
class QueryFlops:
    prefill: float
    generation: float

    @property
    def total(self) -> float:
        return self.prefill + self.generation


@dataclass
class Entry:
    """One method evaluated on every test dataset (and, for a combined compare, averaged over seeds)."""

    method: str
    eval: dict[str, DatasetScore]
    student: str | None = None
    prompt_tokens_per_query: float | None = None
    generated_tokens_per_query: float | None = None
    flops_per_query: QueryFlops | None = None
    wall_time_per_query_s: float | None = None
    max_new_tokens: int | None = None
    """The token cap of rationale passes (answer-only caps are in `extras`)."""
    train: dict[str, Any] | None = None
    """`train.TrainStats` of the method's training (None for methods that do not train)."""
    train_time_s: float | None = None
    budget: dict[str, float] | None = None
    """Training items, pairs and epochs (SKIntern: summed over stages) of a compared method."""
    config_digest: str | None = None
    """What the entry depends on (`run.config_digest`); a rerun with another config refuses to reuse it."""
    reused_from_seed: int | None = None
    seeds: list[int] | None = None
    accuracy_std: dict[str, float] | None = None
    """Spread of each dataset's accuracy over seeds."""
    label: str | None = None
    """Shown instead of the method name in reports (merged reports: "skintern [no-knowledge]")."""
    extras: dict[str, Any] | None = None
    """What the method adds about itself (SKIntern: its schedule)."""
    prediction_dirs: dict[str, str] | None = None
    """Seed -> the run folder holding that seed's per-item predictions, relative to the results.json's folder, where
    they are not in its own folders (an ablation's results: each variant's run folder)."""

    def __post_init__(self):
        bad = [seed for seed in self.prediction_dirs or {} if not seed.lstrip("-").isdigit()]
        if bad:
            raise SettingError(f"prediction_dirs.{bad[0]}", "expected a seed (an integer) as the key")

    def to_dict(self) -> dict:
        return to_dict(self, drop_none=True)


@dataclass
class InternalizationStage:
    """One stage's student on the dev set: with the stage's own prompt and with the bare question."""

    stage: int
    knowledge_keep_rate: float
    num_examples: int
    stage_prompt_accuracy: float
    bare_accuracy: float
    gap: float
    """stage_prompt_accuracy - bare_accuracy: what the stage still needs its prompt for."""
    gap_ci_low: float
    gap_ci_high: float
    """Paired bootstrap 95 % CI of the gap over the dev items (`stats.paired_difference`)."""
    bare_stage: bool = False
    """The stage's prompt is the bare question (the final stage): its gap is 0 by construction."""

    def __post_init__(self):
        for key in ("stage_prompt_accuracy", "bare_accuracy"):
            value = getattr(self, key)
            if math.isnan(value) or not 0 <= value <= 1:
                raise SettingError(key, f"expected an accuracy in [0, 1], got {value!r}")
        if abs(self.gap - (self.stage_prompt_accuracy - self.bare_accuracy)) > 1e-9:
            raise SettingError("gap", f"expected stage_prompt_accuracy - bare_accuracy, got {self.gap!r}")


@dataclass
class Internalization:
    """The internalization check (`internalization.enabled`): does the student answer the bare question as well
    as with the stage's knowledge and examples, stage by stage?"""

    dev_ids: list[str]
    """The held-out dev items, scored at every stage."""
    stages: list[InternalizationStage]
    reference_method: str | None = None
    reference_accuracy: float | None = None
    """Bare-question accuracy of the Std-CoT student on the same dev items, when the run trained one."""
    seconds: float | None = None
    """Wall time of the check (its generations; read back from saved predictions on a resume), its cost to a run."""
    retrained: dict[str, bool] | None = None
    """Methods whose weights were not on the machine that ran the check, so were retrained with the same settings
    and seed: whether the retrain reproduced the evaluated weights byte for byte."""

    def __post_init__(self):
        if not self.stages:
            raise SettingError("stages", "is empty, expected one entry per stage")
        if self.reference_accuracy is not None and not 0 <= self.reference_accuracy <= 1:
            raise SettingError("reference_accuracy", f"expected an accuracy in [0, 1], got {self.reference_accuracy!r}")


@dataclass
class Results:
    runs: list[Entry]
    name: str | None = None
    student: str | None = None
    teacher: str | None = None
    created: str | None = None
    seed: int | None = None
    seeds: list[int] | None = None
    config: dict[str, Any] | None = None
    """The run's resolved config (`config.RunConfig.to_dict`)."""
    schedule: dict[str, Any] | None = None
    """The SKIntern schedule of the run (`schedule.Schedule.to_dict`), when it has one."""
    comparisons: dict[str, Any] | None = None
    """Paired differences per dataset and domain: every method against std-cot, SKIntern against the best
    baseline (`run.paired_comparisons`)."""
    provenance: dict[str, Any] | None = None
    """What produced the results: resolved embedder, compressor and scorer, library versions, device,
    precision and the project's git commit (`run.provenance`)."""
    internalization: Internalization | None = None
    """The internalization check of the run's SKIntern student (`internalization.check_internalization`)."""
    domains: dict[str, str] | None = None
    """Test dataset -> in | out, the groups of the ID/OOD averages; absent (older releases): the built-in tags."""

    def __post_init__(self):
        if not self.runs:
            raise SettingError("runs", "is empty, expected at least one run")
        for i, stage in enumerate((self.schedule or {}).get("stages", [])):
            for key in ("knowledge_keep_rate", "num_examples"):
                if not isinstance(stage, dict) or not isinstance(stage.get(key), (int, float)):
                    raise SettingError(f"schedule.stages[{i}]", f"field {key!r} must be a number")

    def to_dict(self) -> dict:
        return to_dict(self, drop_none=True)

    @classmethod
    def from_dict(cls, data: Any, source: str = "results") -> Results:
        if not isinstance(data, dict):
            raise SkinternError(f"{source}: expected a JSON object, got {type(data).__name__}")
        return from_dict(cls, data, source, strict=False)


def load_results(path: str | os.PathLike) -> Results:
    """Read and check a results.json; errors name the file and the field."""
    return Results.from_dict(read_json(path), str(path))


def write_results(path: str | os.PathLike, results: Results):
    return write_json(path, results.to_dict())


def load_entry(path: str | os.PathLike) -> Entry:
    data = read_json(path)
    if not isinstance(data, dict):
        raise SkinternError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return from_dict(Entry, data, str(path), strict=False)
