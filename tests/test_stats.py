"""Paired statistics: exact McNemar p, seeded cluster bootstrap, seed spread and resolvable differences."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from skintern.errors import SkinternError
from skintern.stats import (
    accuracy_halfwidth,
    compare_methods,
    paired_difference,
    resolvable_difference,
    seed_std,
)

Z_975 = 1.959963984540054  # standard normal 97.5 % quantile
Z_80 = 0.8416212335729143  # standard normal 80 % quantile


def _outcomes(pattern: list[tuple[bool, bool]], seeds: tuple[int, ...] = (0,)) -> tuple[dict, dict]:
    """(reference, method) outcome maps with item i's (a, b) pair repeated unchanged on every seed."""
    a = {(f"q{i}", s): ra for i, (ra, _) in enumerate(pattern) for s in seeds}
    b = {(f"q{i}", s): rb for i, (_, rb) in enumerate(pattern) for s in seeds}
    return a, b


def _pattern(both: int, method_only: int, reference_only: int, neither: int) -> list[tuple[bool, bool]]:
    return (
        [(True, True)] * both
        + [(False, True)] * method_only
        + [(True, False)] * reference_only
        + [(False, False)] * neither
    )


def test_exact_mcnemar_from_the_binomial():
    a, b = _outcomes(_pattern(both=5, method_only=10, reference_only=2, neither=3))
    r = paired_difference(a, b, n_boot=200)
    # 2 * P(X <= 2 | n = 12, 1/2) = 2 * (1 + 12 + 66) / 2**12
    assert r.mcnemar_p == pytest.approx(158 / 4096, rel=1e-12)
    assert (r.method_only, r.reference_only, r.n_items, r.n_pairs) == (10, 2, 20, 20)
    assert r.reference_accuracy == pytest.approx(7 / 20)
    assert r.method_accuracy == pytest.approx(15 / 20)
    assert r.method_minus_reference == pytest.approx(0.4)
    swapped = paired_difference(b, a, n_boot=200)
    assert swapped.method_minus_reference == pytest.approx(-0.4)
    assert (swapped.method_only, swapped.reference_only) == (2, 10)
    assert swapped.mcnemar_p == pytest.approx(r.mcnemar_p, rel=1e-12)


def test_identical_methods_have_no_difference():
    a, _ = _outcomes(_pattern(both=30, method_only=0, reference_only=0, neither=20), seeds=(42, 43))
    r = paired_difference(a, dict(a))
    assert r.method_minus_reference == 0.0
    assert (r.ci_low, r.ci_high) == (0.0, 0.0)
    assert r.mcnemar_p == 1.0
    assert (r.method_only, r.reference_only, r.n_items, r.n_pairs) == (0, 0, 50, 100)


def test_bootstrap_interval_covers_the_difference_and_is_seeded():
    # 400 items: reference 50 %, method 60 %, discordant rate d = 0.2, difference 0.1.
    a, b = _outcomes(_pattern(both=180, method_only=60, reference_only=20, neither=140))
    r = paired_difference(a, b)
    assert r.method_minus_reference == pytest.approx(0.1)
    assert 0.0 < r.ci_low < 0.1 < r.ci_high
    normal_halfwidth = Z_975 * math.sqrt((0.2 - 0.1**2) / 400)  # paired-difference standard error
    assert (r.ci_high - r.ci_low) / 2 == pytest.approx(normal_halfwidth, rel=0.1)
    assert paired_difference(a, b) == r
    # With one seed the resampled differences sit on a 1/400 grid, so percentiles of different bootstrap
    # seeds can coincide; items with one or two seeds break the grid and expose the bootstrap seed.
    a2, b2 = _outcomes(_pattern(both=180, method_only=60, reference_only=20, neither=140), seeds=(42, 43))
    b2 = {(item, s): v for (item, s), v in b2.items() if s == 42 or int(item[1:]) % 3}
    assert paired_difference(a2, b2, seed=1) == paired_difference(a2, b2, seed=1)
    assert len({paired_difference(a2, b2, seed=s).ci_low for s in range(5)}) > 1
    narrower = paired_difference(a, b, confidence=0.5)
    assert r.ci_low < narrower.ci_low < narrower.ci_high < r.ci_high


def test_cluster_bootstrap_keeps_the_seeds_of_an_item_together():
    pattern = _pattern(both=180, method_only=60, reference_only=20, neither=140)
    one_seed = paired_difference(*_outcomes(pattern))
    # Two seeds that repeat each item's outcomes carry no more information than one: same interval.
    a, b = _outcomes(pattern, seeds=(42, 43))
    clustered = paired_difference(a, b)
    assert clustered.n_pairs == 800 and clustered.n_items == 400
    assert (clustered.ci_low, clustered.ci_high) == pytest.approx((one_seed.ci_low, one_seed.ci_high), rel=1e-12)
    # Treating every (item, seed) pair as its own item would shrink the interval by about 1/sqrt(2).
    naive = paired_difference(
        {(f"{i}@{s}", 0): v for (i, s), v in a.items()}, {(f"{i}@{s}", 0): v for (i, s), v in b.items()}
    )
    ratio = (naive.ci_high - naive.ci_low) / (clustered.ci_high - clustered.ci_low)
    assert ratio == pytest.approx(1 / math.sqrt(2), abs=0.06)


def test_unpaired_keys_are_dropped():
    a, b = _outcomes(_pattern(both=5, method_only=10, reference_only=2, neither=3))
    a_extra = {**a, ("only-a", 0): True, ("q0", 7): False}
    b_extra = {**b, ("only-b", 0): False, ("q1", 9): True}
    assert paired_difference(a_extra, b_extra, n_boot=300) == paired_difference(a, b, n_boot=300)


def test_no_shared_key_is_an_error():
    with pytest.raises(SkinternError, match="share no"):
        paired_difference({("q1", 0): True}, {("q1", 1): True})
    with pytest.raises(SkinternError, match="confidence"):
        paired_difference({("q1", 0): True}, {("q1", 0): True}, confidence=95)


def test_bootstrap_is_fast_on_a_thousand_items():
    rng = np.random.default_rng(0)
    seeds = (42, 43, 44)
    a = {(f"q{i}", s): bool(rng.random() < 0.5) for i in range(1000) for s in seeds}
    b = {(f"q{i}", s): bool(rng.random() < 0.55) for i in range(1000) for s in seeds}
    start = time.perf_counter()
    r = paired_difference(a, b, n_boot=10000)
    assert time.perf_counter() - start < 1.0
    assert r.n_items == 1000 and r.n_pairs == 3000


def test_seed_std_is_the_sample_std():
    assert seed_std([0.2, 0.4]) == pytest.approx(math.sqrt(0.02), rel=1e-12)
    assert seed_std([0.1, 0.2, 0.3]) == pytest.approx(0.1, rel=1e-12)
    assert seed_std([0.5]) is None
    assert seed_std([]) is None


def test_resolvable_difference_follows_the_formula():
    assert resolvable_difference(100) == pytest.approx((Z_975 + Z_80) * math.sqrt(0.5 / 100), rel=1e-9)
    assert resolvable_difference(1000, discordance=0.2) == pytest.approx(
        (Z_975 + Z_80) * math.sqrt(0.2 / 1000), rel=1e-9
    )
    # default discordance 2 p (1 - p) = 0.32 at accuracy 0.8
    assert resolvable_difference(250, accuracy=0.8) == pytest.approx((Z_975 + Z_80) * math.sqrt(0.32 / 250), rel=1e-9)
    assert resolvable_difference(400) == pytest.approx(resolvable_difference(100) / 2, rel=1e-12)
    sizes = [50, 100, 250, 1000, 5000]
    mdes = [resolvable_difference(n) for n in sizes]
    assert mdes == sorted(mdes, reverse=True)
    assert accuracy_halfwidth(100) == pytest.approx(Z_975 * 0.05, rel=1e-9)
    for bad in ({"n_items": 0}, {"n_items": 100, "power": 1.0}, {"n_items": 100, "discordance": 0.0}):
        with pytest.raises(SkinternError):
            resolvable_difference(**bad)


def _rows(dataset: str, pattern: list[bool], seeds=(42, 43)) -> list[dict]:
    return [
        {"id": f"q{i}", "dataset": dataset, "task": "t", "correct": c, "seed": s}
        for s in seeds
        for i, c in enumerate(pattern)
    ]


def test_compare_methods_per_dataset_and_pooled_group():
    ref_bbh, new_bbh = zip(*_pattern(both=8, method_only=6, reference_only=1, neither=5))
    ref_arc, new_arc = zip(*_pattern(both=4, method_only=2, reference_only=3, neither=1))
    rows = {
        "base": _rows("bbh", ref_bbh) + _rows("arc-easy", ref_arc),
        "skintern": _rows("bbh", new_bbh) + _rows("arc-easy", new_arc) + _rows("agieval", [True, False]),
        "same": _rows("bbh", ref_bbh),
    }
    groups = {"ID": ["bbh"], "OOD": ["arc-easy", "agieval"], "none": ["bbsub"]}
    out = compare_methods(rows, "base", n_boot=500, groups=groups)
    json.dumps(out)
    assert out["reference"] == "base" and set(out["methods"]) == {"skintern", "same"}

    skintern = out["methods"]["skintern"]
    assert set(skintern["datasets"]) == {"bbh", "arc-easy"}  # agieval has no reference predictions
    bbh = skintern["datasets"]["bbh"]
    assert (bbh["method_only"], bbh["reference_only"], bbh["n_items"], bbh["n_pairs"]) == (12, 2, 20, 40)
    assert bbh["method_minus_reference"] == pytest.approx(5 / 20)
    assert bbh == paired_difference(*_outcomes(list(zip(ref_bbh, new_bbh)), seeds=(42, 43)), n_boot=500).to_dict()

    assert set(skintern["groups"]) == {"ID", "OOD"}
    assert skintern["groups"]["ID"] == {**bbh, "datasets": ["bbh"]}
    ood = skintern["groups"]["OOD"]
    assert ood["datasets"] == ["arc-easy"]
    assert ood["method_minus_reference"] == pytest.approx(-1 / 10)

    # ids repeat across datasets ("q0" in bbh and arc-easy): pooling keeps them distinct items
    pooled = compare_methods(rows, "base", n_boot=500, groups={"all": ["bbh", "arc-easy"]})
    everything = pooled["methods"]["skintern"]["groups"]["all"]
    assert (everything["n_items"], everything["n_pairs"]) == (30, 60)
    assert everything["method_minus_reference"] == pytest.approx((5 - 1) / 30)

    same = out["methods"]["same"]["datasets"]["bbh"]
    assert (same["method_minus_reference"], same["ci_low"], same["ci_high"], same["mcnemar_p"]) == (0.0, 0.0, 0.0, 1.0)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ({"a": []}, "reference method 'base'"),
        ({"base": [{"id": "q0", "dataset": "bbh", "correct": True}]}, "method 'base', row 0: missing field 'seed'"),
        ({"base": [{"id": "q0", "dataset": "bbh", "correct": 1, "seed": 42}]}, "field 'correct' must be true or false"),
        ({"base": [{"id": "q0", "dataset": "bbh", "correct": True, "seed": "42"}]}, "field 'seed' must be an integer"),
        ({"base": _rows("bbh", [True]) + _rows("bbh", [False], seeds=(43,))}, "row 2: duplicate prediction"),
        ({"base": _rows("bbh", [True], seeds=(1,)), "m": _rows("bbh", [True], seeds=(2,))}, "'m' vs 'base' on 'bbh'"),
    ],
)
def test_compare_methods_rejects_bad_rows(rows, message):
    with pytest.raises(SkinternError, match=message):
        compare_methods(rows, "base", n_boot=10)
