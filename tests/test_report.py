"""The report renders the fixture's numbers faithfully and rejects malformed results with a named field."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest

from skintern.errors import SkinternError
from skintern.report import _label_offsets, merge_results, render_report, summary_table
from skintern.results import Results, load_results

FIXTURE = Path(__file__).parent / "fixtures" / "results.json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def results() -> Results:
    return load_results(FIXTURE)


@pytest.fixture
def raw() -> dict:
    return json.loads(FIXTURE.read_text())


@pytest.fixture(scope="module")
def rendered(results, tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    out_dir = tmp_path_factory.mktemp("report")
    return out_dir, render_report(results, out_dir)


def _rows_by_method(results: Results) -> dict[str, dict]:
    return {row["method"]: row for row in summary_table(results)}


def test_summary_table_averages(results):
    rows = _rows_by_method(results)
    assert list(rows) == ["prompt", "std-cot", "kard", "skintern"]
    assert rows["prompt"]["id_avg"] == pytest.approx(0.20)
    assert rows["prompt"]["ood_avg"] == pytest.approx((0.15 + 0.18 + 0.40 + 0.25) / 4)
    assert rows["skintern"]["ood_avg"] == pytest.approx(0.32)
    # kard has no arc-challenge: the OOD mean is over the three datasets it has.
    assert rows["kard"]["arc-challenge"] is None
    assert rows["kard"]["ood_avg"] == pytest.approx((0.24 + 0.21 + 0.46) / 3)
    assert "gsm8k" in rows["skintern"] and rows["skintern"]["gsm8k"] == pytest.approx(0.05)


def test_summary_table_cost(results):
    rows = _rows_by_method(results)
    assert rows["skintern"]["flops_per_query"] == pytest.approx(26.65e9 + 30.75e9)
    assert rows["kard"]["prompt_tokens"] == 520.0
    assert rows["std-cot"]["generated_tokens"] == 150.2
    assert rows["prompt"]["wall_time_s"] == 0.42


def test_markdown_content(rendered):
    out_dir, paths = rendered
    md = paths["md"].read_text(encoding="utf-8")
    assert paths["md"] == out_dir / "report.md"
    assert md.startswith("# SKIntern report: quickstart")
    assert "| prompt | 42 | 20.0 | 15.0 | 18.0 | 40.0 | 25.0 | 1.0 | 20.0 | 24.5 |" in md
    assert "| kard | 42 | 33.0 | 24.0 | 21.0 | 46.0 | – | – | 33.0 | 30.3 |" in md
    assert "| skintern | 42, 43 | 36.0 ± 1.2 | 26.0 ± 2.0 | 22.0 | 48.0 | 32.0 | 5.0 | 36.0 | 32.0 |" in md
    # Cost relative to std-cot: 520 / 120.5 prompt tokens, 172.25 / 68.8 GFLOPs.
    assert "| kard | 520.0 | 140.0 | 129.20 | 43.05 | 172.25 | 1.35 | 355 | 4.32× | 2.50× |" in md
    assert "| std-cot | 120.5 | 150.2 | 26.65 | 42.15 | 68.80 |" in md and "| 1.00× | 1.00× |" in md
    # SKIntern against the costly methods present (kard; no cascod run): 120.5 / 520 tokens, 57.4 / 172.25 GFLOPs.
    assert "skintern per query: 0.23× the prompt tokens and 0.33× the FLOPs of kard." in md
    assert "- std-cot: bbh +11.2 pp, bbsub +7.0 pp" in md
    # kard's agieval was scored on 150 items, the baseline on 200: not compared.
    assert "- kard: bbh +13.0 pp, bbsub +9.0 pp, arc-easy +6.0 pp (not comparable, different n: agieval)" in md
    assert "| date_understanding | 10.0 | 20.0 | 22.0 | 25.0 |" in md
    assert "K = 4, N = 3" in md and "| 1 | 0.67 | 2 | 1 | no |" in md
    for png in ("accuracy_vs_flops.png", "per_task.png", "schedule.png"):
        assert f"]({png})" in md


def test_html_has_tables_and_images(rendered):
    _, paths = rendered
    page = paths["html"].read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert page.count("<table>") == 4
    assert "<tr><td>skintern</td><td>42, 43</td><td>36.0 ± 1.2</td>" in page
    for png in ("accuracy_vs_flops.png", "per_task.png", "schedule.png"):
        assert f'<img src="{png}"' in page


def test_pngs_are_valid_and_nothing_temporary_left(rendered):
    out_dir, paths = rendered
    pngs = {name: path for name, path in paths.items() if name.endswith(".png")}
    assert set(pngs) == {"accuracy_vs_flops.png", "per_task.png", "schedule.png"}
    for path in pngs.values():
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(["report.md", "report.html", *pngs])


def test_optional_parts_are_omitted(results, tmp_path):
    minimal = copy.deepcopy(results)
    minimal.schedule = None
    for run in minimal.runs:
        run.flops_per_query = None
    minimal.runs = [r for r in minimal.runs if r.method != "prompt"]
    paths = render_report(minimal, tmp_path, title="Minimal")
    assert set(paths) == {"md", "html", "per_task.png"}
    md = paths["md"].read_text(encoding="utf-8")
    assert md.startswith("# Minimal") and "## Schedule" not in md and "untrained student" not in md
    assert "| kard | 520.0 | 140.0 | – | – | – | 1.35 | 355 | 4.32× | – |" in md


def test_cost_ratios_need_a_std_cot_run(results, tmp_path):
    without = dataclasses.replace(results, runs=[r for r in results.runs if r.method != "std-cot"])
    md = render_report(without, tmp_path)["md"].read_text(encoding="utf-8")
    assert "× std-cot" not in md
    assert "| kard | 520.0 | 140.0 | 129.20 | 43.05 | 172.25 | 1.35 | 355 |\n" in md


def _write(tmp_path: Path, results: dict) -> Path:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results), encoding="utf-8")
    return path


def test_missing_runs_is_named(tmp_path):
    with pytest.raises(SkinternError, match=r"results\.json: missing field 'runs'"):
        load_results(_write(tmp_path, {"name": "x"}))


def test_run_without_eval_is_named(raw, tmp_path):
    del raw["runs"][1]["eval"]
    with pytest.raises(SkinternError, match=r"results\.json: runs\[1\]: missing field 'eval'"):
        load_results(_write(tmp_path, raw))


def test_eval_without_accuracy_is_named(raw, tmp_path):
    del raw["runs"][2]["eval"]["bbsub"]["accuracy"]
    with pytest.raises(SkinternError, match=r"runs\[2\]\.eval\.bbsub: missing field 'accuracy'"):
        load_results(_write(tmp_path, raw))


def test_non_numeric_cost_is_named(raw, tmp_path):
    raw["runs"][0]["wall_time_per_query_s"] = "fast"
    with pytest.raises(SkinternError, match=r"runs\[0\]\.wall_time_per_query_s: expected float, got 'fast'"):
        load_results(_write(tmp_path, raw))


@pytest.mark.parametrize("accuracy", [7.5, float("nan"), -0.1])
def test_accuracy_outside_0_1_is_named(raw, tmp_path, accuracy):
    raw["runs"][0]["eval"]["bbh"]["accuracy"] = accuracy
    with pytest.raises(SkinternError, match=r"runs\[0\]\.eval\.bbh\.accuracy: expected an accuracy in \[0, 1\]"):
        load_results(_write(tmp_path, raw))


def test_render_validates_dicts_too(tmp_path):
    with pytest.raises(SkinternError, match="method"):
        render_report({"runs": [{"eval": {}}]}, tmp_path)
    assert not any(tmp_path.iterdir())


def test_merge_labels_repeated_methods_with_their_run_name(results, tmp_path):
    ablation = Results(name="no-knowledge", student=results.student, schedule=results.schedule,
                       runs=[copy.deepcopy(next(r for r in results.runs if r.method == "skintern"))])
    ablation.runs[0].eval["bbh"].accuracy = 0.125
    merged = merge_results([results, ablation])
    rows = _rows_by_method(merged)
    assert set(rows) == {"prompt", "std-cot", "kard", "skintern [quickstart]", "skintern [no-knowledge]"}
    assert rows["skintern [no-knowledge]"]["bbh"] == 0.125
    assert rows["skintern [quickstart]"]["bbh"] == _rows_by_method(results)["skintern"]["bbh"]
    assert merged.schedule is None and merged.student == results.student
    assert merge_results([results]) is results
    only = merge_results([results, ablation], methods=["skintern", "prompt"])
    assert [r.label or r.method for r in only.runs] == ["prompt", "skintern [quickstart]", "skintern [no-knowledge]"]
    with pytest.raises(SkinternError, match="no run of method or label cascod"):
        merge_results([results], methods=["cascod"])
    with pytest.raises(SkinternError, match=r"--methods: no run of method or label cascod .*\(they have kard, prompt, "):
        merge_results([results], methods=["prompt", "cascod"])  # one that matches nothing is not dropped silently
    ablation.runs[0].label = "no-knowledge"  # an ablation's variant: kept by its label
    by_label = merge_results([results, ablation], methods=["std-cot", "no-knowledge"])
    assert [r.label or r.method for r in by_label.runs] == ["std-cot", "no-knowledge"]


def test_schedule_stays_only_with_the_staged_run_it_describes(results, tmp_path):
    staged = copy.deepcopy(results)
    skintern = next(r for r in staged.runs if r.method == "skintern")
    skintern.train = {"steps": 4, "stages": [{"steps": 1, "losses": [0.5]}] * 4}
    assert merge_results([staged], methods=["std-cot", "skintern"]).schedule == results.schedule
    std_cot_only = merge_results([staged], methods=["std-cot", "prompt"])
    assert std_cot_only.schedule is None
    assert "schedule.png" in render_report(staged, tmp_path)
    render_report(std_cot_only, tmp_path)  # over the full report: its schedule plot does not stay behind
    assert "## Schedule" not in (tmp_path / "report.md").read_text() and not (tmp_path / "schedule.png").exists()


def test_report_command_merges_files(raw, tmp_path, capsys):
    from skintern.cli import main

    other = copy.deepcopy(raw)
    other["name"] = "seed-43"
    other_path = tmp_path / "other.json"
    other_path.write_text(json.dumps(other))
    assert main(["report", str(FIXTURE), str(other_path), "--out", str(tmp_path / "out"), "--title", "Both"]) == 0
    report = (tmp_path / "out" / "report.md").read_text()
    assert report.startswith("# Both") and "| std-cot [seed-43] |" in report and "| std-cot [quickstart] |" in report
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"runs": [{"method": "x", "eval": {}, "label": 3}]}))
    assert main(["report", str(bad), "--out", str(tmp_path / "bad")]) == 2
    assert "runs[0].label: expected str, got 3" in capsys.readouterr().err


def _seed_results(seed: int, bbh: float, bbsub: float, arc: float) -> Results:
    evals = {"bbh": (bbh, {"a": bbh}), "bbsub": (bbsub, {"b": bbsub}), "arc-easy": (arc, {"ARC-Easy": arc})}
    run = {"method": "skintern", "prompt_tokens_per_query": 90.0 + seed,
           "flops_per_query": {"prefill": 1e9, "generation": 2e9 * seed},
           "eval": {d: {"accuracy": acc, "n": 10, "per_task": tasks} for d, (acc, tasks) in evals.items()}}
    return Results.from_dict({"name": f"seed-{seed}", "seed": seed, "student": "smollm2-135m", "runs": [run]})


def test_seeds_combine_into_mean_and_spread_of_datasets_and_group_averages(tmp_path):
    from skintern.sweep import combine_seeds

    combined = combine_seeds([_seed_results(1, 0.2, 0.4, 0.6), _seed_results(2, 0.4, 0.2, 0.2)])
    run = combined.runs[0]
    assert combined.seeds == [1, 2]
    assert run.eval["bbh"].accuracy == pytest.approx(0.3)
    assert run.eval["bbh"].per_seed == [0.2, 0.4]
    assert run.accuracy_std["bbh"] == pytest.approx(0.2 / 2 ** 0.5)  # sample std (ddof 1) of 0.2 and 0.4
    assert run.prompt_tokens_per_query == pytest.approx(91.5)
    assert run.flops_per_query.generation == pytest.approx(3e9)
    row = summary_table(combined)[0]
    # OOD per seed: (0.4 + 0.6) / 2 = 0.5 and (0.2 + 0.2) / 2 = 0.2 -> mean 0.35, sample std 0.3 / sqrt(2).
    assert row["ood_avg"] == pytest.approx(0.35) and row["ood_std"] == pytest.approx(0.3 / 2 ** 0.5)
    assert row["id_std"] == pytest.approx(0.2 / 2 ** 0.5)
    md = render_report(combined, tmp_path)["md"].read_text(encoding="utf-8")
    assert "| skintern | 30.0 ± 14.1 | 30.0 ± 14.1 | 40.0 ± 28.3 | 30.0 ± 14.1 | 35.0 ± 21.2 |" in md
    assert "mean ± sample std over seeds" in md


def test_bad_per_seed_is_named(raw, tmp_path):
    raw["runs"][0]["eval"]["bbh"]["per_seed"] = [0.2, "x"]
    with pytest.raises(SkinternError, match=r"runs\[0\]\.eval\.bbh\.per_seed\[1\]: expected float, got 'x'"):
        load_results(_write(tmp_path, raw))


def test_prediction_dirs_not_keyed_on_a_seed_are_named(raw, tmp_path):
    raw["runs"][0]["prediction_dirs"] = {"42": "../base", "base": "../base"}
    with pytest.raises(SkinternError, match=r"runs\[0\]\.prediction_dirs\.base: expected a seed \(an integer\) as the key"):
        load_results(_write(tmp_path, raw))


def test_of_two_close_points_the_higher_one_gets_the_label_above():
    # the compare-cpu ID panel (about 8.5 points per accuracy point): std-cot (32.5, 27.8) sorts left of
    # skintern (33.3, 28.9), but skintern's label must stay above its own point and std-cot's go below,
    # not the two swapped between them
    std_cot, skintern, far_right = (32.5, 27.8, 20.0), (33.3, 28.9, 20.0), (100.0, 28.0, 20.0)
    assert _label_offsets([std_cot, skintern, far_right], points_per_y=8.5) == [-11, 4, 4]
    assert _label_offsets([skintern, std_cot], points_per_y=8.5) == [4, -11]
    assert _label_offsets([std_cot, skintern], points_per_y=20.0) == [4, 4]  # 22 points apart: no clash
    squeezed = (33.0, 28.3, 20.0)  # between both: the labels keep the points' top-to-bottom order
    assert _label_offsets([std_cot, skintern, squeezed], points_per_y=8.5) == [-26, 4, -11]


def _saved_run(folder: Path, name: str, seeds: list[int], correct: dict[str, dict[int, list[bool]]]) -> Path:
    """A results.json of `name` with each method's per-item predictions on bbh saved as its run would: in the
    folder for one seed, in seed-<s>/ for several."""
    runs = []
    for method, by_seed in correct.items():
        pooled = [c for seed in seeds for c in by_seed[seed]]
        runs.append({"method": method, "eval": {"bbh": {"accuracy": sum(pooled) / len(pooled), "n": len(by_seed[seeds[0]])}}})
        for seed in seeds:
            run_dir = folder / f"seed-{seed}" if len(seeds) > 1 else folder
            (run_dir / "predictions").mkdir(parents=True, exist_ok=True)
            (run_dir / "predictions" / f"{method}-bbh.jsonl").write_text("".join(
                json.dumps({"id": f"bbh/t/{i}", "dataset": "bbh", "correct": c}) + "\n" for i, c in enumerate(by_seed[seed])))
    results = {"name": name, "seed": seeds[0], "runs": runs, "domains": {"bbh": "in"}}
    if len(seeds) > 1:
        results["seeds"] = seeds
    (folder / "results.json").write_text(json.dumps(results))
    return folder / "results.json"


def test_report_against_pairs_runs_of_several_results_on_item_and_seed(tmp_path, capsys):
    from skintern.cli import main

    std_cot = {1: [True] * 6 + [False] * 4, 2: [True] * 5 + [False] * 5}
    compare = _saved_run(tmp_path / "compare", "compare", [1, 2], {"std-cot": std_cot, "skintern": std_cot})
    # one seed (1): right on 2 items std-cot missed, wrong on none it had right
    variant = _saved_run(tmp_path / "variant", "variant", [1], {"skintern": {1: [True] * 8 + [False] * 2}})
    out = tmp_path / "out"
    assert main(["report", str(compare), str(variant), "--against", "std-cot", "--out", str(out)]) == 0
    found = json.loads((out / "comparisons.json").read_text())["std-cot"]["methods"]
    assert found["skintern [compare]"]["groups"]["ID"]["method_minus_reference"] == 0.0
    assert found["skintern [compare]"]["groups"]["ID"]["n_pairs"] == 20
    ours = found["skintern [variant]"]["datasets"]["bbh"]
    assert (ours["n_pairs"], ours["method_only"], ours["reference_only"]) == (10, 2, 0)
    assert ours["method_minus_reference"] == pytest.approx(0.2)
    assert "| skintern [variant] | bbh | +20.0 |" in (out / "report.md").read_text()

    assert main(["report", str(compare), str(variant), "--against", "kard", "--out", str(tmp_path / "x")]) == 2
    assert "--against: no run labelled 'kard', expected one of std-cot, skintern [compare], skintern [variant]" \
        in capsys.readouterr().err
    (tmp_path / "variant" / "predictions" / "skintern-bbh.jsonl").write_text(
        json.dumps({"id": "bbh/t/0", "dataset": "bbh", "correct": False}) + "\n")
    assert main(["report", str(compare), str(variant), "--against", "std-cot", "--out", str(tmp_path / "y")]) == 2
    assert "the saved predictions of skintern on bbh score 0.0000, the results say 0.8000" in capsys.readouterr().err
    (tmp_path / "variant" / "predictions" / "skintern-bbh.jsonl").unlink()
    assert main(["report", str(compare), str(variant), "--against", "std-cot", "--out", str(tmp_path / "z")]) == 2
    assert "no predictions of skintern on bbh at" in capsys.readouterr().err
    other_seed = _saved_run(tmp_path / "other-seed", "other-seed", [3], {"skintern": {3: [True] * 10}})
    assert main(["report", str(compare), str(other_seed), "--against", "std-cot", "--out", str(tmp_path / "w")]) == 2
    assert "--against std-cot: skintern [other-seed] ran on seed 3 and std-cot on 1, 2, expected a seed in common " \
        "to pair on" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in ("w", "x", "y", "z"))


def test_results_of_the_same_name_are_told_apart_by_their_folders(tmp_path, capsys):
    from skintern.cli import main

    # two multi-seed compares each write seed-1/results.json named "seed-1"
    four = _saved_run(tmp_path / "four-epochs" / "seed-1", "seed-1", [1], {"skintern": {1: [True] * 4 + [False] * 6}})
    twelve = _saved_run(tmp_path / "twelve-epochs" / "seed-1", "seed-1", [1], {"skintern": {1: [True] * 7 + [False] * 3}})
    out = tmp_path / "out"
    assert main(["report", str(four), str(twelve), "--against", "skintern [four-epochs/seed-1]", "--out", str(out)]) == 0
    found = json.loads((out / "comparisons.json").read_text())["against"]["methods"]
    assert list(found) == ["skintern [twelve-epochs/seed-1]"]
    assert found["skintern [twelve-epochs/seed-1]"]["datasets"]["bbh"]["method_minus_reference"] == pytest.approx(0.3)
    assert "| skintern [four-epochs/seed-1] | 40.0 |" in (out / "report.md").read_text()
    # the same file twice cannot be told apart
    assert main(["report", str(four), str(four), "--against", "skintern", "--out", str(tmp_path / "x")]) == 2
    assert "no run labelled 'skintern'" in capsys.readouterr().err


def test_runs_on_different_seeds_show_their_seeds_and_one_seed_figures_are_not_read_as_means(tmp_path):
    from skintern.sweep import combine_seeds

    pooled = combine_seeds([_seed_results(1, 0.2, 0.4, 0.6), _seed_results(2, 0.4, 0.2, 0.2)])
    one_seed = dataclasses.replace(_seed_results(1, 0.5, 0.5, 0.5).runs[0], label="variant", seeds=[1])
    mixed = dataclasses.replace(pooled, runs=[*pooled.runs, one_seed])
    md = render_report(mixed, tmp_path / "mixed")["md"].read_text(encoding="utf-8")
    assert "| Method | Seeds | bbh |" in md
    assert "| skintern | 1, 2 | 30.0 ± 14.1 |" in md and "| variant | 1 | 50.0 |" in md
    assert "A figure without ± is one seed's." in md
    same = render_report(pooled, tmp_path / "same")["md"].read_text(encoding="utf-8")
    assert "Seeds" not in same and "one seed's" not in same
    # a merged report of two single-seed results: each run keeps the seed of the results it came from
    merged = merge_results([_seed_results(1, 0.2, 0.4, 0.6), _seed_results(2, 0.4, 0.2, 0.2)])
    assert [run.seeds for run in merged.runs] == [[1], [2]]
    md = render_report(merged, tmp_path / "merged")["md"].read_text(encoding="utf-8")
    assert "| skintern [seed-1] | 1 | 20.0 |" in md and "| skintern [seed-2] | 2 | 40.0 |" in md
