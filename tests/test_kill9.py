"""A kill -9 anywhere resumes: the same command run again finishes, and its results equal an uninterrupted
run's. Mid teacher-cache write is covered by test_teacher_generate.py::test_killed_run_resumes_without_paying_twice
(SIGKILL with requests in flight)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, name: str, student: Path, data_dir: Path, **sections) -> Path:
    cfg = {"name": "k", "output_dir": str(tmp_path / name),
           "data": {"data_dir": str(data_dir), "tasks": ["sports_understanding"], "train_per_task": 12, "require_knowledge": True},
           "student": {"model": str(student)},
           "train": {"finetune": "full", "precision": "fp32", "max_steps": 6, "batch_size": 2, "save_steps": 1,
                     "learning_rate": 1e-3, "warmup_ratio": 0.0, "max_length": 2048},
           "eval": {"per_task": 4, "batch_size": 1, "max_new_tokens": 6, "before_training": False},
           "retrieval": {"embedder": "tfidf"}}
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def skintern(config: Path, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen([sys.executable, "-m", "skintern", "run", str(config)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_when(proc: subprocess.Popen, ready, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"finished before the kill point: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "kill point never reached"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def finish(config: Path, cwd: Path) -> str:
    proc = skintern(config, cwd)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return out + err


def outcome(run_dir: Path) -> dict:
    """What a run's results are: every entry's scores and every prediction's output."""
    results = json.loads((run_dir / "results.json").read_text())
    predictions = {p.name: [(r["id"], r["output"]) for r in map(json.loads, p.read_text().splitlines())]
                   for p in sorted((run_dir / "predictions").glob("*.jsonl"))}
    return {"eval": [(e["method"], e["eval"]) for e in results["runs"]], "predictions": predictions}


def reference(tmp_path: Path, student: Path, data_dir: Path, **sections) -> dict:
    config = write(tmp_path, "reference", student, data_dir, **sections)
    finish(config, tmp_path)
    return outcome(tmp_path / "reference" / "k")


def test_kill_mid_training_step(tmp_path, tiny_student_dir, shared_data):
    config = write(tmp_path, "killed", tiny_student_dir, shared_data, method="std-cot")
    train = tmp_path / "killed" / "k" / "train" / "std-cot"
    kill_when(skintern(config, tmp_path), lambda: (train / "checkpoint-3").is_dir())
    assert not (train / "done.json").exists()
    out = finish(config, tmp_path)
    assert "resuming from" in out
    assert outcome(tmp_path / "killed" / "k") == reference(tmp_path, tiny_student_dir, shared_data, method="std-cot")


def test_kill_mid_checkpoint_save(tmp_path, tiny_student_dir, shared_data):
    """Trainer writes a checkpoint in place, its state last: a kill during the save leaves one without it."""
    config = write(tmp_path, "killed", tiny_student_dir, shared_data, method="std-cot")
    train = tmp_path / "killed" / "k" / "train" / "std-cot"
    kill_when(skintern(config, tmp_path), lambda: (train / "checkpoint-4" / "trainer_state.json").is_file())
    newest = max(train.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    state = newest / "trainer_state.json"
    if state.is_file():  # else the kill itself came mid-save
        state.write_text(state.read_text()[:40])  # the save was cut off while writing the state
    out = finish(config, tmp_path)
    assert f"{newest} was cut short by a kill" in out
    assert outcome(tmp_path / "killed" / "k") == reference(tmp_path, tiny_student_dir, shared_data, method="std-cot")


def test_kill_mid_evaluation_batch(tmp_path, tiny_student_dir, shared_data):
    config = write(tmp_path, "killed", tiny_student_dir, shared_data, method="prompt", eval={"per_task": 8})
    partial = tmp_path / "killed" / "k" / "predictions" / "prompt-bbh.jsonl.partial"
    kill_when(skintern(config, tmp_path), lambda: partial.is_file() and partial.read_text().count("\n") >= 2)
    with partial.open("a") as f:  # and the kill came in the middle of writing a line
        f.write('{"id": "bbh/sports_understanding/9", "output": "half')
    out = finish(config, tmp_path)
    assert "dropped a line cut short by a kill" in out
    assert outcome(tmp_path / "killed" / "k") == reference(tmp_path, tiny_student_dir, shared_data, method="prompt",
                                                           eval={"per_task": 8})


def test_kill_mid_compression_cache_write(tmp_path, tiny_student_dir, shared_data):
    skintern_settings = {"skintern": {"schedule": {"decay_stages": 2, "initial_examples": 1}}}
    config = write(tmp_path, "killed", tiny_student_dir, shared_data, method="skintern", methods=skintern_settings)
    cache = tmp_path / "killed" / ".compression-cache.sqlite"

    def compressed_some() -> bool:
        if not cache.is_file():
            return False
        try:
            with sqlite3.connect(cache, timeout=5) as db:
                return db.execute("SELECT COUNT(*) FROM compressed").fetchone()[0] >= 1
        except sqlite3.OperationalError:  # the table is not there yet
            return False

    kill_when(skintern(config, tmp_path), compressed_some)
    assert not (tmp_path / "killed" / "k" / "train" / "skintern" / "stage-0" / "done.json").exists()
    finish(config, tmp_path)
    assert outcome(tmp_path / "killed" / "k") == reference(tmp_path, tiny_student_dir, shared_data, method="skintern",
                                                           methods=skintern_settings)
