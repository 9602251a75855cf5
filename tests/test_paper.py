"""Our paired differences beside the paper's (Table 1 at TinyLLaMA-1.1B; the ablation tables at LLaMA2-7B): the
paper's figures, signs compared only where our CI resolves one, and the report sections built from a results.json's
comparisons."""

from __future__ import annotations

import dataclasses

import pytest

from skintern.ablate import BASE
from skintern.config import PAPER_ABLATIONS
from skintern.methods import COST_REFERENCE, METHODS
from skintern.paper import ABLATIONS, TABLE_1, directions
from skintern.report import ABLATION_COMPARISON, render_report
from skintern.results import load_results
from tests.test_report import FIXTURE


def _diff(delta: float, low: float, high: float, datasets: list[str]) -> dict:
    return {"method_minus_reference": delta, "ci_low": low, "ci_high": high, "mcnemar_p": 0.01, "n_items": 500,
            "datasets": datasets}


OOD = ["bbsub", "agieval", "arc-easy", "arc-challenge"]
AGAINST_STD_COT = {"reference": "std-cot", "methods": {
    "skintern": {"datasets": {}, "groups": {"ID": _diff(0.08, 0.03, 0.13, ["bbh"]), "OOD": _diff(-0.01, -0.05, 0.03, OOD)}},
    "step-by-step": {"datasets": {}, "groups": {"ID": _diff(0.06, 0.02, 0.10, ["bbh"])}},
    "teacher": {"datasets": {}, "groups": {"ID": _diff(0.30, 0.25, 0.35, ["bbh"])}},
}}
AGAINST_BASE = {"reference": "base", "methods": {
    "steps-3": {"datasets": {}, "groups": {"ID": _diff(-0.07, -0.12, -0.02, ["bbh"]), "OOD": _diff(0.0, -0.04, 0.04, OOD)}},
}}


@pytest.mark.parametrize("table", [TABLE_1, ABLATIONS], ids=["table-1", "ablations"])
def test_every_label_has_a_row_and_every_row_a_figure_per_column(table):
    assert set(table.row_of.values()) == set(table.rows) and table.reference in table.rows
    assert all(len(row) == len(table.columns) for row in table.rows.values())


def test_the_labels_are_ours():
    assert set(TABLE_1.row_of) <= set(METHODS) and TABLE_1.row_of[COST_REFERENCE] == TABLE_1.reference
    assert set(ABLATIONS.row_of) == {BASE, *PAPER_ABLATIONS} and ABLATIONS.row_of[BASE] == ABLATIONS.reference


def test_difference_is_the_row_minus_the_reference_averaged_over_the_shared_datasets():
    assert TABLE_1.difference("skintern", ["bbh"]) == (pytest.approx(55.5 - 47.8), ("bbh",))
    ood, shared = TABLE_1.difference("skintern", OOD)
    assert ood == pytest.approx(((31.4 - 27.6) + (24.4 - 21.5) + (36.8 - 28.2) + (31.2 - 25.0)) / 4)
    assert shared == tuple(OOD)
    assert TABLE_1.difference("cascod", ["bbsub", "not-in-the-paper"]) == (pytest.approx(23.1 - 27.6), ("bbsub",))
    assert TABLE_1.difference("teacher", ["bbh"]) is None and TABLE_1.difference("skintern", ["unknown"]) is None
    # the ablation tables have no ARC-C column
    assert ABLATIONS.difference("steps-3", OOD) == (pytest.approx(((33.4 - 37.2) + (29.1 - 31.3) + (74.8 - 78.1)) / 3),
                                                    ("bbsub", "agieval", "arc-easy"))


def test_signs_are_compared_only_where_our_ci_excludes_zero():
    found = {(d.label, d.scope): d for d in directions(AGAINST_STD_COT, TABLE_1)}
    assert set(found) == {("skintern", "ID"), ("skintern", "OOD"), ("step-by-step", "ID")}  # no Table 1 row: teacher
    assert found["skintern", "ID"].verdict == "same sign" and found["skintern", "ID"].ours_pp == pytest.approx(8.0)
    assert found["skintern", "OOD"].verdict == "none detected by ours"
    assert found["step-by-step", "ID"].paper_pp == pytest.approx(42.4 - 47.8)
    assert found["step-by-step", "ID"].verdict == "opposite sign"
    assert dataclasses.replace(found["skintern", "ID"], paper_pp=0.0).verdict == "paper: no difference"


def test_a_table_answers_only_a_comparison_against_its_reference():
    assert directions(AGAINST_STD_COT, ABLATIONS) == [] and directions(AGAINST_BASE, TABLE_1) == []
    assert directions({**AGAINST_STD_COT, "reference": "skintern"}, TABLE_1) == []
    (steps_3, _) = directions(AGAINST_BASE, ABLATIONS)
    assert (steps_3.paper_row, steps_3.verdict) == ("T = 3", "same sign")


def test_report_sets_our_directions_beside_the_papers(tmp_path):
    results = dataclasses.replace(load_results(FIXTURE), comparisons={"std-cot": AGAINST_STD_COT,
                                                                      ABLATION_COMPARISON: AGAINST_BASE})
    report = render_report(results, tmp_path)["md"].read_text()
    main = report.split("## Direction against the paper (Table 1, TinyLLaMA-1.1B student)")[1].split("\n## ")[0]
    assert "| skintern | ID | +8.0 [+3.0, +13.0] | SKIntern | +7.7 | bbh | same sign |" in main
    assert "| step-by-step | ID | +6.0 [+2.0, +10.0] | Step-by-step | -5.4 | bbh | opposite sign |" in main
    assert "teacher" not in main
    ablations = report.split("## Direction against the paper (Tables 2 and 3, LLaMA2-7B student)")[1].split("\n## ")[0]
    assert "| steps-3 | ID | -7.0 [-12.0, -2.0] | T = 3 | -9.1 | bbh | same sign |" in ablations
    assert "| steps-3 | OOD | +0.0 [-4.0, +4.0] | T = 3 | -3.1 | bbsub, agieval, arc-easy | none detected by ours |" in ablations
