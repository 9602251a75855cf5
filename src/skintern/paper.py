"""The paper's reported accuracies (Liao et al., COLING 2025), so a report can set the direction of each of our paired
differences beside the paper's: the paper is the claim our runs test, and at a smaller student, other data and
another scale, a sign is what can be compared."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from skintern.methods import COST_REFERENCE


@dataclass(frozen=True)
class PaperTable:
    """Accuracies (percent, mean of 3 runs) of one of the paper's tables, and which of our labels each row is."""

    source: str
    columns: tuple[str, ...]
    """The table's test sets in its column order, under our dataset names."""
    rows: Mapping[str, tuple[float, ...]]
    reference: str
    """The row every difference is taken against."""
    row_of: Mapping[str, str]
    """Our method or variant label -> its row."""

    def difference(self, label: str, datasets: tuple[str, ...] | list[str]) -> tuple[float, tuple[str, ...]] | None:
        """Row `label` minus the reference row, in points, averaged over those of `datasets` the table reports, and
        those datasets; None when the label or every dataset is missing from the table."""
        row = self.row_of.get(label)
        shared = tuple(d for d in datasets if d in self.columns)
        if row is None or not shared:
            return None
        columns = [self.columns.index(d) for d in shared]
        return sum(self.rows[row][c] - self.rows[self.reference][c] for c in columns) / len(columns), shared


TABLE_1 = PaperTable(
    source="Table 1, TinyLLaMA-1.1B student",
    columns=("bbh", "gsm8k", "bbsub", "agieval", "gsm8k-plus", "arc-easy", "arc-challenge"),
    rows={
        "zero-shot": (14.0, 2.0, 17.7, 17.8, 1.5, 19.4, 15.0),
        "fine-tuning": (48.8, 3.5, 26.0, 21.2, 3.7, 28.0, 24.6),
        "knowledge-aug. fine-tuning": (49.3, 3.7, 27.4, 21.9, 3.3, 29.4, 25.3),
        "Std-CoT": (47.8, 7.9, 27.6, 21.5, 4.3, 28.2, 25.0),
        "MT-CoT": (44.1, 4.1, 25.0, 21.4, 2.8, 33.5, 25.1),
        "Step-by-step": (42.4, 4.3, 26.2, 21.1, 3.1, 29.6, 25.9),
        "KARD": (49.5, 7.6, 26.9, 20.2, 4.0, 28.2, 26.5),
        "CasCoD": (48.1, 6.8, 23.1, 19.4, 4.8, 29.0, 27.1),
        "SKIntern": (55.5, 8.1, 31.4, 24.4, 5.3, 36.8, 31.2),
    },
    reference="Std-CoT",
    row_of={
        "prompt": "zero-shot",  # ours asks for a rationale first (zero-shot CoT); Table 1 lists the untrained student once
        "zero-shot": "zero-shot",
        "fine-tune": "fine-tuning",
        "kaft": "knowledge-aug. fine-tuning",
        COST_REFERENCE: "Std-CoT",
        "mt-cot": "MT-CoT",
        "step-by-step": "Step-by-step",
        "kard": "KARD",
        "cascod": "CasCoD",
        "skintern": "SKIntern",
    },
)
"""The main comparison, at the paper's smallest student."""

ABLATIONS = PaperTable(
    source="Tables 2 and 3, LLaMA2-7B student",
    columns=("bbh", "bbsub", "agieval", "gsm8k-plus", "arc-easy"),
    rows={
        "linear, T = 4": (69.3, 37.2, 31.3, 21.2, 78.1),
        "exponential": (64.8, 36.2, 30.0, 16.3, 76.0),
        "inverse-exponential": (59.5, 31.2, 28.8, 15.4, 73.9),
        "T = 3": (60.2, 33.4, 29.1, 15.5, 74.8),
        "T = 7": (65.7, 35.0, 30.0, 20.9, 76.6),
        "without learning summary": (59.8, 30.8, 28.7, 15.3, 74.1),
        "without supplementary knowledge": (62.3, 32.1, 29.5, 16.2, 75.7),
        "without examples": (61.9, 34.1, 29.4, 18.1, 74.6),
    },
    reference="linear, T = 4",
    row_of={
        "base": "linear, T = 4",  # `skintern ablate`'s unmodified config, which follows the paper's default
        "exponential": "exponential",
        "inverse-exponential": "inverse-exponential",
        "steps-3": "T = 3",
        "steps-7": "T = 7",
        "no-summary": "without learning summary",
        "no-supplementary": "without supplementary knowledge",
        "no-examples": "without examples",
    },
)
"""The ablations (`config.PAPER_ABLATIONS`), reported for LLaMA2-7B only."""


@dataclass(frozen=True)
class Direction:
    """One of our paired differences beside the paper's on the same test sets."""

    label: str
    scope: str
    """A group of our datasets ("ID", "OOD")."""
    paper_row: str
    ours_pp: float
    ci_pp: tuple[float, float]
    paper_pp: float
    """The paper's row minus its reference row, averaged over the scope's datasets it reports."""
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


def directions(comparison: Mapping, table: PaperTable) -> list[Direction]:
    """Every group difference of a `stats.compare_methods` result beside the table's difference on the same
    datasets; none unless the comparison's reference is the table's. Our groups pool their items; the paper's
    figure averages its datasets."""
    if table.row_of.get(comparison.get("reference", "")) != table.reference:
        return []
    found = []
    for label, parts in comparison["methods"].items():
        for scope, diff in parts["groups"].items():
            paper = table.difference(label, diff["datasets"])
            if paper is not None:
                found.append(Direction(label, scope, table.row_of[label], 100 * diff["method_minus_reference"],
                                       (100 * diff["ci_low"], 100 * diff["ci_high"]), *paper))
    return found
