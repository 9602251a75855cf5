"""The paper's reported accuracies for its smallest student (Liao et al., COLING 2025, Table 1, TinyLLaMA-1.1B), so
a report can set the direction of each of our differences to Std-CoT beside the paper's: the paper is the claim
our CPU-scale runs test, and a sign is what survives the change of student, data and scale."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from skintern.methods import COST_REFERENCE

PAPER_STUDENT = "TinyLLaMA-1.1B"
PAPER_COLUMNS = ("bbh", "gsm8k", "bbsub", "agieval", "gsm8k-plus", "arc-easy", "arc-challenge")
"""Table 1's test sets in its column order, under our dataset names (GSM8K-PLUS has no loader here)."""
PAPER_ROWS: dict[str, tuple[float, ...]] = {
    "zero-shot": (14.0, 2.0, 17.7, 17.8, 1.5, 19.4, 15.0),
    "fine-tuning": (48.8, 3.5, 26.0, 21.2, 3.7, 28.0, 24.6),
    "knowledge-aug. fine-tuning": (49.3, 3.7, 27.4, 21.9, 3.3, 29.4, 25.3),
    "Std-CoT": (47.8, 7.9, 27.6, 21.5, 4.3, 28.2, 25.0),
    "MT-CoT": (44.1, 4.1, 25.0, 21.4, 2.8, 33.5, 25.1),
    "Step-by-step": (42.4, 4.3, 26.2, 21.1, 3.1, 29.6, 25.9),
    "KARD": (49.5, 7.6, 26.9, 20.2, 4.0, 28.2, 26.5),
    "CasCoD": (48.1, 6.8, 23.1, 19.4, 4.8, 29.0, 27.1),
    "SKIntern": (55.5, 8.1, 31.4, 24.4, 5.3, 36.8, 31.2),
}
"""Table 1, TinyLLaMA-1.1B student: accuracy in percent per `PAPER_COLUMNS`, mean of 3 runs."""
PAPER_ROW_OF: dict[str, str] = {
    "prompt": "zero-shot",  # ours asks for a rationale first (zero-shot CoT); Table 1 lists the untrained student once
    "zero-shot": "zero-shot",
    "fine-tune": "fine-tuning",
    "kaft": "knowledge-aug. fine-tuning",
    "std-cot": "Std-CoT",
    "mt-cot": "MT-CoT",
    "step-by-step": "Step-by-step",
    "kard": "KARD",
    "cascod": "CasCoD",
    "skintern": "SKIntern",
}
"""Our method name -> its Table 1 row."""


@dataclass(frozen=True)
class Direction:
    """One of our paired differences to Std-CoT beside the paper's on the same test sets."""

    method: str
    scope: str
    """A group ("ID", "OOD") or one dataset."""
    paper_row: str
    ours_pp: float
    ci_pp: tuple[float, float]
    paper_pp: float
    """The paper's row minus its Std-CoT row, averaged over the scope's datasets it reports."""
    paper_datasets: tuple[str, ...]

    @property
    def verdict(self) -> str:
        """"same sign" / "opposite sign" where our 95 % CI excludes 0; otherwise ours resolves no direction."""
        low, high = self.ci_pp
        if low <= 0 <= high:
            return "none detected by ours"
        if self.paper_pp == 0:
            return "paper: no difference"
        return "same sign" if (self.ours_pp > 0) == (self.paper_pp > 0) else "opposite sign"


def paper_difference(method: str, datasets: tuple[str, ...] | list[str]) -> tuple[float, tuple[str, ...]] | None:
    """The paper's accuracy of `method` minus its Std-CoT's, in points, averaged over those of `datasets` Table 1
    reports, and those datasets; None when the method or every dataset is missing from Table 1."""
    row = PAPER_ROW_OF.get(method)
    shared = tuple(d for d in datasets if d in PAPER_COLUMNS)
    if row is None or not shared:
        return None
    columns = [PAPER_COLUMNS.index(d) for d in shared]
    mine, reference = PAPER_ROWS[row], PAPER_ROWS[PAPER_ROW_OF[COST_REFERENCE]]
    return sum(mine[c] - reference[c] for c in columns) / len(columns), shared


def directions(comparison: Mapping) -> list[Direction]:
    """Every group difference of a `stats.compare_methods` result against Std-CoT, beside the paper's difference
    on the same datasets. Our groups pool their items; the paper's figure averages its datasets."""
    if comparison.get("reference") != COST_REFERENCE:
        return []
    found = []
    for method, parts in comparison["methods"].items():
        for scope, diff in parts["groups"].items():
            paper = paper_difference(method, diff["datasets"])
            if paper is None:
                continue
            found.append(Direction(method, scope, PAPER_ROW_OF[method], 100 * diff["method_minus_reference"],
                                   (100 * diff["ci_low"], 100 * diff["ci_high"]), paper[0], paper[1]))
    return found
