"""Typed run configuration. The dataclasses *are* the YAML schema: every key of a config file maps to a
field of `RunConfig` or of a section owned by its pipeline stage (`data.DataConfig`, `train.TrainConfig`,
`evaluate.EvalConfig`, ...), and each method's own settings live with the method (`methods.<name>:`).
Unknown keys, wrong types, duplicate keys and out-of-range values are one error naming the file and the
key, raised when the config loads, before any data or model is touched."""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skintern.data import DATASETS, DataConfig, SourceConfig
from skintern.errors import SkinternError
from skintern.evaluate import EvalConfig
from skintern.methods import METHODS, MethodSettings
from skintern.methods.rundata import InternalizationConfig
from skintern.retrieval import RetrievalConfig
from skintern.files import read_text
from skintern.schedule import upgrade_legacy_schedule
from skintern.schema import (SettingError, check_choice, check_nonempty, from_dict, load_yaml, parse_scalar,
                             register_keyed, to_dict)
from skintern.student import StudentConfig
from skintern.teacher.config import TeacherConfig
from skintern.train import TrainConfig

register_keyed(MethodSettings, lambda name: METHODS[name].Settings if name in METHODS else None)


def default_method_settings() -> dict[str, MethodSettings]:
    return {name: cls.Settings() for name, cls in METHODS.items()}


@dataclass
class CompareConfig:
    """The `compare:` section of `skintern compare`."""

    methods: list[str] = field(default_factory=lambda: ["prompt", "std-cot", "skintern"])
    """Every method trained and evaluated on the same data, in this order."""
    seeds: list[int] = field(default_factory=lambda: [42])
    """More than one: runs/<name>/seed-<s>/ each, then mean ± spread; untrained methods are evaluated once."""
    allow_unequal_budgets: bool = False
    """Let trained methods see different items or epochs (refused otherwise: the comparison would be unfair)."""
    first_seed_only: list[str] = field(default_factory=list)
    """Methods of `methods` run on the first seed only (costly baselines on a CPU budget): they get no seed
    spread, and their paired differences pair items of the first seed only."""

    def __post_init__(self):
        check_nonempty("methods", self.methods)
        check_nonempty("seeds", self.seeds)
        for name in self.methods:
            check_choice("methods", name, METHODS)
        for name in self.first_seed_only:
            check_choice("first_seed_only", name, self.methods)


PAPER_ABLATIONS: dict[str, dict[str, Any]] = {
    "exponential": {"methods.skintern.schedule.pattern": "exponential"},
    "inverse-exponential": {"methods.skintern.schedule.pattern": "inverse-exponential"},
    "steps-3": {"methods.skintern.schedule.steps": 3},
    "steps-7": {"methods.skintern.schedule.steps": 7},
    "no-summary": {"methods.skintern.schedule.knowledge_parts": ["supplementary"]},
    "no-supplementary": {"methods.skintern.schedule.knowledge_parts": ["summary"]},
    "no-examples": {"methods.skintern.schedule.examples": 0},
}
"""The paper's Table 2 (schedule patterns, T in {3, 4, 7}) and Table 3 (without k^m, k^p, examples) grid."""


@dataclass
class AblateConfig:
    """The `ablate:` section of `skintern ablate`: variants of this config, each a run of one method."""

    method: str = "skintern"
    """The method every variant trains and evaluates."""
    variants: dict[str, dict[str, Any]] = field(default_factory=lambda: copy.deepcopy(PAPER_ABLATIONS))
    """Variant name -> overrides of this config as dotted keys, e.g. `methods.skintern.schedule.steps: 3`.
    The config as written is the variant `base`, the reference of every paired difference.
    Default: the paper's grid (`PAPER_ABLATIONS`)."""
    seeds: list[int] = field(default_factory=list)
    """The seeds every variant runs with (empty: the config's `seed`). The config's seed runs in ablate/, every other
    seed in ablate/seed-<s>/, each with its own results; with several, ablate/all-seeds/ pools them (mean ± spread,
    pairs on item and seed). Each seed's `base` reuses the compare's entry of that seed."""

    def __post_init__(self):
        check_choice("method", self.method, METHODS)
        if len(set(self.seeds)) != len(self.seeds):
            raise SettingError("seeds", f"expected each seed once, got {self.seeds}")
        for name, overrides in self.variants.items():
            if not name.strip() or "/" in name or name in ("base", "all-seeds") or name.startswith("seed-"):
                raise SettingError("variants", "expected a folder name without '/' other than 'base', 'all-seeds' and "
                                   f"'seed-...' (those folders hold the base and the seeds), got {name!r}")
            check_nonempty(f"variants.{name}", overrides)


@dataclass
class RunConfig:
    name: str = "run"
    """The run folder's name under output_dir."""
    method: str = "std-cot"
    """The method `skintern run`, `train` and `eval` use."""
    seed: int = 42
    output_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    methods: dict[str, MethodSettings] = field(default_factory=default_method_settings)
    """Each method's own settings, `methods.<name>:`; methods not named keep their defaults."""
    compare: CompareConfig = field(default_factory=CompareConfig)
    ablate: AblateConfig = field(default_factory=AblateConfig)
    internalization: InternalizationConfig = field(default_factory=InternalizationConfig)
    """The internalization check of a SKIntern run: a dev set held out of every method's training."""

    def __post_init__(self):
        if not self.name.strip() or "/" in self.name:
            raise SettingError("name", f"expected a folder name without '/', got {self.name!r}")
        check_choice("method", self.method, METHODS)
        self.methods = {**default_method_settings(), **self.methods}
        carved = [s.name for s in self.data.train if isinstance(s, SourceConfig) and s.test_fraction is not None]
        for source in self.eval.datasets:
            if isinstance(source, str) and source not in DATASETS and source not in carved:
                raise SettingError("eval.datasets", f"expected one of {', '.join(DATASETS)}, a user source "
                                   f"{{name, path, ...}} or a data.train source with a test_fraction, got {source!r}")
        if self.student.prompt_format == "chat" and self.eval.backend == "openai" and self.eval.openai.api == "chat":
            raise SettingError("eval.openai.api", "expected completions with student.prompt_format: chat (the prompt "
                               "already holds the chat template; the server would wrap it in a second one)")

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    def settings(self, method: str) -> MethodSettings:
        return self.methods[method]

    def to_dict(self) -> dict:
        return to_dict(self)


# Keys of configs written before each method owned its settings (release 0.1.0): old path -> new path(s).
_MOVED: dict[tuple[str, ...], list[tuple[str, ...]]] = {
    ("methods", "alpha"): [("methods", m, "alpha") for m in ("mt-cot", "step-by-step", "cascod")],
    ("methods", "answer_max_new_tokens"): [("methods", m, "answer_max_new_tokens") for m in ("mt-cot", "step-by-step", "cascod")],
    ("methods", "kard_top_k"): [("methods", "kard", "top_k")],
    ("schedule",): [("methods", "skintern", "schedule")],
    ("knowledge", "missing"): [("methods", "skintern", "missing_knowledge")],
    ("knowledge", "compressor"): [("methods", "skintern", "compressor")],
    ("knowledge", "scorer_model"): [("methods", "skintern", "scorer_model")],
    ("knowledge", "llmlingua2_model"): [("methods", "skintern", "llmlingua2_model")],
    ("knowledge", "embedder"): [("retrieval", "embedder")],
    ("knowledge", "embedder_path"): [("retrieval", "embedder_path")],
}


def upgrade_legacy(raw: dict) -> list[str]:
    """Move 0.1.0 keys to where they live now and old schedule keys onto the current ones (decay_stages K ->
    steps K + 1, ...), in place; returns the old keys that were read."""
    moved = []
    for old, news in _MOVED.items():
        parent = raw
        for part in old[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if not isinstance(parent, dict) or old[-1] not in parent:
            continue
        value = parent.pop(old[-1])
        for new in news:
            node = raw
            for part in new[:-1]:
                node = node.setdefault(part, {})
            current = node.get(new[-1])
            node[new[-1]] = {**current, **value} if isinstance(current, dict) and isinstance(value, dict) else value
        moved.append(".".join(old))
    if raw.get("knowledge") == {}:
        del raw["knowledge"]
    schedule = raw
    for part in ("methods", "skintern", "schedule"):
        schedule = schedule.get(part) if isinstance(schedule, dict) else None
    if isinstance(schedule, dict):
        moved += [f"methods.skintern.schedule.{key}" for key in upgrade_legacy_schedule(schedule)]
    return moved


def config_from_dict(raw: Any, where: str, moved: list[str] | None = None) -> RunConfig:
    """A RunConfig from a parsed mapping (a YAML file, or the `config` of a results.json)."""
    if not isinstance(raw, dict):
        raise SkinternError(f"{where}: expected a mapping of config sections, got {type(raw).__name__}")
    moved = (moved or []) + upgrade_legacy(raw)
    if moved:
        print(f"skintern: note: {where}: old keys {', '.join(moved)} read at their new places "
              "(methods.<name>.*, retrieval.*; schedule: steps, epochs, examples, pattern)", file=sys.stderr)
    cfg = from_dict(RunConfig, raw, where=where)
    cfg.teacher.check(where)
    return cfg


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config; `overrides` are `dotted.key=value` strings applied on top (YAML-typed)."""
    path = Path(path)
    if not path.is_file():
        raise SkinternError(f"config not found: {path}")
    raw = load_yaml(read_text(path), str(path))
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise SkinternError(f"{path}: expected a mapping of config sections, got {type(raw).__name__}")
    moved = upgrade_legacy(raw)  # before the overrides, so that an override wins over the file
    for item in overrides or []:
        _apply_override(raw, item)
    return config_from_dict(raw, str(path), moved)


def _apply_override(raw: dict, item: str) -> None:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise SkinternError(f"--set {item!r}: expected dotted.key=value")
    apply_dotted(raw, key, parse_scalar(value, f"--set {key}"), f"--set {item!r}")


def apply_dotted(raw: dict, key: str, value: Any, where: str) -> None:
    """Set `a.b.c` in a parsed config mapping, making missing sections; whether the key exists is checked later,
    when the mapping becomes a RunConfig."""
    node = raw
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SkinternError(f"{where}: {part} is not a section")
    node[leaf] = value
