"""User sources (`data.train` / `eval.datasets` entries naming a user's own files) end to end on the tiny student,
and their bad input: exit code 2, one line naming the source, row and field, nothing written, no model loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from skintern.cli import main
from skintern.config import load_config
from skintern.methods.rundata import load_run_data

REPO = Path(__file__).resolve().parents[1]


def comparison_rows(n: int, start: int = 0) -> list[dict]:
    """Yes/no questions whose rationale states the answer, with both knowledge parts."""
    rows = []
    for i in range(start, start + n):
        a, b = i % 7, (i * 3) % 5
        answer = "Yes" if a > b else "No"
        rows.append({"uid": f"q{i}", "q": f"Is {a} greater than {b}?", "gold": answer, "group": ["small", "big"][i % 2],
                     "why": f"{a} is {'greater' if a > b else 'not greater'} than {b}. So the answer is {answer}.",
                     "hint": "1. Compare the two numbers.", "facts": "1. A number is greater when it is to the right."})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


FIELDS = {"question": "q", "answer": "gold", "rationale": "why", "summary": "hint", "knowledge": "facts", "id": "uid",
          "task": "group"}


def source(path: Path, name: str = "cmp", **extra) -> dict:
    return {"name": name, "path": str(path), "fields": FIELDS, "description": "Answer Yes or No.", **extra}


def write_config(tmp_path: Path, student: Path, train: list, datasets: list, **sections) -> Path:
    cfg = {
        "name": "mine",
        "output_dir": str(tmp_path / "runs"),
        "data": {"train": train},
        "student": {"model": str(student)},
        "train": {"finetune": "full", "epochs": 1, "batch_size": 4, "learning_rate": 1e-3, "save_steps": 2},
        "eval": {"datasets": datasets, "per_task": 3, "batch_size": 4, "max_new_tokens": 8},
    }
    for key, value in sections.items():
        cfg.setdefault(key, {}).update(value) if isinstance(value, dict) else cfg.update({key: value})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_data(config: Path):
    cfg = load_config(config)
    return load_run_data(cfg.data, cfg.eval)


# ---------------------------------------------------------------- end to end


def test_a_jsonl_task_runs_to_results_and_report(tmp_path, tiny_student_dir, capsys):
    """One JSONL file carved into train and test: rationales, knowledge, tasks and ids come from mapped fields."""
    path = write_jsonl(tmp_path / "task.jsonl", comparison_rows(20))
    config = write_config(tmp_path, tiny_student_dir, [source(path, test_fraction=0.3, seed=1)], ["cmp"],
                          eval={"per_task": None})
    rd = run_data(config)
    test_ids = {ex.id for ex in rd.tests["cmp"]}
    assert len(test_ids) == 6 and len(rd.train_pool) == 14 and not test_ids & {ex.id for ex in rd.train_pool}
    assert {ex.task for ex in rd.train} == {"cmp/small", "cmp/big"} and {ex.kind for ex in rd.train} == {"yes_no"}
    assert len(rd.knowledge) == 14 and all((ex.task, ex.index) in rd.knowledge for ex in rd.train)
    assert rd.description(rd.train[0]) == "Answer Yes or No." and rd.domains == {"cmp": "in"}

    assert main(["run", str(config)]) == 0
    run_dir = tmp_path / "runs" / "mine"
    results = json.loads((run_dir / "results.json").read_text())
    assert [r["method"] for r in results["runs"]] == ["prompt", "std-cot"]
    assert results["domains"] == {"cmp": "in"}
    for entry in results["runs"]:
        assert entry["eval"]["cmp"]["n"] == 6 and set(entry["eval"]["cmp"]["per_task"]) <= {"cmp/small", "cmp/big"}
    report = (run_dir / "report.md").read_text()
    assert "ID = in-domain (cmp)" in report and "Per-task accuracy (cmp)" in report
    predicted = [json.loads(x) for x in (run_dir / "predictions" / "std-cot-cmp.jsonl").read_text().splitlines()]
    assert {p["id"] for p in predicted} == test_ids

    # the same config over an edited file: the finished results are not passed off as the new file's
    write_jsonl(path, comparison_rows(20)[:19] + [dict(comparison_rows(20)[19], q="Is 9 greater than 1?")])
    capsys.readouterr()
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert "finished with a different config (source_files.cmp.path: " in err and "\n" not in err


def test_mixed_training_from_two_sources_with_in_and_out_tags(tmp_path, tiny_student_dir, capsys):
    """Two train sources with caps; the report's ID and OOD averages group the test sources by their tags."""
    one = write_jsonl(tmp_path / "one.jsonl", comparison_rows(12))
    two = write_jsonl(tmp_path / "two.jsonl", comparison_rows(12, start=40))
    near = write_jsonl(tmp_path / "near.jsonl", comparison_rows(4, start=100))
    far = write_jsonl(tmp_path / "far.jsonl", comparison_rows(4, start=200))
    config = write_config(tmp_path, tiny_student_dir, [source(one, "one", limit=5), source(two, "two", limit=3)],
                          [source(near, "near", domain="in"), source(far, "far", domain="out")])
    rd = run_data(config)
    assert [ex.dataset for ex in rd.train_pool] == ["one"] * 5 + ["two"] * 3
    assert rd.domains == {"near": "in", "far": "out"}

    assert main(["run", str(config)]) == 0
    run_dir = tmp_path / "runs" / "mine"
    results = json.loads((run_dir / "results.json").read_text())
    assert results["domains"] == {"near": "in", "far": "out"}
    report = (run_dir / "report.md").read_text()
    assert "ID = in-domain (near), OOD = out-of-domain (far)" in report
    header = next(line for line in report.splitlines() if line.startswith("| Method"))
    assert header.index("near") < header.index("far") and "ID avg" in header and "OOD avg" in header
    row = next(line for line in report.splitlines() if line.startswith("| std-cot |"))
    std = next(r for r in results["runs"] if r["method"] == "std-cot")
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == cells[3] == f"{100 * std['eval']['near']['accuracy']:.1f}"  # ID avg = the one ID dataset
    assert cells[2] == cells[4] == f"{100 * std['eval']['far']['accuracy']:.1f}"


def test_a_csv_task(tmp_path, tiny_student_dir, capsys):
    """CSV cells are strings: "12" answers make a number task, scored numerically."""
    rows = ["id,question,answer,rationale"]
    rows += [f"c{i},Which is larger: {i} or {i + 5}?,{i + 5},{i + 5} is larger. So the answer is {i + 5}." for i in range(8)]
    path = tmp_path / "task.csv"
    path.write_text("\n".join(rows) + "\n")
    train = [{"name": "csvtask", "path": str(path), "test_fraction": 0.25,
              "fields": {"id": "id", "rationale": "rationale", "options": "opts"}}]
    config = write_config(tmp_path, tiny_student_dir, train, ["csvtask"])
    assert main(["run", str(config), "--dry-run"]) == 2
    assert "row 1: field 'opts' (fields.options) is missing; the rows have id, question, answer, rationale" in capsys.readouterr().err
    train[0]["fields"]["options"] = None
    config = write_config(tmp_path, tiny_student_dir, train, ["csvtask"])
    rd = run_data(config)
    ex = rd.train[0]
    assert ex.kind == "number" and ex.answer == str(ex.index + 5) and len(rd.train) == 6 and len(rd.tests["csvtask"]) == 2
    assert main(["run", str(config)]) == 0
    assert json.loads((tmp_path / "runs" / "mine" / "results.json").read_text())["runs"][1]["eval"]["csvtask"]["n"] == 2


def test_options_as_a_list_and_answers_as_letters_or_texts(tmp_path, tiny_student_dir):
    rows = [{"question": f"Pick {w}.", "options": ["apple", "pear", "plum"], "answer": a,
             "rationale": f"We pick {w}. So the answer is ({'ABC'[k]})."}
            for w, a, k in [("apple", "A", 0), ("pear", "pear", 1), ("plum", "(C)", 2), ("pear", "b", 1)]]
    path = write_jsonl(tmp_path / "opts.jsonl", rows)
    test = write_jsonl(tmp_path / "opts-test.jsonl", [dict(rows[0], question="Pick none.")])
    config = write_config(tmp_path, tiny_student_dir, [{"name": "opts", "path": str(path),
                                                        "fields": {"options": "options", "rationale": "rationale"}}],
                          [{"name": "opts-test", "path": str(test), "fields": {"options": "options"}}])
    rd = run_data(config)
    assert [ex.answer for ex in rd.train] == ["(A)", "(B)", "(C)", "(B)"]
    assert rd.train[0].options == ("apple", "pear", "plum") and rd.train[0].question.endswith("(C) plum")
    assert rd.tests["opts-test"][0].kind == "choice" and rd.tests["opts-test"][0].answer == "(A)"
    lettered = write_jsonl(tmp_path / "lettered.jsonl", [{"question": "Pick pear.", "options": {"A": "apple", "B": "pear"},
                                                         "answer": "pear", "rationale": "So the answer is (B)."}])
    config = write_config(tmp_path, tiny_student_dir, [{"name": "lettered", "path": str(lettered),
                                                        "fields": {"options": "options", "rationale": "rationale"}}],
                          [{"name": "opts-test", "path": str(test), "fields": {"options": "options"}}])
    (ex,) = run_data(config).train
    assert ex.options == ("apple", "pear") and ex.answer == "(B)"


def test_a_save_to_disk_dataset(tmp_path, tiny_student_dir, capsys):
    datasets = pytest.importorskip("datasets")
    rows = comparison_rows(10)
    folder = tmp_path / "saved"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:8]), "test": datasets.Dataset.from_list(rows[8:])}
                         ).save_to_disk(str(folder))
    train = [source(folder, "saved", split="train")]
    test = [source(folder, "saved-test", split="test", domain="out")]
    config = write_config(tmp_path, tiny_student_dir, train, test)
    rd = run_data(config)
    assert len(rd.train) == 8 and [ex.question for ex in rd.tests["saved-test"]] == [r["q"] for r in rows[8:]]
    assert rd.domains == {"saved-test": "out"}
    assert main(["run", str(config)]) == 0
    results = json.loads((tmp_path / "runs" / "mine" / "results.json").read_text())
    assert results["runs"][1]["eval"]["saved-test"]["n"] == 2
    config = write_config(tmp_path, tiny_student_dir, [source(folder, "saved", split="dev")], test)
    assert main(["run", str(config), "--dry-run"]) == 2
    assert "no split 'dev' (has train, test)" in capsys.readouterr().err


def test_chat_rows(tmp_path, tiny_student_dir, capsys):
    """`messages` rows: the user turn is the question, the assistant turn the rationale, whose stated answer is gold."""
    rows = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": r["q"]},
                          {"role": "assistant", "content": r["why"]}]} for r in comparison_rows(10)]
    path = write_jsonl(tmp_path / "chat.jsonl", rows)
    config = write_config(tmp_path, tiny_student_dir, [{"name": "chat", "path": str(path), "test_fraction": 0.2}], ["chat"])
    rd = run_data(config)
    expected = {r["q"]: r for r in comparison_rows(10)}
    assert len(rd.train) == 8 and all(ex.answer == expected[ex.question]["gold"] for ex in rd.train)
    assert all(rd.rationales[ex.id] == expected[ex.question]["why"] for ex in rd.train)
    assert main(["run", str(config)]) == 0
    assert json.loads((tmp_path / "runs" / "mine" / "results.json").read_text())["runs"][1]["eval"]["chat"]["n"] == 2


def test_side_files_of_rationales_and_knowledge_and_wrong_rationales(tmp_path, tiny_student_dir):
    rows = comparison_rows(6)
    path = write_jsonl(tmp_path / "bare.jsonl", [{"uid": r["uid"], "q": r["q"], "gold": r["gold"]} for r in rows])
    wrong = {"uid": rows[0]["uid"], "why": "So the answer is " + ("No" if rows[0]["gold"] == "Yes" else "Yes") + "."}
    rationales = write_jsonl(tmp_path / "r.jsonl", [{"id": wrong["uid"], "rationale": wrong["why"]}]
                             + [{"id": r["uid"], "rationale": r["why"]} for r in rows[1:]])
    knowledge = write_jsonl(tmp_path / "k.jsonl", [{"id": r["uid"], "summary": r["hint"], "knowledge": r["facts"]}
                                                   for r in rows[:3]])
    train = [{"name": "bare", "path": str(path), "fields": {"question": "q", "answer": "gold", "id": "uid"},
              "rationales": str(rationales), "knowledge": str(knowledge)}]
    config = write_config(tmp_path, tiny_student_dir, train, [source(write_jsonl(tmp_path / "t.jsonl", comparison_rows(2, 50)), "t")])
    rd = run_data(config)
    assert [ex.index for ex in rd.train] == [1, 2, 3, 4, 5]  # row 0's only rationale states the wrong answer
    assert sorted(r.index for r in rd.knowledge) == [0, 1, 2]
    assert "bare" in rd.import_table and "1 state a wrong answer" in rd.import_table


def test_train_items_repeating_a_test_question_are_left_out(tmp_path, tiny_student_dir, capsys):
    rows = comparison_rows(10)
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    test = write_jsonl(tmp_path / "test.jsonl", rows[:3] + comparison_rows(2, start=50))
    config = write_config(tmp_path, tiny_student_dir, [source(train)], [source(test, "held-out")])
    rd = run_data(config)
    assert len(rd.train_pool) == 7 and {r["q"] for r in rows[:3]}.isdisjoint(ex.question for ex in rd.train_pool)
    assert "left out 3 train items whose question is also a test question" in capsys.readouterr().out


def test_two_sources_with_the_same_task_names_keep_their_own_knowledge(tmp_path, tiny_student_dir):
    one = write_jsonl(tmp_path / "one.jsonl", comparison_rows(4))
    two = write_jsonl(tmp_path / "two.jsonl", [dict(r, facts="1. Other facts.") for r in comparison_rows(4, 10)])
    test = write_jsonl(tmp_path / "test.jsonl", comparison_rows(2, 50))
    config = write_config(tmp_path, tiny_student_dir, [source(one, "one"), source(two, "two")], [source(test, "test")])
    rd = run_data(config)
    texts = {ex.dataset: rd.knowledge.get(ex.task, ex.index).knowledge for ex in rd.train_pool}
    assert texts == {"one": "1. A number is greater when it is to the right.", "two": "1. Other facts."}
    assert len(rd.knowledge) == 8 and rd.data_dir is None


def test_the_gsm8k_config_dry_run_shows_its_plan(shared_data, capsys, monkeypatch):
    monkeypatch.setenv("SKINTERN_DATA_DIR", str(shared_data))
    monkeypatch.chdir(REPO)
    assert main(["run", "configs/gsm8k-cpu.yaml", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "test items: gsm8k 100" in out
    assert [line.split()[:3] for line in out.splitlines() if line.startswith("std-cot")] == [["std-cot", "yes", "200"]]
    cfg = load_config(REPO / "configs" / "gsm8k-cpu.yaml")
    rd = load_run_data(cfg.data, cfg.eval)
    first = rd.train[0]
    assert first.kind == "number" and first.answer == "72" and rd.domains == {"gsm8k": "in"}
    assert rd.rationales[first.id].startswith("Natalia sold 48/2 = 24 clips in May.")
    assert not any("<<" in r or "####" in r for r in rd.rationales.values())


def test_the_custom_task_example_generates_and_plans(tmp_path, capsys, monkeypatch):
    """examples/custom-task: its generator's files load through its config (paths relative to the repository root)."""
    import subprocess
    import sys

    monkeypatch.chdir(tmp_path)
    example = REPO / "examples" / "custom-task"
    subprocess.run([sys.executable, str(example / "make_data.py"), "--out", "examples/custom-task/data"], check=True)
    assert main(["compare", str(example / "config.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "test items: shop 60, time 20" in out
    assert [line.split()[:2] for line in out.splitlines() if line.split()[:1] in (["std-cot"], ["skintern"])] == \
        [["std-cot", "yes"], ["skintern", "yes"]]
    rd = run_data(example / "config.yaml")
    assert rd.domains == {"shop": "in", "time": "out"} and {ex.task for ex in rd.train} == {"shop/total", "shop/change", "shop/split"}
    assert all((ex.task, ex.index) in rd.knowledge for ex in rd.train) and not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- bad input


def bad_rows(tmp_path: Path) -> dict[str, tuple[list[dict], dict, str]]:
    """Name -> (rows, fields, what the one-line error must say)."""
    rows = comparison_rows(5)
    missing = [dict(r) for r in rows]
    del missing[2]["q"]
    duplicate = [dict(r) for r in rows]
    duplicate[3]["uid"] = duplicate[1]["uid"]
    options = [dict(r, opts=["Yes", "No"]) for r in rows]
    options[4]["gold"] = "Maybe"
    return {
        "missing-field": (missing, FIELDS, "row 3: field 'q' is missing or empty"),
        "duplicate-id": (duplicate, FIELDS, "row 4: field 'uid': duplicate id 'q1' (first at row 2)"),
        "answer-not-an-option": (options, {**FIELDS, "options": "opts"},
                                 "row 5: field 'gold': answer 'Maybe' is not among the row's options (Yes, No)"),
        "half-knowledge": ([dict(r, facts=None) if i == 1 else r for i, r in enumerate(rows)], FIELDS,
                           "row 2: field 'facts' is missing or empty while 'hint' is given (knowledge has two parts)"),
    }


@pytest.mark.parametrize("case", ["missing-field", "duplicate-id", "answer-not-an-option", "half-knowledge"])
@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_a_bad_row_is_one_line_naming_source_row_and_field(tmp_path, tiny_student_dir, capsys, case, dry_run):
    rows, fields, expected = bad_rows(tmp_path)[case]
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    config = write_config(tmp_path, tiny_student_dir, [dict(source(path, "mine-src"), fields=fields)], ["mine-src"])
    cfg = yaml.safe_load(config.read_text())
    cfg["data"]["train"][0]["test_fraction"] = 0.2
    config.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(config)] + (["--dry-run"] if dry_run else [])) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"skintern: error: source 'mine-src' ({path}): {expected}"
    assert not (tmp_path / "runs").exists()


def bad_file(tmp_path: Path, case: str) -> tuple[dict, str]:
    """A train source whose file (or side file) is bad, and the error it must give."""
    good = write_jsonl(tmp_path / "good.jsonl", comparison_rows(4))
    if case == "empty":
        path = tmp_path / "empty.jsonl"
        path.write_text("")
        return source(path), f"source 'cmp' ({path}): the source has no rows"
    if case == "not-utf8":
        path = tmp_path / "latin1.jsonl"
        data = good.read_bytes().replace(b"Is 3", b"Is \xe9 3", 1)
        path.write_bytes(data)
        at = data.index(b"\xe9")
        line = data[:at].count(b"\n") + 1
        return source(path), f"source 'cmp' ({path}): not UTF-8 text (line {line}, byte {at})"
    if case == "rationale-ids":
        rationales = write_jsonl(tmp_path / "r.jsonl", [{"id": "nobody", "rationale": "So the answer is Yes."}])
        return source(good, rationales=str(rationales)), f"{rationales}: row 1: field 'id': 'nobody' matches no item of source 'cmp'"
    if case == "knowledge-ids":
        knowledge = write_jsonl(tmp_path / "k.jsonl", [{"id": "q0", "summary": "1.", "knowledge": "2."},
                                                       {"id": "q99", "summary": "1.", "knowledge": "2."}])
        return source(good, knowledge=str(knowledge)), f"{knowledge}: row 2: field 'id': 'q99' matches no item of source 'cmp'"
    if case == "no-rationale":
        return dict(source(good), fields={"question": "q", "answer": "gold"}), \
            "data.train: source 'cmp' has no train item with a rationale"
    if case == "hub-offline":
        return {"name": "cmp", "hub": "someone/some-task"}, "source 'cmp' (someone/some-task): the hub is offline"
    if case == "hub-unreachable":
        return {"name": "cmp", "hub": "someone/some-task"}, "source 'cmp' (someone/some-task): the hub is unreachable; save"
    if case == "unknown-suffix":
        path = tmp_path / "task.txt"
        path.write_text("x")
        return source(path), f"source 'cmp' ({path}): cannot tell the format from the suffix '.txt'"
    if case == "malformed-json":
        path = tmp_path / "broken.jsonl"
        path.write_text(good.read_text() + '{"q": "half\n')
        return source(path), f"source 'cmp' ({path}): cannot read as jsonl ("
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["empty", "not-utf8", "rationale-ids", "knowledge-ids", "no-rationale", "hub-offline",
                                  "hub-unreachable", "unknown-suffix", "malformed-json"])
def test_a_bad_source_file_is_one_line(tmp_path, tiny_student_dir, capsys, monkeypatch, case):
    import skintern.run

    if case == "hub-unreachable":  # online as far as the settings go, but nothing listens where the hub should be
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    else:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(skintern.run, "load_student", lambda *a: pytest.fail("a model was loaded before the data was checked"))
    train, expected = bad_file(tmp_path, case)
    config = write_config(tmp_path, tiny_student_dir, [train], [source(write_jsonl(tmp_path / "t.jsonl", comparison_rows(2, 50)), "t")])
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"skintern: error: {expected}") and "\n" not in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("entry, expected", [
    ({"train": [{"name": "bbh", "path": "x.jsonl"}]}, "data.train[0].name: 'bbh' is a built-in benchmark"),
    ({"train": ["mmlu"]}, "data.train: expected one of bbh, gsm8k, got 'mmlu'"),
    ({"train": [{"name": "a", "path": "x.jsonl"}, {"name": "a", "path": "y.jsonl"}]}, "data.train: source 'a' is listed twice"),
    ({"train": [{"name": "a"}]}, "data.train[0].path: source 'a': set exactly one of path"),
    ({"train": [{"name": "a", "path": "x.jsonl", "domain": "near"}]}, "data.train[0].domain: expected one of in, out"),
    ({"train": [{"name": "a", "path": "x.jsonl", "test_fraction": 1.0}]}, "data.train[0].test_fraction: expected a value"),
    ({"train": [{"name": "a", "path": "x.jsonl", "fields": {"summary": "s"}}]}, "data.train[0].fields.knowledge: knowledge has two parts"),
    ({"train": [{"name": "a", "path": "x.jsonl", "fields": {"options": "o"}, "answer_kind": "text"}]},
     "data.train[0].answer_kind: rows with options (fields.options) have choice answers, got 'text'"),
    ({"eval": ["a"]}, "eval.datasets: expected one of bbh, bbsub, agieval, arc-easy, arc-challenge, gsm8k, a user source"),
])
def test_a_bad_source_setting_is_one_line_naming_the_key(tmp_path, capsys, entry, expected):
    cfg = {"data": {"train": entry.get("train", ["bbh"])}, "eval": {"datasets": entry.get("eval", ["bbh"])}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"skintern: error: {path}: {expected}") and "\n" not in err
