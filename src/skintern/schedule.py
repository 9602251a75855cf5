"""The SKIntern progressive schedule: one object that says, step by step, how much knowledge and how many
worked examples the student's input still carries.

Over T steps t = 0 .. T-1 the knowledge keep-rate S_t falls from 1 to 0 and step t carries
floor(K * S_t) of the K most similar training examples (the paper's K_t); the last step, S = 0, is the
bare question, exactly the inference prompt. The E training epochs are split evenly, E/T per step.
With x = t / (T-1), the patterns are:

- linear: S_t = 1 - x (the paper's default; T = 4 gives 1, 2/3, 1/3, 0);
- exponential: S_t = (e^(-λx) - e^(-λ)) / (1 - e^(-λ)), λ = 3: drops fast, then slowly
  (T = 4: 1, 0.335, 0.090, 0);
- inverse-exponential: the mirror image, S_t = 1 - exponential(1 - x): keeps most knowledge
  for long, then drops fast (T = 4: 1, 0.910, 0.665, 0);
- abrupt: S = 1 for T-1 steps, then the bare question (an ablation, not in the paper);
- an explicit list of S_t from 1 down to 0.

The paper names the exponential patterns without formulas; λ = 3 puts the middle of a T = 3
schedule at 0.18 (exponential) or 0.82 (inverse-exponential), far enough from linear's 0.5 to
differ and not so far that a middle step is the bare question already."""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from skintern.schema import SettingError, check_choice, check_range

PATTERNS = ("linear", "exponential", "inverse-exponential", "abrupt")
DECAY = 3.0
"""λ of the exponential patterns."""
DEFAULT_STEPS = 4
"""The paper's T."""
KNOWLEDGE_PARTS = ("summary", "supplementary")
"""The learning summary k^m and the supplementary knowledge k^p (`knowledge.KnowledgeRecord`)."""
PICKS = ("top", "random")


@dataclass
class ScheduleConfig:
    """The `methods.skintern.schedule:` section."""

    pattern: str | list[float] = "linear"
    """linear | exponential | inverse-exponential | abrupt, or the list of S_t (1 first, 0 last, never rising)."""
    steps: int | None = None
    """T: training steps, the last the bare question; default 4, or the length of an explicit pattern."""
    epochs: float = 12.0
    """E: epochs of all steps together, E/T per step (the paper: 12)."""
    final_epochs: float | None = None
    """Epochs of the final, bare-question step; the other steps then share E - final_epochs evenly."""
    examples: int = 3
    """K: worked examples of the first step, the K most similar training items; step t keeps floor(K * S_t)."""
    examples_pick: str = "top"
    """Which K_t of the top-K a step carries: top (the most similar) | random (the paper's: drawn anew each
    step, seeded by the run seed, the step and the item)."""
    knowledge_parts: list[str] = field(default_factory=lambda: list(KNOWLEDGE_PARTS))
    """Parts of the teacher knowledge in the input: summary, supplementary; [] carries no knowledge."""

    def __post_init__(self):
        if isinstance(self.pattern, list):
            _check_explicit(self.pattern)
            if self.steps is not None and self.steps != len(self.pattern):
                raise SettingError("steps", f"expected {len(self.pattern)} (the length of pattern), got {self.steps}")
        else:
            check_choice("pattern", self.pattern, PATTERNS)
        check_range("steps", self.T, 2)
        check_range("epochs", self.epochs, 0, low_open=True)
        if self.final_epochs is not None:
            check_range("final_epochs", self.final_epochs, 0, self.epochs, low_open=True, high_open=True)
        check_range("examples", self.examples, 0)
        check_choice("examples_pick", self.examples_pick, PICKS)
        for part in self.knowledge_parts:
            check_choice("knowledge_parts", part, KNOWLEDGE_PARTS)
        if len(set(self.knowledge_parts)) < len(self.knowledge_parts):
            raise SettingError("knowledge_parts", f"names a part twice: {self.knowledge_parts}")

    @property
    def T(self) -> int:
        if isinstance(self.pattern, list):
            return len(self.pattern)
        return DEFAULT_STEPS if self.steps is None else self.steps

    @property
    def pattern_name(self) -> str:
        return "explicit" if isinstance(self.pattern, list) else self.pattern


def _check_explicit(rates: list[float]) -> None:
    if len(rates) < 2:
        raise SettingError("pattern", f"expected at least 2 values (1 first, 0 last), got {rates}")
    if rates[0] != 1 or rates[-1] != 0:
        raise SettingError("pattern", f"expected 1 first and 0 last (the bare question), got {rates}")
    if any(b > a for a, b in zip(rates, rates[1:])):
        raise SettingError("pattern", f"expected values that never rise, got {rates}")


def keep_rates(pattern: str | list[float], T: int) -> list[float]:
    """S_0 .. S_{T-1} of a pattern (formulas in the module docstring)."""
    if isinstance(pattern, list):
        return [float(s) for s in pattern]
    if pattern == "abrupt":
        return [1.0] * (T - 1) + [0.0]
    xs = [t / (T - 1) for t in range(T)]
    if pattern == "linear":
        return [(T - 1 - t) / (T - 1) for t in range(T)]
    if pattern == "exponential":
        return [_exponential(x) for x in xs]
    return [1 - _exponential(1 - x) for x in xs]


def _exponential(x: float) -> float:
    floor = math.exp(-DECAY)
    return (math.exp(-DECAY * x) - floor) / (1 - floor)


@dataclass(frozen=True)
class Stage:
    stage: int
    """t, from 0."""
    knowledge_keep_rate: float  # 0 = no knowledge in the input
    num_examples: int
    epochs: float
    final: bool  # the bare question: the inference prompt

    @property
    def bare(self) -> bool:
        return self.knowledge_keep_rate == 0 and self.num_examples == 0


@dataclass(frozen=True)
class Schedule:
    stages: tuple[Stage, ...]
    pattern: str
    K: int
    examples_pick: str
    knowledge_parts: tuple[str, ...]

    @property
    def T(self) -> int:
        return len(self.stages)

    def to_dict(self) -> dict:
        return {"pattern": self.pattern, "T": self.T, "K": self.K, "examples_pick": self.examples_pick,
                "knowledge_parts": list(self.knowledge_parts), "stages": [asdict(s) for s in self.stages]}

    def table(self) -> str:
        parts = " + ".join(self.knowledge_parts) or "none"
        pick = "the most similar" if self.examples_pick == "top" else "drawn at random from the top-K"
        lines = [f"SKIntern schedule ({self.pattern}, T={self.T} steps, K={self.K} examples, {pick}; knowledge: {parts})",
                 "step  S_t (knowledge keep-rate)  examples  epochs  input"]
        for s in self.stages:
            what = "bare question (= inference prompt)" if s.bare else " + ".join(
                p for p in (f"knowledge@{s.knowledge_keep_rate:.2f}" if s.knowledge_keep_rate else "",
                            f"{s.num_examples} examples" if s.num_examples else "") if p) + " + question"
            lines.append(f"{s.stage:>4}  {s.knowledge_keep_rate:>24.2f}  {s.num_examples:>8}  {s.epochs:>6g}  {what}")
        return "\n".join(lines)


def build_schedule(cfg: ScheduleConfig) -> Schedule:
    T, K = cfg.T, cfg.examples
    rates = keep_rates(cfg.pattern, T)
    final_epochs = cfg.epochs / T if cfg.final_epochs is None else cfg.final_epochs
    other_epochs = cfg.epochs / T if cfg.final_epochs is None else (cfg.epochs - final_epochs) / (T - 1)
    stages = tuple(
        Stage(
            stage=t,
            knowledge_keep_rate=rate if cfg.knowledge_parts else 0.0,
            num_examples=math.floor(K * rate + 1e-9),  # the epsilon absorbs float error, as in 3 * (1 - 2/3)
            epochs=final_epochs if t == T - 1 else other_epochs,
            final=t == T - 1,
        )
        for t, rate in enumerate(rates)
    )
    return Schedule(stages, cfg.pattern_name, K, cfg.examples_pick, tuple(cfg.knowledge_parts))


Item = TypeVar("Item")


def pick_examples(top: Sequence[Item], count: int, how: str, seed: int, stage: int, item_id: str) -> list[Item]:
    """`count` of an item's most similar examples `top` (most similar first), kept in that order so the least
    similar go first when a prompt is too long. random: a draw seeded by (seed, stage, item id) through SHA-256,
    the same in every process (Python's hash() of a str is salted per process)."""
    count = min(count, len(top))
    if how == "top":
        return list(top[:count])
    digest = hashlib.sha256(f"{seed}\0{stage}\0{item_id}".encode()).digest()
    chosen = sorted(random.Random(int.from_bytes(digest[:8], "big")).sample(range(len(top)), count))
    return [top[i] for i in chosen]


# Keys of the schedule section before patterns (decay_stages K -> T = K + 1 steps), with their defaults then.
_OLD_DEFAULTS: dict[str, Any] = {"decay_stages": 5, "initial_examples": 3, "epochs_per_stage": 1.0, "kind": "linear",
                                 "knowledge": True, "examples": True}


def upgrade_legacy_schedule(section: dict) -> list[str]:
    """Rewrite a schedule section with the old keys onto the current ones, in place, so it gives the same
    steps, keep-rates and epochs (current keys already there win where no old key says otherwise); returns
    the old keys it read. An old section's unset keys take the old defaults (K = 5 decay stages, 1 epoch each)."""
    old = [k for k in ("decay_stages", "initial_examples", "epochs_per_stage", "kind", "knowledge")
           if k in section] + (["examples"] if isinstance(section.get("examples"), bool) else [])
    if not old:
        return []
    given = {k: section.pop(k) for k in old}
    value = {**_OLD_DEFAULTS, **given, "final_epochs": section.get("final_epochs")}  # final_epochs kept its name
    if "decay_stages" in given or "steps" not in section:
        section["steps"] = value["decay_stages"] + 1
    decay_stages = section["steps"] - 1
    if "epochs_per_stage" in given or "epochs" not in section:
        final = value["epochs_per_stage"] if value["final_epochs"] is None else value["final_epochs"]
        section["epochs"] = decay_stages * value["epochs_per_stage"] + final
    if value["examples"] is False:
        section["examples"] = 0
    elif "initial_examples" in given or "examples" not in section:
        section["examples"] = value["initial_examples"]
    if "kind" in given:
        section["pattern"] = value["kind"]
    if value["knowledge"] is False:
        section["knowledge_parts"] = []
    return old
