"""Behaviour pins: every method, run end to end on the tiny in-code student over real BBH items, gives the
training losses and greedy predictions recorded in `fixtures/method_pins.json` (all but `teacher`, whose answers
are not the student's: tests/test_baselines.py).

The pins guard refactors of the method seam: a change that is meant to preserve behaviour must leave them
as they are. A change that is meant to alter training or inference regenerates them on purpose:
`SKINTERN_UPDATE_PINS=1 python -m pytest tests/test_method_pins.py`, and says why in its commit.
Full fine-tuning keeps the pins independent of how a LoRA adapter is initialised."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from skintern.files import read_json, read_jsonl

PINS = Path(__file__).parent / "fixtures" / "method_pins.json"
METHODS = ["prompt", "prompt-fewshot", "zero-shot", "fine-tune", "kaft", "std-cot", "mt-cot", "step-by-step", "kard", "cascod",
           "skintern"]


def pin_config(data_dir: Path, student: Path, out: Path) -> dict:
    return {
        "name": "pins",
        "output_dir": str(out),
        "data": {"data_dir": str(data_dir), "tasks": ["sports_understanding", "date_understanding"],
                 "train_per_task": 6, "require_knowledge": True},
        "student": {"model": str(student)},
        "train": {"finetune": "full", "precision": "fp32", "max_steps": 2, "batch_size": 2, "learning_rate": 1e-3,
                  "warmup_ratio": 0.0, "logging_steps": 1, "save_steps": 100, "max_length": 2048},
        "eval": {"datasets": ["bbh", "arc-easy"], "per_task": 2, "batch_size": 4, "max_new_tokens": 12},
        "knowledge": {"embedder": "tfidf"},
        "schedule": {"decay_stages": 2, "initial_examples": 2},
        "methods": {"answer_max_new_tokens": 6},
        "compare": {"methods": METHODS, "allow_unequal_budgets": True},
    }


def observed(run_dir: Path) -> dict:
    """What the pins record per method: training losses and, per test item, the prompt size and output."""
    out = {}
    for entry in read_json(run_dir / "results.json")["runs"]:
        name = entry["method"]
        rows = [r for ds in ("bbh", "arc-easy") for r in read_jsonl(run_dir / "predictions" / f"{name}-{ds}.jsonl")]
        out[name] = {
            "losses": (entry.get("train") or {}).get("losses", []),
            "predictions": [[r["id"], r["prompt_tokens"], r["generated_tokens"], r["output"], r["prediction"]] for r in rows],
        }
    return out


def test_every_method_matches_its_pins(shared_data, tiny_student_dir, tmp_path):
    from skintern.cli import main

    config = tmp_path / "pins.yaml"
    config.write_text(yaml.safe_dump(pin_config(shared_data, tiny_student_dir, tmp_path / "runs")))
    assert main(["compare", str(config)]) == 0
    got = observed(tmp_path / "runs" / "pins")
    assert list(got) == METHODS
    if os.environ.get("SKINTERN_UPDATE_PINS") == "1":
        PINS.write_text(json.dumps(got, indent=1, ensure_ascii=False) + "\n")
    pins = json.loads(PINS.read_text())
    for name in METHODS:
        assert got[name]["predictions"] == pins[name]["predictions"], name
        assert got[name]["losses"] == pytest.approx(pins[name]["losses"], rel=1e-4, abs=1e-5), name
