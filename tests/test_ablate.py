"""`skintern ablate`: variants of one config side by side, each against the config as written; resumable."""

from __future__ import annotations

import json

import pytest

import skintern.ablate
from skintern.cli import main
from skintern.config import PAPER_ABLATIONS, load_config
from test_cli import write_config

SCHEDULE = {"steps": 2, "epochs": 1, "examples": 1}


def ablation_config(tmp_path, student, data_dir, variants):
    return write_config(
        tmp_path, student, data_dir,
        data={"tasks": ["sports_understanding"], "train_per_task": 20, "require_knowledge": True},
        train={"max_length": 2048}, eval={"per_task": 3}, retrieval={"embedder": "tfidf"},
        methods={"skintern": {"schedule": SCHEDULE}}, ablate={"variants": variants},
    )


def test_variants_run_side_by_side_and_a_stopped_ablation_resumes(tmp_path, tiny_student_dir, shared_data, monkeypatch, capsys):
    config = ablation_config(tmp_path, tiny_student_dir, shared_data,
                             {"no-examples": {"methods.skintern.schedule.examples": 0}})
    real_run = skintern.ablate.run

    def killed_in_second_variant(cfg, compare=False):
        if cfg.name == "no-examples":
            raise KeyboardInterrupt
        return real_run(cfg, compare)

    monkeypatch.setattr(skintern.ablate, "run", killed_in_second_variant)
    assert main(["ablate", str(config)]) == 130
    folder = tmp_path / "runs" / "tiny" / "ablate"
    base_entry = folder / "base" / "entries" / "skintern.json"
    finished = base_entry.stat().st_mtime_ns
    monkeypatch.setattr(skintern.ablate, "run", real_run)

    assert main(["ablate", str(config)]) == 0
    assert base_entry.stat().st_mtime_ns == finished  # the finished variant was reused, not redone
    results = json.loads((folder / "results.json").read_text())
    assert [r["label"] for r in results["runs"]] == ["base", "no-examples"]
    assert [r["method"] for r in results["runs"]] == ["skintern", "skintern"]
    stages = [r["extras"]["schedule"]["stages"] for r in results["runs"]]
    assert [s["num_examples"] for s in stages[0]] == [1, 0] and [s["num_examples"] for s in stages[1]] == [0, 0]
    comparison = results["comparisons"]["ablation_base"]
    assert comparison["reference"] == "base" and list(comparison["methods"]) == ["no-examples"]
    bbh = comparison["methods"]["no-examples"]["datasets"]["bbh"]
    accuracy = {r["label"]: r["eval"]["bbh"]["accuracy"] for r in results["runs"]}
    assert bbh["method_minus_reference"] == pytest.approx(accuracy["no-examples"] - accuracy["base"]) and bbh["n_items"] == 3
    report = (folder / "report.md").read_text()
    assert "Against base (the config as written)" in report and "| no-examples |" in report


def test_a_bad_override_names_the_variant_and_key_before_any_run(tmp_path, tiny_student_dir, shared_data, capsys):
    config = ablation_config(tmp_path, tiny_student_dir, shared_data, {"typo": {"methods.skintern.schedule.nope": 3}})
    assert main(["ablate", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "ablate variant 'typo'" in err and "methods.skintern.schedule.nope" in err
    assert not (tmp_path / "runs").exists()


def test_unknown_variant_names_and_reserved_names_are_refused(tmp_path, tiny_student_dir, shared_data, capsys):
    config = ablation_config(tmp_path, tiny_student_dir, shared_data, {"abrupt": {"methods.skintern.schedule.pattern": "abrupt"}})
    assert main(["ablate", str(config), "--variants", "abrupt,nope", "--dry-run"]) == 2
    assert "unknown variant(s) nope (known: base, abrupt)" in capsys.readouterr().err
    config = ablation_config(tmp_path, tiny_student_dir, shared_data, {"base": {"seed": 1}})
    assert main(["ablate", str(config), "--dry-run"]) == 2
    assert "ablate.variants" in capsys.readouterr().err


def test_dry_run_shows_each_variant_schedule_without_a_model(tmp_path, tiny_student_dir, shared_data, monkeypatch, capsys):
    monkeypatch.setattr(skintern.run, "load_student", lambda *a: pytest.fail("a model was loaded"))
    config = ablation_config(tmp_path, tiny_student_dir, shared_data, {"abrupt": {"methods.skintern.schedule.pattern": "abrupt"}})
    assert main(["ablate", str(config), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "== base: the config as written" in out and "== abrupt: methods.skintern.schedule.pattern=abrupt" in out
    assert "SKIntern schedule (abrupt" in out and not (tmp_path / "runs").exists()


def test_the_paper_grid_is_the_default_and_every_variant_loads(tmp_path, tiny_student_dir, shared_data):
    cfg = load_config(write_config(tmp_path, tiny_student_dir, shared_data))
    assert cfg.ablate.variants == PAPER_ABLATIONS
    variants = skintern.ablate.variant_configs(cfg)
    assert list(variants) == ["base", *PAPER_ABLATIONS]
    assert all(v.compare.methods == ["skintern"] for v in variants.values())


def test_named_variants_run_in_the_order_named(tmp_path, tiny_student_dir, shared_data):
    """`--variants no-summary,exponential` runs no-summary first, though the grid lists exponential before it."""
    cfg = load_config(write_config(tmp_path, tiny_student_dir, shared_data))
    variants = skintern.ablate.variant_configs(cfg, ["no-summary", "exponential", "base"])
    assert list(variants) == ["base", "no-summary", "exponential"]
    assert variants["no-summary"].settings("skintern").schedule.knowledge_parts == ["supplementary"]


def test_base_reuses_the_compare_entry_made_under_the_same_settings(tmp_path, tiny_student_dir, shared_data, capsys):
    config = ablation_config(tmp_path, tiny_student_dir, shared_data,
                             {"no-examples": {"methods.skintern.schedule.examples": 0}})
    assert main(["compare", str(config), "--set", "compare.methods=[skintern]"]) == 0
    run_dir = tmp_path / "runs" / "tiny"
    capsys.readouterr()
    assert main(["ablate", str(config)]) == 0
    assert f"ablate: base of seed 42 reuses {run_dir / 'entries' / 'skintern.json'}" in capsys.readouterr().out
    base = run_dir / "ablate" / "base"
    assert not (base / "train").exists()  # nothing trained for base
    assert (base / "predictions" / "skintern-bbh.jsonl").read_bytes() == \
        (run_dir / "predictions" / "skintern-bbh.jsonl").read_bytes()
    compared = json.loads((run_dir / "entries" / "skintern.json").read_text())
    reused = json.loads((base / "entries" / "skintern.json").read_text())
    assert reused["eval"] == compared["eval"] and reused["config_digest"] == compared["config_digest"]
    assert (run_dir / "ablate" / "no-examples" / "train").is_dir()  # the variant trained


def test_variants_run_one_per_command_are_reported_together(tmp_path, tiny_student_dir, shared_data, capsys):
    """An ablation run one variant per session reports every variant finished so far, in the grid's order, and never
    one that finished under settings the config no longer gives it."""
    grid = {"no-examples": {"methods.skintern.schedule.examples": 0},
            "abrupt": {"methods.skintern.schedule.pattern": "abrupt"}}
    config = ablation_config(tmp_path, tiny_student_dir, shared_data, grid)
    folder = tmp_path / "runs" / "tiny" / "ablate"
    assert main(["ablate", str(config), "--variants", "abrupt"]) == 0
    assert main(["ablate", str(config), "--variants", "no-examples"]) == 0
    assert "ablate: the results of seed 42 also hold abrupt, finished earlier" in capsys.readouterr().out
    results = json.loads((folder / "results.json").read_text())
    order = list(skintern.ablate.variant_configs(load_config(config)))  # the grid's order, not the commands'
    assert sorted(order) == ["abrupt", "base", "no-examples"] and [r["label"] for r in results["runs"]] == order
    assert list(results["comparisons"]["ablation_base"]["methods"]) == order[1:]
    assert "(3 variants, seed 42)" in (folder / "report.md").read_text()

    grid["abrupt"] = {"methods.skintern.schedule.pattern": [1.0, 0.0]}  # abrupt now means other settings
    config = ablation_config(tmp_path, tiny_student_dir, shared_data, grid)
    assert main(["ablate", str(config), "--variants", "no-examples"]) == 0
    results = json.loads((folder / "results.json").read_text())
    assert [r["label"] for r in results["runs"]] == ["base", "no-examples"]


def test_several_seeds_run_in_their_own_folders_and_pool_on_item_and_seed(tmp_path, tiny_student_dir, shared_data, capsys):
    """`ablate.seeds`: the config's seed runs in ablate/ and keeps what it finished there, another seed runs in
    ablate/seed-<s>/ with its base reused from the compare of that seed, and ablate/all-seeds/ pools the seeds."""
    config = ablation_config(tmp_path, tiny_student_dir, shared_data,
                             {"no-examples": {"methods.skintern.schedule.examples": 0}})
    seeds = ["--set", "compare.seeds=[42,43]"]
    assert main(["compare", str(config), "--set", "compare.methods=[skintern]", *seeds]) == 0
    assert main(["ablate", str(config), *seeds]) == 0  # one seed, as before: ablate/ holds seed 42's variants
    folder = tmp_path / "runs" / "tiny" / "ablate"
    seed_42 = json.loads((folder / "results.json").read_text())
    finished = (folder / "no-examples" / "entries" / "skintern.json").stat().st_mtime_ns
    capsys.readouterr()

    assert main(["ablate", str(config), *seeds, "--set", "ablate.seeds=[42,43]"]) == 0
    out = capsys.readouterr().out
    assert f"ablate: base of seed 43 reuses {tmp_path / 'runs' / 'tiny' / 'seed-43' / 'entries' / 'skintern.json'}" in out
    assert (folder / "no-examples" / "entries" / "skintern.json").stat().st_mtime_ns == finished  # seed 42's reused
    assert (folder / "seed-43" / "no-examples" / "train").is_dir() and not (folder / "seed-43" / "base" / "train").exists()
    seed_43 = json.loads((folder / "seed-43" / "results.json").read_text())
    assert seed_43["seed"] == 43 and seed_43.get("seeds") is None and [r["label"] for r in seed_43["runs"]] == ["base", "no-examples"]

    assert json.loads((folder / "results.json").read_text())["runs"] == seed_42["runs"]  # seed 42's own, unchanged
    pooled = json.loads((folder / "all-seeds" / "results.json").read_text())
    assert pooled["seeds"] == [42, 43] and [r["label"] for r in pooled["runs"]] == ["base", "no-examples"]
    for run in pooled["runs"]:
        per_seed = [next(r for r in one["runs"] if r["label"] == run["label"])["eval"]["bbh"]["accuracy"]
                    for one in (seed_42, seed_43)]
        assert run["seeds"] == [42, 43] and run["eval"]["bbh"]["per_seed"] == per_seed
        assert run["eval"]["bbh"]["accuracy"] == pytest.approx(sum(per_seed) / 2)
    bbh = pooled["comparisons"]["ablation_base"]["methods"]["no-examples"]["datasets"]["bbh"]
    assert bbh["n_items"] == 3 and bbh["n_pairs"] == 6  # each item's two seeds, paired on item and seed
    assert "seeds 42, 43" in (folder / "all-seeds" / "report.md").read_text()
    assert [run["prediction_dirs"] for run in pooled["runs"]] == [
        {"42": "../base", "43": "../seed-43/base"}, {"42": "../no-examples", "43": "../seed-43/no-examples"}]

    # `report --against` reads the predictions back from the variant folders the pooled entries name, and finds the
    # ablation's own paired differences
    for results, out in ((folder / "all-seeds", "again-pooled"), (folder, "again-42")):
        assert main(["report", str(results / "results.json"), "--against", "base", "--out", str(tmp_path / out)]) == 0
        again = json.loads((tmp_path / out / "comparisons.json").read_text())["against"]["methods"]
        expected = json.loads((results / "results.json").read_text())["comparisons"]["ablation_base"]["methods"]
        assert again == expected


@pytest.mark.parametrize("setting, expected", [
    ("ablate.seeds=[42,42]", "ablate.seeds: expected each seed once"),
    ("ablate.variants={all-seeds: {seed: 1}}", "other than 'base', 'all-seeds' and 'seed-...'"),
    ("ablate.variants={seed-7: {seed: 1}}", "other than 'base', 'all-seeds' and 'seed-...'"),
])
def test_seeds_and_variant_names_that_would_share_a_folder_are_refused(tmp_path, tiny_student_dir, shared_data, capsys,
                                                                       setting, expected):
    config = ablation_config(tmp_path, tiny_student_dir, shared_data, {"no-examples": {"methods.skintern.schedule.examples": 0}})
    assert main(["ablate", str(config), "--set", setting]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and expected in err
    assert not (tmp_path / "runs").exists()
