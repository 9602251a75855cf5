"""Hostile input: each row is one bad input given to the CLI. Every one must end in exit code 2 with a single
line on stderr naming the file / line / key / field, no traceback, and nothing half-written (no run folder,
no `.partial`). Config values are covered row by row in tests/test_seam.py; this matrix adds files and folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from skintern.cli import main

BAD_UTF8 = b'{"examples": [{"input": "caf\xe9", "target": "Yes"}]}'


def data_copy(shared_data: Path, tmp_path: Path) -> Path:
    """A data dir of one BBH task, its prompt file and teacher files, cheap to corrupt."""
    root = tmp_path / "data"
    (root / "bbh" / "cot-prompts").mkdir(parents=True)
    (root / "bbh" / "teacher").mkdir()
    task = "sports_understanding"
    split = json.loads((shared_data / "bbh" / "split.json").read_text())
    (root / "bbh" / "split.json").write_text(json.dumps({task: split[task]}))
    shutil.copy(shared_data / "bbh" / f"{task}.json", root / "bbh")
    shutil.copy(shared_data / "bbh" / "cot-prompts" / f"{task}.txt", root / "bbh" / "cot-prompts")
    for name in ("code-davinci-002-cot.jsonl", "knowledge.jsonl"):
        rows = [line for line in (shared_data / "bbh" / "teacher" / name).read_text().splitlines() if f'"{task}"' in line]
        (root / "bbh" / "teacher" / name).write_text("\n".join(rows) + "\n")
    return root


def config(tmp_path: Path, data_dir: Path, student: Path, **sections) -> Path:
    cfg = {"name": "bad", "output_dir": str(tmp_path / "runs"), "data": {"data_dir": str(data_dir), "train_per_task": 4},
           "student": {"model": str(student)}, "train": {"max_steps": 1}, "eval": {"per_task": 1, "max_new_tokens": 4}}
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def corrupt_task_json(root: Path, tmp_path: Path) -> tuple[Path, str]:
    path = root / "bbh" / "sports_understanding.json"
    path.write_bytes(BAD_UTF8)
    return path, f"{path}: not UTF-8 text (byte {BAD_UTF8.index(0xE9)})"


def corrupt_knowledge(root: Path, tmp_path: Path) -> tuple[Path, str]:
    path = root / "bbh" / "teacher" / "knowledge.jsonl"
    path.write_bytes(path.read_bytes()[:100] + b"\xff\xfe" + path.read_bytes()[100:])
    return path, f"{path}: not UTF-8 text (byte 100)"


def corrupt_cot_prompt(root: Path, tmp_path: Path) -> tuple[Path, str]:
    path = root / "bbh" / "cot-prompts" / "sports_understanding.txt"
    path.write_bytes(b"\x80" + path.read_bytes())
    return path, f"{path}: not UTF-8 text (byte 0)"


def corrupt_teacher(root: Path, tmp_path: Path) -> tuple[Path, str]:
    path = root / "bbh" / "teacher" / "code-davinci-002-cot.jsonl"
    line = b'{"task": "sports_understanding", "index": 0, "rationale": "\xc3", "target": "no"}\n'
    path.write_bytes(line)
    return path, f"{path}: not UTF-8 text (byte {line.index(0xC3)})"


@pytest.mark.parametrize("corrupt", [corrupt_task_json, corrupt_knowledge, corrupt_cot_prompt, corrupt_teacher],
                         ids=lambda f: f.__name__)
@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_a_file_that_is_not_utf8_is_one_line(shared_data, tiny_student_dir, tmp_path, capsys, corrupt, dry_run):
    root = data_copy(shared_data, tmp_path)
    path, expected = corrupt(root, tmp_path)
    cfg = config(tmp_path, root, tiny_student_dir)
    assert main(["run", str(cfg)] + (["--dry-run"] if dry_run else [])) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"skintern: error: {expected}"
    assert not (tmp_path / "runs" / "bad").exists()


def test_a_config_that_is_not_utf8_is_one_line(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    assert main(["run", str(path)]) == 2
    assert capsys.readouterr().err.strip() == f"skintern: error: {path}: not UTF-8 text (byte 9)"  # n,a,m,e,:, ,c,a,f


def test_a_results_file_that_is_not_utf8_is_one_line(tmp_path, capsys):
    path = tmp_path / "results.json"
    data = b'{"runs": [], "name": "\xff"}'
    path.write_bytes(data)
    assert main(["report", str(path), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == f"skintern: error: {path}: not UTF-8 text (byte {data.index(0xFF)})"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["under-a-file", "read-only-fs"])
def test_an_unusable_output_dir_is_one_line_before_any_work(shared_data, tiny_student_dir, tmp_path, capsys, monkeypatch, where):
    import skintern.run

    monkeypatch.setattr(skintern.run, "load_run_data", lambda *a: pytest.fail("data read before output_dir was checked"))
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = blocker / "runs" if where == "under-a-file" else Path("/proc/skintern-runs")  # /proc: read-only, even for root
    cfg = config(tmp_path, shared_data, tiny_student_dir, output_dir=str(out))
    for command in (["run", str(cfg)], ["run", str(cfg), "--dry-run"], ["train", str(cfg)], ["compare", str(cfg)]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("skintern: error: output_dir: ") and "\n" not in err
        assert ("is a file" in err) if where == "under-a-file" else ("cannot write in /proc" in err)


def test_a_torn_last_prediction_line_is_dropped_and_the_run_resumes(shared_data, tiny_student_dir, tmp_path, capsys):
    """A kill -9 mid-write leaves half a JSON line at the end of a .partial: the rerun drops it (and only it)."""
    cfg = config(tmp_path, shared_data, tiny_student_dir, data={"tasks": ["sports_understanding"]}, eval={"per_task": 3},
                 method="prompt")
    assert main(["run", str(cfg)]) == 0
    predictions = tmp_path / "runs" / "bad" / "predictions" / "prompt-bbh.jsonl"
    done = predictions.read_text().splitlines()
    (tmp_path / "runs" / "bad" / "entries" / "prompt.json").unlink()
    partial = predictions.with_name(predictions.name + ".partial")
    partial.write_text(done[0] + "\n" + done[1][: len(done[1]) // 2])  # the kill cut the second line
    predictions.unlink()
    capsys.readouterr()
    assert main(["run", str(cfg)]) == 0
    assert "dropped a line cut short by a kill" in capsys.readouterr().err
    assert [json.loads(x)["id"] for x in predictions.read_text().splitlines()] == [json.loads(x)["id"] for x in done]
    assert not partial.exists()


def test_a_malformed_line_before_the_last_is_still_an_error(shared_data, tiny_student_dir, tmp_path, capsys):
    cfg = config(tmp_path, shared_data, tiny_student_dir, data={"tasks": ["sports_understanding"]}, method="prompt")
    partial = tmp_path / "runs" / "bad" / "predictions" / "prompt-bbh.jsonl.partial"
    partial.parent.mkdir(parents=True)
    partial.write_text('{"id": "x", broken\n{"id": "y"}\n')
    assert main(["run", str(cfg)]) == 2
    assert f"{partial}:1: malformed JSON line" in capsys.readouterr().err


# ---------------------------------------------------------------- the matrix: one row per hostile input
# Each row: (id, what to break, expected text in the one error line). "config" rows add YAML to a valid
# config; "file" rows corrupt one line of a data or teacher file in a one-task copy of the shared data.


def _set(path: Path, text: str) -> None:
    path.write_text(text)


def _line(path: Path, index: int, row: dict | str) -> None:
    """Replace the first line of `path` that names item `index` with `row`."""
    lines = path.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if f'"index": {index},' in line)
    lines[at] = row if isinstance(row, str) else json.dumps(row)
    path.write_text("\n".join(lines) + "\n")


KNOW = ("bbh", "teacher", "knowledge.jsonl")
COT = ("bbh", "teacher", "code-davinci-002-cot.jsonl")
SPLIT = ("bbh", "split.json")
TASK = ("bbh", "sports_understanding.json")
OK_K = {"task": "sports_understanding", "summary": "1. a", "knowledge": "1. b"}
OK_R = {"task": "sports_understanding", "rationale": "It is. So the answer is yes.", "target": "yes"}


def _split(root: Path, change) -> None:
    path = root.joinpath(*SPLIT)
    split = json.loads(path.read_text())
    change(split["sports_understanding"])
    path.write_text(json.dumps(split))


def _task(root: Path, change) -> None:
    path = root.joinpath(*TASK)
    data = json.loads(path.read_text())
    change(data["examples"])
    path.write_text(json.dumps(data))


def _first_knowledge_index(root: Path) -> int:
    return json.loads(root.joinpath(*KNOW).read_text().splitlines()[0])["index"]


FILE_ROWS = [
    ("knowledge-missing-field", lambda r: _line(r.joinpath(*KNOW), _first_knowledge_index(r),
                                                {"task": "sports_understanding", "index": _first_knowledge_index(r), "summary": "x"}),
     "knowledge.jsonl:1: missing field 'knowledge'"),
    ("knowledge-malformed-line", lambda r: _line(r.joinpath(*KNOW), _first_knowledge_index(r), '{"task": "sports_understanding", "index": 0,'),
     "knowledge.jsonl:1: malformed JSON line"),
    ("knowledge-duplicate-key", lambda r: _set(r.joinpath(*KNOW), r.joinpath(*KNOW).read_text() + r.joinpath(*KNOW).read_text().splitlines()[0] + "\n"),
     "duplicate (task, index)"),
    ("knowledge-empty-text", lambda r: _line(r.joinpath(*KNOW), _first_knowledge_index(r), {**OK_K, "index": _first_knowledge_index(r), "summary": "  "}),
     "knowledge.jsonl:1: field 'summary' must be a non-empty string"),
    ("knowledge-index-abc", lambda r: _line(r.joinpath(*KNOW), _first_knowledge_index(r), {**OK_K, "index": "abc"}),
     "knowledge.jsonl:1: field 'index' must be a non-negative integer, got 'abc'"),
    ("knowledge-index-negative", lambda r: _line(r.joinpath(*KNOW), _first_knowledge_index(r), {**OK_K, "index": -1}),
     "knowledge.jsonl:1: field 'index' must be a non-negative integer, got -1"),
    ("knowledge-not-an-object", lambda r: _line(r.joinpath(*KNOW), _first_knowledge_index(r), "[1, 2]"),
     "knowledge.jsonl:1: expected a JSON object, got list"),
    ("rationale-null", lambda r: _line(r.joinpath(*COT), 0, {**OK_R, "index": 0, "rationale": None}),
     "code-davinci-002-cot.jsonl:1: field 'rationale' must be a non-empty string, got None"),
    ("rationale-index-abc", lambda r: _line(r.joinpath(*COT), 0, {**OK_R, "index": "abc"}),
     "code-davinci-002-cot.jsonl:1: field 'index' must be a non-negative integer, got 'abc'"),
    ("rationale-index-bool", lambda r: _line(r.joinpath(*COT), 0, {**OK_R, "index": True}),
     "code-davinci-002-cot.jsonl:1: field 'index' must be a non-negative integer, got True"),
    ("rationale-missing-target", lambda r: _line(r.joinpath(*COT), 0, {"task": "sports_understanding", "index": 0, "rationale": "x"}),
     "code-davinci-002-cot.jsonl:1: missing field 'target'"),
    ("rationale-malformed-line", lambda r: _line(r.joinpath(*COT), 0, '{"task": "sports_understanding", "index": 0, "rat'),
     "code-davinci-002-cot.jsonl:1: malformed JSON line"),
    ("rationale-empty-target", lambda r: _line(r.joinpath(*COT), 0, {**OK_R, "index": 0, "target": ""}),
     "code-davinci-002-cot.jsonl:1: field 'target' must be a non-empty string"),
    ("rationales-off-by-one", lambda r: _set(r.joinpath(*COT), "".join(
        json.dumps({**json.loads(line), "index": json.loads(line)["index"] + 1}) + "\n"
        for line in r.joinpath(*COT).read_text().splitlines())), "the 'index' values look offset"),
    ("split-index-out-of-range", lambda r: _split(r, lambda s: s["train"].append(10_000)), "index 10000 out of range"),
    ("split-index-abc", lambda r: _split(r, lambda s: s["train"].append("abc")), "index 'abc' out of range"),
    ("split-train-not-a-list", lambda r: _split(r, lambda s: s.update(train=3)), "field 'train' must be a list of indices"),
    ("split-not-an-object", lambda r: _set(r.joinpath(*SPLIT), "[]"), "split.json: expected an object"),
    ("split-malformed", lambda r: _set(r.joinpath(*SPLIT), '{"sports_understanding": '), "split.json:1: malformed JSON"),
    ("task-missing-target", lambda r: _task(r, lambda ex: ex[0].pop("target")), "example 0: field 'target' must be a non-empty string"),
    ("task-empty-input", lambda r: _task(r, lambda ex: ex[3].update(input=" ")), "example 3: field 'input' must be a non-empty string"),
    ("task-not-a-list", lambda r: _set(r.joinpath(*TASK), '{"examples": 5}'), "expected a JSON list or an object with an 'examples' list"),
    ("cot-prompt-without-separator", lambda r: _set(r / "bbh" / "cot-prompts" / "sports_understanding.txt", "no separator\n"),
     "expected a '-----' line followed by the task description"),
]


@pytest.mark.parametrize("corrupt, expected", [row[1:] for row in FILE_ROWS], ids=[row[0] for row in FILE_ROWS])
def test_bad_data_is_one_line_before_any_model(shared_data, tiny_student_dir, tmp_path, capsys, monkeypatch, corrupt, expected):
    import skintern.run

    monkeypatch.setattr(skintern.run, "load_student", lambda *a: pytest.fail("a model was loaded before the data was checked"))
    root = data_copy(shared_data, tmp_path)
    corrupt(root)
    cfg = config(tmp_path, root, tiny_student_dir, data={"train_per_task": None})
    for argv in (["run", str(cfg)], ["run", str(cfg), "--dry-run"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("skintern: error: ") and "\n" not in err and "Traceback" not in err
        assert expected in err
    assert not (tmp_path / "runs" / "bad").exists()


CONFIG_ROWS = [
    ("missing-knowledge-policy", "methods:\n  skintern:\n    missing_knowledge: generate\n", "methods.skintern.missing_knowledge"),
    ("finetune", "train:\n  finetune: qlora\n", "train.finetune"),
    ("precision", "train:\n  precision: fp8\n", "train.precision"),
    ("backend", "eval:\n  backend: tgi\n", "eval.backend"),
    ("batch-size-0", "train:\n  batch_size: 0\n", "train.batch_size"),
    ("batch-size-negative", "train:\n  batch_size: -4\n", "train.batch_size"),
    ("epochs-0", "train:\n  epochs: 0\n", "train.epochs"),
    ("grad-accum-0", "train:\n  grad_accum: 0\n", "train.grad_accum"),
    ("max-steps-0", "train:\n  max_steps: 0\n", "train.max_steps"),
    ("max-length-0", "train:\n  max_length: 0\n", "train.max_length"),
    ("learning-rate-negative", "train:\n  learning_rate: -1.0e-4\n", "train.learning_rate"),
    ("learning-rate-nan", "train:\n  learning_rate: .nan\n", "train.learning_rate"),
    ("lora-dropout-1", "train:\n  lora_dropout: 1.0\n", "train.lora_dropout"),
    ("lora-r-0", "train:\n  lora_r: 0\n", "train.lora_r"),
    ("warmup-ratio-1", "train:\n  warmup_ratio: 1.0\n", "train.warmup_ratio"),
    ("lr-scheduler", "train:\n  lr_scheduler: cosin\n", "train.lr_scheduler"),
    ("epochs-string", "train:\n  epochs: two\n", "train.epochs: expected float"),
    ("seeds-empty", "compare:\n  seeds: []\n", "compare.seeds"),
    ("compare-methods-empty", "compare:\n  methods: []\n", "compare.methods"),
    ("compare-method-unknown", "compare:\n  methods: [std-cot, magic]\n", "compare.methods"),
    ("datasets-empty", "eval:\n  datasets: []\n", "eval.datasets"),
    ("dataset-unknown", "eval:\n  datasets: [bbh, mmlu]\n", "eval.datasets"),
    ("per-task-0", "eval:\n  per_task: 0\n", "eval.per_task"),
    ("per-dataset-not-evaluated", "eval:\n  per_dataset: {arc-easy: 5}\n", "eval.per_dataset.arc-easy"),
    ("max-new-tokens-0", "eval:\n  max_new_tokens: 0\n", "eval.max_new_tokens"),
    ("alpha-1.5", "methods:\n  mt-cot:\n    alpha: 1.5\n", "methods.mt-cot.alpha"),
    ("answer-cap-0", "methods:\n  cascod:\n    answer_max_new_tokens: 0\n", "methods.cascod.answer_max_new_tokens"),
    ("top-k-0", "methods:\n  kard:\n    top_k: 0\n", "methods.kard.top_k"),
    ("method-setting-unknown", "methods:\n  kard:\n    topk: 2\n", "methods.kard.topk"),
    ("method-section-unknown", "methods:\n  magic: {}\n", "unknown entry 'magic'"),
    ("steps-1", "methods:\n  skintern:\n    schedule:\n      steps: 1\n", "methods.skintern.schedule.steps"),
    ("schedule-pattern", "methods:\n  skintern:\n    schedule:\n      pattern: cosine\n", "methods.skintern.schedule.pattern"),
    ("schedule-pattern-list", "methods:\n  skintern:\n    schedule:\n      pattern: [1, 0.5]\n", "methods.skintern.schedule.pattern"),
    ("knowledge-part", "methods:\n  skintern:\n    schedule:\n      knowledge_parts: [summary, facts]\n",
     "methods.skintern.schedule.knowledge_parts"),
    ("llmlingua2-without-model", "methods:\n  skintern:\n    compressor: llmlingua2\n", "methods.skintern.llmlingua2_model"),
    ("embedder", "retrieval:\n  embedder: bm26\n", "retrieval.embedder"),
    ("dtype", "student:\n  dtype: int4\n", "student.dtype"),
    ("train-per-task-0", "data:\n  train_per_task: 0\n", "data.train_per_task"),
    ("tasks-empty", "data:\n  tasks: []\n", "data.tasks"),
    ("duplicate-section", "train:\n  epochs: 1\ntrain:\n  epochs: 2\n", "duplicate key 'train'"),
    ("unknown-key", "train:\n  epochz: 1\n", "unknown key 'train.epochz'"),
    ("unknown-section", "trian:\n  epochs: 1\n", "unknown key 'trian'"),
    ("method-unknown", "method: magic\n", "method: expected one of"),
    ("name-with-slash", "name: a/b\n", "name: expected a folder name"),
    ("teacher-concurrency-0", "teacher:\n  concurrency: 0\n", "teacher.concurrency"),
    ("section-not-a-mapping", "train: 5\n", "train: expected a mapping"),
]


@pytest.mark.parametrize("text, key", [row[1:] for row in CONFIG_ROWS], ids=[row[0] for row in CONFIG_ROWS])
def test_a_bad_setting_is_one_line_before_any_work(tmp_path, capsys, monkeypatch, text, key):
    import skintern.run

    monkeypatch.setattr(skintern.run, "load_run_data", lambda *a: pytest.fail("data read before the config was checked"))
    path = tmp_path / "c.yaml"
    path.write_text(f"name: bad\noutput_dir: {tmp_path / 'runs'}\n" + text if not text.startswith("name:") else text)
    for argv in (["run", str(path)], ["run", str(path), "--dry-run"], ["compare", str(path)], ["train", str(path)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"skintern: error: {path}") and key in err and "\n" not in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("accuracy", [7.5, float("nan"), -0.25], ids=["750-percent", "nan", "negative"])
def test_report_refuses_impossible_accuracies(tmp_path, capsys, accuracy):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"name": "x", "runs": [{"method": "std-cot", "eval": {"bbh": {"accuracy": accuracy, "n": 4}}}]}))
    assert main(["report", str(path), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip().startswith(f"skintern: error: {path}: runs[0].eval.bbh.accuracy: expected an accuracy")
    assert not (tmp_path / "out").exists()
