"""The report's loss-curve plot: every trained method's logged losses, SKIntern's stage ends where its stages' step
counts put them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skintern.report import loss_curve_figure, loss_curves, render_report
from skintern.results import Results

FIXTURE = Path(__file__).parent / "fixtures" / "results.json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def stage(steps: int, losses: list[float]) -> dict:
    return {"examples": 4 * steps, "dropped_too_long": 0, "steps": steps, "train_loss": losses[-1], "seconds": 1.0,
            "losses": losses}


@pytest.fixture
def results() -> Results:
    """The report fixture with training stats: std-cot in one call, SKIntern in three stages of 10, 6 and 15 steps."""
    raw = json.loads(FIXTURE.read_text())
    raw["config"] = {"train": {"logging_steps": 5}}
    stages = [stage(10, [2.0, 1.8]), stage(6, [1.7]), stage(15, [1.5, 1.4, 1.2])]
    runs = {run["method"]: run for run in raw["runs"]}
    runs["std-cot"]["train"] = stage(12, [2.1, 1.6])
    runs["skintern"]["train"] = {**stage(31, [loss for s in stages for loss in s["losses"]]), "stages": stages}
    return Results.from_dict(raw)


def test_losses_sit_at_their_logged_steps_and_stages_end_at_the_summed_step_counts(results):
    std_cot, skintern = loss_curves(results)  # untrained methods and kard (no train stats) have no curve
    assert std_cot.label == "std-cot" and std_cot.steps == [5, 10] and std_cot.boundaries == []
    assert skintern.boundaries == [10, 16]
    assert skintern.steps == [5, 10, 15, 21, 26, 31]
    assert skintern.losses == [2.0, 1.8, 1.7, 1.5, 1.4, 1.2]


def test_without_the_config_a_calls_losses_spread_over_its_steps(results):
    results.config = None
    skintern = loss_curves(results)[1]
    assert skintern.steps == [5, 10, 16, 21, 26, 31] and skintern.boundaries == [10, 16]


def test_the_figure_marks_skinterns_stage_ends_only(results):
    fig = loss_curve_figure(loss_curves(results))
    std_cot, skintern = fig.axes
    vertical = lambda ax: [line.get_xdata()[0] for line in ax.lines if list(line.get_xdata()) == [line.get_xdata()[0]] * 2]
    assert vertical(std_cot) == [] and vertical(skintern) == [10, 16]
    assert list(skintern.lines[0].get_xdata()) == [5, 10, 15, 21, 26, 31]
    assert skintern.get_title() == "skintern (seed 42)"  # the fixture's SKIntern entry combines seeds 42 and 43


def test_the_report_writes_and_shows_the_plot(results, tmp_path):
    paths = render_report(results, tmp_path)
    assert paths["loss_curves.png"].read_bytes().startswith(PNG_MAGIC)
    assert "](loss_curves.png)" in paths["md"].read_text()


def test_a_combined_compare_says_whose_seed_the_curve_is(results):
    assert [curve.label for curve in loss_curves(results)] == ["std-cot", "skintern (seed 42)"]
    results.runs[1].seeds = [43, 44]
    assert loss_curves(results)[0].label == "std-cot (seed 43)"
