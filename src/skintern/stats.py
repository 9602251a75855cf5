"""Paired statistics that say whether two methods really differ on the same test items.

Every method is evaluated on the same items, possibly over several seeds, so comparisons are paired:
the unit is a key (item id, seed) and only keys both methods answered count. Two methods' accuracies on
a few hundred items differ by a few points through chance alone; these helpers put a number on that.

Convention throughout: ``a`` is the reference and ``b`` the method, and differences are reported as
``method_minus_reference`` = accuracy(b) - accuracy(a), so a positive value means the method is better.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import binomtest, norm

from skintern.errors import SkinternError

# Bootstrap resamples drawn per block: bounds memory to _BOOT_BLOCK * n_items indices.
_BOOT_BLOCK = 1000


@dataclass(frozen=True)
class PairedDifference:
    """Method (b) against reference (a) on the keys (item id, seed) both answered.

    ``method_minus_reference`` is mean(b) - mean(a) over the ``n_pairs`` shared keys; ``ci_low``/``ci_high``
    its paired cluster-bootstrap percentile interval at ``confidence``; ``mcnemar_p`` the exact McNemar
    p-value; ``method_only``/``reference_only`` the discordant pairs where only b / only a was correct.
    """

    reference_accuracy: float
    method_accuracy: float
    method_minus_reference: float
    ci_low: float
    ci_high: float
    confidence: float
    mcnemar_p: float
    n_items: int
    n_pairs: int
    method_only: int
    reference_only: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_unit_interval(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise SkinternError(f"{name} must lie strictly between 0 and 1, got {value}")


def paired_difference(
    a: Mapping[tuple[str, int], bool],
    b: Mapping[tuple[str, int], bool],
    *,
    n_boot: int = 10000,
    seed: int = 0,
    confidence: float = 0.95,
) -> PairedDifference:
    """Compare method ``b`` with reference ``a``, each mapping (item id, seed) -> correct.

    Keys present in only one mapping are dropped. The confidence interval is a paired bootstrap that
    resamples *items* with replacement and keeps all seeds of an item together (cluster bootstrap),
    because the seeds of one item share its difficulty and are not independent draws; each resample's
    statistic is the pooled mean difference over its pairs. ``mcnemar_p`` is the exact two-sided McNemar
    test (binomial test of the discordant counts against 1/2; 1.0 when there are none). It treats every
    (item, seed) pair as independent, so with several seeds per item it is optimistic; the bootstrap
    interval is the one that accounts for that.
    """
    if n_boot < 1:
        raise SkinternError(f"n_boot must be at least 1, got {n_boot}")
    _check_unit_interval("confidence", confidence)
    keys = [k for k in a if k in b]
    if not keys:
        raise SkinternError("paired_difference: the two methods share no (item id, seed) key")
    ref = np.fromiter((bool(a[k]) for k in keys), dtype=bool, count=len(keys))
    met = np.fromiter((bool(b[k]) for k in keys), dtype=bool, count=len(keys))
    _, item_of_pair = np.unique(np.array([str(k[0]) for k in keys]), return_inverse=True)
    n_items = int(item_of_pair.max()) + 1
    diff = met.astype(np.int64) - ref.astype(np.int64)
    item_diff = np.bincount(item_of_pair, weights=diff, minlength=n_items)
    item_pairs = np.bincount(item_of_pair, minlength=n_items).astype(np.float64)

    rng = np.random.default_rng(seed)
    boot = np.empty(n_boot)
    for start in range(0, n_boot, _BOOT_BLOCK):
        stop = min(start + _BOOT_BLOCK, n_boot)
        idx = rng.integers(0, n_items, size=(stop - start, n_items))
        boot[start:stop] = item_diff[idx].sum(axis=1) / item_pairs[idx].sum(axis=1)
    alpha = 1.0 - confidence
    ci_low, ci_high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])

    method_only = int(np.count_nonzero(met & ~ref))
    reference_only = int(np.count_nonzero(ref & ~met))
    discordant = method_only + reference_only
    p = binomtest(method_only, discordant, 0.5).pvalue if discordant else 1.0
    return PairedDifference(
        reference_accuracy=float(ref.mean()),
        method_accuracy=float(met.mean()),
        method_minus_reference=float(diff.mean()),
        ci_low=float(ci_low),
        ci_high=float(ci_high),
        confidence=float(confidence),
        mcnemar_p=float(p),
        n_items=n_items,
        n_pairs=len(keys),
        method_only=method_only,
        reference_only=reference_only,
    )


def seed_std(values: Sequence[float]) -> float | None:
    """Sample standard deviation (ddof=1) of a metric over seeds; None with fewer than two seeds."""
    if len(values) < 2:
        return None
    return float(np.std(np.asarray(values, dtype=np.float64), ddof=1))


def resolvable_difference(
    n_items: int,
    *,
    accuracy: float = 0.5,
    discordance: float | None = None,
    confidence: float = 0.95,
    power: float = 0.8,
) -> float:
    """Smallest accuracy difference a paired test on ``n_items`` items detects (minimum detectable effect).

    For paired proportions with discordant-pair rate d (the share of items exactly one method gets right),
    the difference of accuracies has variance ≈ d / n near zero effect, so a two-sided test at level
    α = 1 - confidence reaches the given power for differences of at least

        MDE = (z_{1-α/2} + z_{power}) * sqrt(d / n).

    Without a measured ``discordance`` d defaults to 2 * accuracy * (1 - accuracy), the rate for two
    methods of that accuracy whose errors are independent. It is conservative: real methods share easy
    and hard items, so their errors correlate positively and d is smaller (and at accuracy 0.5 it is the
    largest possible, 0.5).
    """
    if n_items < 1:
        raise SkinternError(f"n_items must be at least 1, got {n_items}")
    _check_unit_interval("accuracy", accuracy)
    _check_unit_interval("confidence", confidence)
    _check_unit_interval("power", power)
    d = 2.0 * accuracy * (1.0 - accuracy) if discordance is None else discordance
    if not 0.0 < d <= 1.0:
        raise SkinternError(f"discordance must lie in (0, 1], got {d}")
    z = norm.ppf(1.0 - (1.0 - confidence) / 2) + norm.ppf(power)
    return float(z * np.sqrt(d / n_items))


def accuracy_halfwidth(n_items: int, p: float = 0.5, *, confidence: float = 0.95) -> float:
    """Half-width of the normal-approximation (Wald) interval of one accuracy on ``n_items`` items:
    z_{1-α/2} * sqrt(p (1 - p) / n). At p = 0.5, the widest case, 100 items give ±9.8 points at 95 %."""
    if n_items < 1:
        raise SkinternError(f"n_items must be at least 1, got {n_items}")
    _check_unit_interval("p", p)
    _check_unit_interval("confidence", confidence)
    return float(norm.ppf(1.0 - (1.0 - confidence) / 2) * np.sqrt(p * (1.0 - p) / n_items))


def _outcomes_by_dataset(label: str, rows: Iterable[Mapping]) -> dict[str, dict[tuple[str, int], bool]]:
    """dataset -> {("dataset/id", seed): correct}; the dataset prefix keeps ids unique when datasets pool."""
    out: dict[str, dict[tuple[str, int], bool]] = defaultdict(dict)
    for i, row in enumerate(rows):
        where = f"method {label!r}, row {i}"
        for field in ("id", "dataset", "correct", "seed"):
            if field not in row:
                raise SkinternError(f"{where}: missing field '{field}'")
        if not isinstance(row["correct"], bool):
            raise SkinternError(f"{where}: field 'correct' must be true or false, got {row['correct']!r}")
        if not isinstance(row["seed"], int) or isinstance(row["seed"], bool):
            raise SkinternError(f"{where}: field 'seed' must be an integer, got {row['seed']!r}")
        dataset = str(row["dataset"])
        key = (f"{dataset}/{row['id']}", row["seed"])
        if key in out[dataset]:
            raise SkinternError(f"{where}: duplicate prediction for item {row['id']!r} of {dataset!r}, seed {row['seed']}")
        out[dataset][key] = row["correct"]
    return out


def _paired(a: Mapping, b: Mapping, where: str, n_boot: int, seed: int) -> dict[str, Any]:
    """paired_difference as a dict, its error naming which comparison failed."""
    try:
        return paired_difference(a, b, n_boot=n_boot, seed=seed).to_dict()
    except SkinternError as e:
        raise SkinternError(f"{where}: {e}") from None


def compare_methods(
    rows_by_method: Mapping[str, Iterable[Mapping]],
    reference: str,
    *,
    n_boot: int = 10000,
    seed: int = 0,
    groups: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """Every method against ``reference``, per dataset and per group of datasets (pooled over the group's
    items), from prediction rows carrying "id", "dataset", "correct" and "seed".

    Returns ``{"reference": reference, "methods": {label: {"datasets": {dataset: PairedDifference dict},
    "groups": {group: PairedDifference dict + "datasets": [pooled datasets]}}}}``, all JSON-serialisable.
    Only datasets both methods have are compared; a group none of whose datasets are shared is left out.
    """
    if reference not in rows_by_method:
        raise SkinternError(f"reference method {reference!r} is not among {sorted(rows_by_method)}")
    outcomes = {label: _outcomes_by_dataset(label, rows) for label, rows in rows_by_method.items()}
    ref = outcomes[reference]
    methods: dict[str, Any] = {}
    for label, mine in outcomes.items():
        if label == reference:
            continue
        shared = sorted(set(mine) & set(ref))
        per_dataset = {d: _paired(ref[d], mine[d], f"{label!r} vs {reference!r} on {d!r}", n_boot, seed) for d in shared}
        per_group: dict[str, Any] = {}
        for group, members in (groups or {}).items():
            pooled = [d for d in members if d in shared]
            if not pooled:
                continue
            ref_pool = {k: v for d in pooled for k, v in ref[d].items()}
            mine_pool = {k: v for d in pooled for k, v in mine[d].items()}
            result = _paired(ref_pool, mine_pool, f"{label!r} vs {reference!r} on group {group!r}", n_boot, seed)
            per_group[group] = {**result, "datasets": pooled}
        methods[label] = {"datasets": per_dataset, "groups": per_group}
    return {"reference": reference, "methods": methods}
