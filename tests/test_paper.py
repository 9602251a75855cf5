"""Our differences to Std-CoT beside the paper's Table 1 (TinyLLaMA-1.1B): the paper's figures, the signs compared
only where our CI resolves one, and the report section built from a results.json's comparisons."""

from __future__ import annotations

import dataclasses

import pytest

from skintern.methods import COST_REFERENCE, METHODS
from skintern.paper import PAPER_ROW_OF, PAPER_ROWS, directions, paper_difference
from skintern.report import render_report
from skintern.results import load_results
from tests.test_report import FIXTURE


def _diff(delta: float, low: float, high: float, datasets: list[str]) -> dict:
    return {"method_minus_reference": delta, "ci_low": low, "ci_high": high, "mcnemar_p": 0.01, "n_items": 500,
            "datasets": datasets}


OOD = ["bbsub", "agieval", "arc-easy", "arc-challenge"]
COMPARISON = {"reference": "std-cot", "methods": {
    "skintern": {"datasets": {}, "groups": {"ID": _diff(0.08, 0.03, 0.13, ["bbh"]), "OOD": _diff(-0.01, -0.05, 0.03, OOD)}},
    "step-by-step": {"datasets": {}, "groups": {"ID": _diff(0.06, 0.02, 0.10, ["bbh"])}},
    "teacher": {"datasets": {}, "groups": {"ID": _diff(0.30, 0.25, 0.35, ["bbh"])}},
}}


def test_every_mapped_method_exists_and_std_cot_is_the_papers_reference():
    assert set(PAPER_ROW_OF) <= set(METHODS) and set(PAPER_ROW_OF.values()) <= set(PAPER_ROWS)
    assert PAPER_ROW_OF[COST_REFERENCE] == "Std-CoT"
    assert all(len(row) == 7 for row in PAPER_ROWS.values())


def test_paper_difference_is_table_1_minus_std_cot_averaged_over_the_shared_datasets():
    assert paper_difference("skintern", ["bbh"]) == (pytest.approx(55.5 - 47.8), ("bbh",))
    ood, shared = paper_difference("skintern", OOD)
    assert ood == pytest.approx(((31.4 - 27.6) + (24.4 - 21.5) + (36.8 - 28.2) + (31.2 - 25.0)) / 4)
    assert shared == tuple(OOD)
    assert paper_difference("cascod", ["bbsub", "not-in-the-paper"]) == (pytest.approx(23.1 - 27.6), ("bbsub",))
    assert paper_difference("teacher", ["bbh"]) is None and paper_difference("skintern", ["unknown"]) is None


def test_signs_are_compared_only_where_our_ci_excludes_zero():
    found = {(d.method, d.scope): d for d in directions(COMPARISON)}
    assert set(found) == {("skintern", "ID"), ("skintern", "OOD"), ("step-by-step", "ID")}  # no Table 1 row: teacher
    assert found["skintern", "ID"].verdict == "same sign" and found["skintern", "ID"].ours_pp == pytest.approx(8.0)
    assert found["skintern", "OOD"].verdict == "none detected by ours"
    assert found["step-by-step", "ID"].paper_pp == pytest.approx(42.4 - 47.8)
    assert found["step-by-step", "ID"].verdict == "opposite sign"
    flat = dataclasses.replace(found["skintern", "ID"], paper_pp=0.0)
    assert flat.verdict == "paper: no difference"


def test_only_a_comparison_against_std_cot_has_paper_directions():
    assert directions({**COMPARISON, "reference": "skintern"}) == []


def test_report_sets_our_directions_beside_the_papers(tmp_path):
    results = dataclasses.replace(load_results(FIXTURE), comparisons={"std-cot": COMPARISON})
    report = render_report(results, tmp_path)["md"].read_text()
    section = report.split("## Direction against the paper (TinyLLaMA-1.1B)")[1].split("\n## ")[0]
    assert "| skintern | ID | +8.0 [+3.0, +13.0] | SKIntern | +7.7 | bbh | same sign |" in section
    assert "| step-by-step | ID | +6.0 [+2.0, +10.0] | Step-by-step | -5.4 | bbh | opposite sign |" in section
    assert "teacher" not in section
