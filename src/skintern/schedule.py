"""The SKIntern progressive schedule: one object that says, stage by stage, how much knowledge and
how many worked examples the student's input still carries.

Linear decay over K stages (the paper's predefined schedule): stage s keeps the knowledge at
rate 1 - s/K and the top round(N - s*N/K) examples; stage K is the bare question, exactly the
inference prompt. `abrupt` is the ablation that keeps everything for K stages and then drops it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from skintern.schema import check_choice, check_range

KINDS = ("linear", "abrupt")


@dataclass
class ScheduleConfig:
    """The `methods.skintern.schedule:` section."""

    decay_stages: int = 5
    """K: stages before the final bare-question stage."""
    initial_examples: int = 3
    """N: worked examples in the first stage."""
    epochs_per_stage: float = 1.0
    final_epochs: float | None = None
    """Epochs of the final stage (default: epochs_per_stage)."""
    kind: str = "linear"
    """linear | abrupt (everything for K stages, then the bare question)."""
    knowledge: bool = True
    """Ablation switch: carry knowledge at all."""
    examples: bool = True
    """Ablation switch: carry worked examples at all."""

    def __post_init__(self):
        check_range("decay_stages", self.decay_stages, 1)
        check_range("initial_examples", self.initial_examples, 0)
        check_choice("kind", self.kind, KINDS)
        check_range("epochs_per_stage", self.epochs_per_stage, 0, low_open=True)
        if self.final_epochs is not None:
            check_range("final_epochs", self.final_epochs, 0, low_open=True)


@dataclass(frozen=True)
class Stage:
    stage: int
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
    kind: str
    K: int
    N: int

    def to_dict(self) -> dict:
        return {"kind": self.kind, "K": self.K, "N": self.N, "stages": [asdict(s) for s in self.stages]}

    def table(self) -> str:
        lines = [f"SKIntern schedule ({self.kind}, K={self.K} decay stages + 1 final, N={self.N} examples)",
                 "stage  knowledge keep-rate  examples  epochs  input"]
        for s in self.stages:
            what = "bare question (= inference prompt)" if s.bare else " + ".join(
                p for p in (f"knowledge@{s.knowledge_keep_rate:.2f}" if s.knowledge_keep_rate else "",
                            f"{s.num_examples} examples" if s.num_examples else "") if p)
            lines.append(f"{s.stage:>5}  {s.knowledge_keep_rate:>19.2f}  {s.num_examples:>8}  {s.epochs:>6g}  {what}")
        return "\n".join(lines)


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5 + 1e-9))


def build_schedule(cfg: ScheduleConfig) -> Schedule:
    K, N = cfg.decay_stages, cfg.initial_examples
    stages = []
    for s in range(K + 1):
        final = s == K
        if cfg.kind == "linear":
            rate, n = 1 - s / K, _round_half_up(N - s * N / K)
        else:
            rate, n = (0.0, 0) if final else (1.0, N)
        stages.append(
            Stage(
                stage=s,
                knowledge_keep_rate=rate if cfg.knowledge else 0.0,
                num_examples=n if cfg.examples else 0,
                epochs=(cfg.final_epochs or cfg.epochs_per_stage) if final else cfg.epochs_per_stage,
                final=final,
            )
        )
    return Schedule(tuple(stages), cfg.kind, K, N)
