"""The `skintern run` main job on a tiny student, and bad input: exit code 2, one line, nothing written."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from skintern.cli import main


def write_config(tmp_path: Path, student: Path, data_dir: Path, **sections) -> Path:
    cfg = {
        "name": "tiny",
        "output_dir": str(tmp_path / "runs"),
        "data": {"data_dir": str(data_dir), "tasks": ["sports_understanding", "date_understanding"], "train_per_task": 6},
        "student": {"model": str(student)},
        "train": {"finetune": "full", "epochs": 1, "batch_size": 4, "learning_rate": 1e-3, "save_steps": 2},
        "eval": {"datasets": ["bbh"], "per_task": 3, "batch_size": 4, "max_new_tokens": 8},
    }
    for key, value in sections.items():
        cfg.setdefault(key, {}).update(value) if isinstance(value, dict) else cfg.update({key: value})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_cli(args, capsys) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err.strip()


def test_run_writes_results_and_report_then_resumes(tmp_path, tiny_student_dir, shared_data, capsys):
    config = write_config(tmp_path, tiny_student_dir, shared_data)
    assert main(["run", str(config)]) == 0
    run_dir = tmp_path / "runs" / "tiny"
    results = json.loads((run_dir / "results.json").read_text())
    assert [r["method"] for r in results["runs"]] == ["prompt", "std-cot"]
    for entry in results["runs"]:
        assert entry["student"] == str(tiny_student_dir)
        bbh = entry["eval"]["bbh"]
        assert bbh["n"] == 6 and 0.0 <= bbh["accuracy"] <= 1.0
        assert set(bbh["per_task"]) == {"sports_understanding", "date_understanding"}
        assert entry["prompt_tokens_per_query"] > 20
        assert entry["flops_per_query"]["prefill"] > 0
    # both evaluations saw exactly the same test items
    ids = [[json.loads(x)["id"] for x in (run_dir / "predictions" / f"{m}-bbh.jsonl").read_text().splitlines()]
           for m in ("prompt", "std-cot")]
    assert sorted(ids[0]) == sorted(ids[1]) and len(ids[0]) == 6
    assert "| std-cot |" in (run_dir / "report.md").read_text()
    capsys.readouterr()

    # a second run of the same command finds everything done: no training, same numbers
    assert main(["run", str(config)]) == 0
    out = capsys.readouterr().out
    assert "resuming" not in out
    assert json.loads((run_dir / "results.json").read_text())["runs"] == results["runs"]


def test_missing_data_dir(tmp_path, tiny_student_dir, capsys):
    config = write_config(tmp_path, tiny_student_dir, tmp_path / "nowhere")
    code, err = run_cli(["run", str(config)], capsys)
    assert code == 2 and "data dir not found" in err and "nowhere" in err and "\n" not in err
    assert not (tmp_path / "runs" / "tiny" / "results.json").exists()


@pytest.mark.parametrize("sections, error", [
    ({"data": {"tasks": ["no_such_task"]}}, "data.tasks: unknown BBH task 'no_such_task'; valid tasks include"),
    ({"eval": {"datasets": ["bbh", "agieval"], "tasks": {"agieval": ["lsat"]}}},
     "eval.tasks.agieval: unknown AGIEval task 'lsat'; valid tasks include"),
])
def test_an_unknown_task_names_the_field_it_came_from(tmp_path, tiny_student_dir, shared_data, capsys, sections, error):
    config = write_config(tmp_path, tiny_student_dir, shared_data, **sections)
    for argv in (["run", str(config)], ["run", str(config), "--dry-run"]):
        code, err = run_cli(argv, capsys)
        assert code == 2 and error in err and "\n" not in err


def test_empty_task_list_is_an_empty_split(tmp_path, tiny_student_dir, shared_data, capsys):
    config = write_config(tmp_path, tiny_student_dir, shared_data, data={"tasks": []})
    code, err = run_cli(["run", str(config)], capsys)
    assert code == 2 and "\n" not in err and err


@pytest.mark.parametrize("model, error", [("not-a-model", "student.model: unknown student 'not-a-model'"),
                                          ("missing.gguf", "student.model: student GGUF file not found: missing.gguf")])
def test_an_unknown_model_is_refused_by_the_run_and_its_dry_run(tmp_path, shared_data, capsys, model, error):
    config = write_config(tmp_path, Path(model), shared_data)
    for argv in (["run", str(config)], ["run", str(config), "--dry-run"]):
        code, err = run_cli(argv, capsys)
        assert code == 2 and error in err and "\n" not in err.strip()


def test_malformed_teacher_line_names_file_and_line(tmp_path, tiny_student_dir, shared_data, capsys):
    bad = tmp_path / "cot.jsonl"
    bad.write_text('{"task": "sports_understanding", "index": 0, "rationale": "x", "target": "no"}\n{not json\n')
    config = write_config(tmp_path, tiny_student_dir, shared_data, data={"teacher_cot": str(bad)})
    code, err = run_cli(["run", str(config)], capsys)
    assert code == 2 and f"{bad}:2: malformed JSON" in err
    assert not (tmp_path / "runs" / "tiny" / "results.json").exists()


@pytest.mark.parametrize(
    "section, value, expected",
    [
        ({"train": {"epochz": 1}}, None, "unknown key 'train.epochz'"),
        ({"train": {"epochs": "two"}}, None, "train.epochs: expected float"),
        ({"method": "magic"}, None, "method: expected one of prompt, prompt-fewshot, zero-shot"),
    ],
)
def test_bad_config_keys(tmp_path, tiny_student_dir, shared_data, capsys, section, value, expected):
    config = write_config(tmp_path, tiny_student_dir, shared_data, **section)
    code, err = run_cli(["run", str(config)], capsys)
    assert code == 2 and expected in err and str(config) in err


def test_malformed_yaml_names_the_line(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ntrain: [unclosed\n")
    code, err = run_cli(["run", str(path)], capsys)
    assert code == 2 and f"{path}:" in err and "malformed YAML" in err


def test_import_teacher_reports_kept_per_task(shared_data, capsys):
    assert main(["import-teacher", "--data-dir", str(shared_data), "--tasks", "sports_understanding,navigate"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("sports_understanding"))
    kept, wrong, missing, mismatched = map(int, line.split()[1:5])
    assert kept + wrong + missing == 150 and kept > 130 and missing == mismatched == 0


def test_compare_runs_every_method_on_the_same_items(tmp_path, tiny_student_dir, shared_data):
    methods = ["prompt", "prompt-fewshot", "std-cot", "mt-cot", "step-by-step", "kard", "cascod", "skintern"]
    config = write_config(
        tmp_path, tiny_student_dir, shared_data,
        data={"tasks": ["sports_understanding"], "train_per_task": 20, "require_knowledge": True},
        train={"max_length": 2048},
        eval={"datasets": ["bbh", "arc-easy"], "per_task": 2},
        compare={"methods": methods},
        retrieval={"embedder": "tfidf"},
        methods={"skintern": {"schedule": {"decay_stages": 1, "initial_examples": 1, "epochs_per_stage": 0.5}},
                 **{m: {"answer_max_new_tokens": 3} for m in ("mt-cot", "step-by-step", "cascod")}},
    )
    assert main(["compare", str(config)]) == 0
    run_dir = tmp_path / "runs" / "tiny"
    results = json.loads((run_dir / "results.json").read_text())
    assert [r["method"] for r in results["runs"]] == methods
    by = {r["method"]: r for r in results["runs"]}
    for entry in results["runs"]:
        assert set(entry["eval"]) == {"bbh", "arc-easy"} and entry["eval"]["bbh"]["n"] == 2
        assert entry["flops_per_query"]["prefill"] > 0
    # every method trained on the same items: the ones with knowledge
    assert by["std-cot"]["train"]["examples"] == by["kard"]["train"]["examples"] == by["mt-cot"]["train"]["examples"] // 2
    # inference cost: SKIntern = Std-CoT prompt; KARD pays for knowledge; CasCoD for two passes
    assert by["skintern"]["prompt_tokens_per_query"] == by["std-cot"]["prompt_tokens_per_query"]
    assert by["kard"]["prompt_tokens_per_query"] > 2 * by["std-cot"]["prompt_tokens_per_query"]
    assert by["cascod"]["prompt_tokens_per_query"] > 2 * by["std-cot"]["prompt_tokens_per_query"]
    assert by["mt-cot"]["generated_tokens_per_query"] <= 3
    cascod_rows = [json.loads(x) for x in (run_dir / "predictions" / "cascod-bbh.jsonl").read_text().splitlines()]
    assert all(r["passes"] == 2 for r in cascod_rows)
    report = (run_dir / "report.md").read_text()
    assert all(f"| {m} |" in report for m in methods) and "Schedule" in report
    # paired statistics from the saved predictions, against std-cot and (for SKIntern) the best baseline
    vs_std = results["comparisons"]["std-cot"]["methods"]
    assert set(vs_std) == set(methods) - {"std-cot"}
    sk = vs_std["skintern"]["datasets"]["bbh"]
    assert sk["n_items"] == 2 and sk["ci_low"] <= sk["method_minus_reference"] <= sk["ci_high"] and 0 <= sk["mcnemar_p"] <= 1
    assert sk["method_minus_reference"] == pytest.approx(by["skintern"]["eval"]["bbh"]["accuracy"] - by["std-cot"]["eval"]["bbh"]["accuracy"])
    assert list(results["comparisons"]["best_baseline"]["methods"]) == ["skintern"]
    assert "## Paired differences" in report and "Smallest difference these test sets resolve" in report
    # caps come from the data and their effect is reported
    assert all(0 <= entry["eval"]["bbh"]["hit_cap"] <= 1 and "no_answer" in entry["eval"]["bbh"] for entry in results["runs"])
    assert by["mt-cot"]["extras"] == {"answer_max_new_tokens": 3} and "## Generation caps" in report
    # what produced the results
    prov = results["provenance"]
    assert prov["embedder"] == "tfidf" and prov["compressor"] == "self-info" and prov["precision"] in ("fp32", "bf16")
    assert set(prov["versions"]) == {"skintern", "torch", "transformers", "peft"} and "## Provenance" in report
    # equal budgets: every trained method saw the same items the same number of times
    assert {tuple(by[m]["budget"][k] for k in ("items", "epochs")) for m in methods[2:]} == {(by["std-cot"]["budget"]["items"], 1.0)}
    assert by["skintern"]["budget"]["pairs"] == 2 * by["skintern"]["budget"]["items"] and "## Training budget" in report
    assert (run_dir / "accuracy_vs_flops.png").stat().st_size > 1000 and (run_dir / "report.html").is_file()


def test_results_name_the_commit_the_run_started_on(tmp_path, tiny_student_dir, shared_data, monkeypatch):
    """A commit made while a long run goes on is not credited with its results."""
    import subprocess

    import skintern.run

    head, real_subprocess_run, real_run_method = {"sha": "a" * 40}, subprocess.run, skintern.run.run_method
    changed = ["docs/results/evidence/results.json", "src/skintern/x.py"]

    def fake_git(args, **kwargs):
        if args[0] != "git":
            return real_subprocess_run(args, **kwargs)
        return subprocess.CompletedProcess(args, 0, stdout=head["sha"] if "rev-parse" in args else _git_status(args, changed),
                                           stderr="")

    def method_then_commit(*args, **kwargs):
        entry = real_run_method(*args, **kwargs)
        head["sha"] = "b" * 40  # someone commits while the run is still going
        return entry

    monkeypatch.setattr(skintern.run.subprocess, "run", fake_git)
    monkeypatch.setattr(skintern.run, "run_method", method_then_commit)
    skintern.run.code_commit.cache_clear()
    try:
        config = write_config(tmp_path, tiny_student_dir, shared_data, method="prompt", eval={"per_task": 1})
        assert main(["run", str(config)]) == 0
    finally:
        skintern.run.code_commit.cache_clear()
    results = json.loads((tmp_path / "runs" / "tiny" / "results.json").read_text())
    assert results["provenance"]["git_commit"] == "a" * 40 + "+dirty"
    # results written into the checkout (a long run's own files) do not make the code dirty
    changed[:] = ["docs/results/evidence/results.json"]
    try:
        assert skintern.run.code_commit() == "b" * 40
    finally:
        skintern.run.code_commit.cache_clear()


def _git_status(args: list[str], changed: list[str]) -> str:
    """`git status --porcelain` of the `changed` tracked files, limited to the pathspecs after "--" as git does."""
    specs = args[args.index("--") + 1:] if "--" in args else [""]
    return "\n".join(f" M {path}" for path in changed if any(path == s or path.startswith(s.rstrip("/") + "/") or not s
                                                             for s in specs))


def test_compare_refuses_unequal_budgets_before_any_work(tmp_path, tiny_student_dir, shared_data, capsys, monkeypatch):
    import skintern.run

    monkeypatch.setattr(skintern.run, "load_student", lambda *a: pytest.fail("a model was loaded"))
    base = dict(data={"tasks": ["sports_understanding"], "train_per_task": 20}, compare={"methods": ["std-cot", "skintern"]},
                methods={"skintern": {"schedule": {"decay_stages": 2, "epochs_per_stage": 0.5}}})
    config = write_config(tmp_path, tiny_student_dir, shared_data, **base)
    code, err = run_cli(["compare", str(config)], capsys)
    assert code == 2 and "unequal training budgets" in err and "data.require_knowledge: true" in err
    config = write_config(tmp_path, tiny_student_dir, shared_data, **{**base, "data": {"require_knowledge": True},
                                                                      "train": {"epochs": 2}})
    code, err = run_cli(["compare", str(config)], capsys)
    assert code == 2 and re.search(r"std-cot (\d+) items x 2 epochs; skintern \1 items x 1.5 epochs", err)
    code, err = run_cli(["compare", str(config), "--dry-run"], capsys)
    assert code == 2 and "unequal training budgets" in err
    assert not (tmp_path / "runs").exists()


def test_compare_over_seeds_trains_per_seed_and_reuses_untrained_evaluations(tmp_path, tiny_student_dir, shared_data):
    config = write_config(tmp_path, tiny_student_dir, shared_data, data={"tasks": ["sports_understanding"]},
                          eval={"per_task": 2}, train={"max_steps": 1},
                          compare={"methods": ["prompt", "std-cot"], "seeds": [1, 2]})
    assert main(["compare", str(config)]) == 0
    run_dir = tmp_path / "runs" / "tiny"
    entry = lambda seed, m: json.loads((run_dir / f"seed-{seed}" / "entries" / f"{m}.json").read_text())  # noqa: E731
    assert entry(2, "prompt")["reused_from_seed"] == 1 and "reused_from_seed" not in entry(1, "prompt")
    assert entry(2, "prompt")["eval"] == entry(1, "prompt")["eval"]
    predictions = [(run_dir / f"seed-{s}" / "predictions" / "prompt-bbh.jsonl").read_text() for s in (1, 2)]
    assert predictions[0] == predictions[1]  # copied, not evaluated again (the timings would differ)
    assert "reused_from_seed" not in entry(2, "std-cot") and entry(2, "std-cot")["train"]["steps"] == 1
    combined = json.loads((run_dir / "results.json").read_text())
    by = {r["method"]: r for r in combined["runs"]}
    assert combined["seeds"] == [1, 2] and by["prompt"]["accuracy_std"]["bbh"] == 0.0
    assert by["std-cot"]["eval"]["bbh"]["per_seed"] == [entry(s, "std-cot")["eval"]["bbh"]["accuracy"] for s in (1, 2)]
    # a rerun finds every entry, the reused ones included, and changes nothing
    before = (run_dir / "results.json").read_text()
    assert main(["compare", str(config)]) == 0
    assert json.loads((run_dir / "results.json").read_text())["runs"] == json.loads(before)["runs"]


def test_first_seed_only_methods_run_once_and_pair_with_the_first_seed(tmp_path, tiny_student_dir, shared_data):
    config = write_config(tmp_path, tiny_student_dir, shared_data, data={"tasks": ["sports_understanding"]},
                          eval={"per_task": 3}, train={"max_steps": 1},
                          compare={"methods": ["std-cot", "fine-tune"], "seeds": [1, 2], "first_seed_only": ["fine-tune"]})
    assert main(["compare", str(config)]) == 0
    run_dir = tmp_path / "runs" / "tiny"
    assert (run_dir / "seed-1" / "entries" / "fine-tune.json").is_file()
    assert not (run_dir / "seed-2" / "entries" / "fine-tune.json").exists()
    combined = json.loads((run_dir / "results.json").read_text())
    by = {r["method"]: r for r in combined["runs"]}
    assert by["std-cot"]["seeds"] == [1, 2] and by["fine-tune"]["seeds"] == [1]
    seed_1 = json.loads((run_dir / "seed-1" / "entries" / "fine-tune.json").read_text())["eval"]["bbh"]["accuracy"]
    assert by["fine-tune"]["eval"]["bbh"]["per_seed"] == [seed_1] and by["fine-tune"]["eval"]["bbh"]["accuracy"] == seed_1
    assert "accuracy_std" not in by["fine-tune"] and by["std-cot"]["accuracy_std"]["bbh"] >= 0
    paired = combined["comparisons"]["std-cot"]["methods"]["fine-tune"]["datasets"]["bbh"]
    assert (paired["n_items"], paired["n_pairs"]) == (3, 3)  # the first seed's 3 items, not 3 x 2 seeds
    assert "| fine-tune |" in (run_dir / "report.md").read_text()


def test_first_seed_only_must_name_compared_methods(tmp_path, tiny_student_dir, shared_data, capsys):
    config = write_config(tmp_path, tiny_student_dir, shared_data,
                          compare={"methods": ["std-cot"], "first_seed_only": ["kard"]})
    code, err = run_cli(["compare", str(config), "--dry-run"], capsys)
    assert code == 2 and "compare.first_seed_only" in err and "expected one of std-cot, got 'kard'" in err


def test_compare_refuses_any_seeds_foreign_entry_before_any_work(tmp_path, tiny_student_dir, shared_data, capsys):
    config = write_config(tmp_path, tiny_student_dir, shared_data, data={"tasks": ["sports_understanding"]},
                          eval={"per_task": 1}, train={"max_steps": 1}, compare={"methods": ["prompt"], "seeds": [1, 2]})
    assert main(["compare", str(config)]) == 0
    run_dir = tmp_path / "runs" / "tiny"
    shutil.rmtree(run_dir / "seed-1")
    # another method under another setting (as another machine's `precision: auto` could resolve): seed 2's finished
    # prompt entry was made under other settings, so nothing starts, not even seed 1's training
    code, err = run_cli(["compare", str(config), "--set", "compare.methods=[std-cot]", "--set", "train.learning_rate=0.1"],
                        capsys)
    assert code == 2 and "seed-2/entries/prompt.json: finished with a different config (train.learning_rate: " in err
    assert not (run_dir / "seed-1").exists()


def test_a_finished_run_refuses_a_changed_config(tmp_path, tiny_student_dir, shared_data, capsys):
    config = write_config(tmp_path, tiny_student_dir, shared_data, data={"tasks": ["sports_understanding"]},
                          eval={"per_task": 1}, train={"max_steps": 1})
    assert main(["run", str(config)]) == 0
    code, err = run_cli(["run", str(config), "--set", "train.learning_rate=0.1"], capsys)
    assert code == 2 and "different config" in err and "entries/prompt.json" in err
