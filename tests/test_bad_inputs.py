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
