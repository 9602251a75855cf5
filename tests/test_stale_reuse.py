"""Reuse never returns a stale result: every saved prediction, training output and entry is keyed on what
produced it; a mismatch evaluates again, or stops with one line naming the changed setting."""

from __future__ import annotations

import json
import shutil

import torch
from transformers import TrainerCallback

from skintern.cli import main
from test_cli import run_cli, write_config


def tiny_run(tmp_path, tiny_student_dir, shared_data, **sections):
    base = dict(data={"tasks": ["sports_understanding"], "train_per_task": 8}, eval={"per_task": 2, "max_new_tokens": 6},
                train={"max_steps": 2, "batch_size": 2, "save_steps": 1})
    return write_config(tmp_path, tiny_student_dir, shared_data, **{**base, **sections})


def eval_rows(run_dir):
    return [json.loads(x) for x in (run_dir / "eval" / "predictions" / "std-cot-bbh.jsonl").read_text().splitlines()]


def test_eval_with_other_weights_evaluates_again(tmp_path, tiny_student_dir, shared_data, capsys):
    config = tiny_run(tmp_path, tiny_student_dir, shared_data)
    assert main(["train", str(config)]) == 0
    run_dir = tmp_path / "runs" / "tiny"
    assert main(["eval", str(config)]) == 0
    first = eval_rows(run_dir)
    other = tmp_path / "other-weights"
    shutil.copytree(run_dir / "train" / "std-cot" / "final", other)
    weights = other / "model.safetensors"
    from safetensors.torch import load_file, save_file

    state = {k: torch.zeros_like(v) if "embed" in k else v for k, v in load_file(weights).items()}
    save_file(state, weights, metadata={"format": "pt"})
    capsys.readouterr()
    assert main(["eval", str(config), "--weights", str(other)]) == 0
    assert "saved under other settings (weights:" in capsys.readouterr().out
    assert [r["output"] for r in eval_rows(run_dir)] != [r["output"] for r in first]  # not the old predictions


def test_eval_on_more_items_adds_them(tmp_path, tiny_student_dir, shared_data, capsys):
    config = tiny_run(tmp_path, tiny_student_dir, shared_data)
    assert main(["train", str(config)]) == 0
    assert main(["eval", str(config), "--set", "eval.per_task=2"]) == 0
    assert "on 2 items" in capsys.readouterr().out
    first = eval_rows(tmp_path / "runs" / "tiny")
    assert main(["eval", str(config), "--set", "eval.per_task=4"]) == 0
    out = capsys.readouterr().out
    assert "on 4 items" in out and "saved under other settings" not in out
    rows = eval_rows(tmp_path / "runs" / "tiny")
    assert len(rows) == 4 and rows[:2] == first  # the two new items were added, the old ones kept
    assert main(["eval", str(config), "--set", "eval.batch_size=1"]) == 0
    assert "saved under other settings (settings.eval.batch_size: 4 -> 1)" in capsys.readouterr().out


def test_train_after_a_finished_run_refuses_changed_settings(tmp_path, tiny_student_dir, shared_data, capsys):
    config = tiny_run(tmp_path, tiny_student_dir, shared_data)
    assert main(["train", str(config)]) == 0
    code, err = run_cli(["train", str(config), "--set", "train.learning_rate=0.1"], capsys)
    assert code == 2 and "trained under other settings (train.learning_rate: 0.001 -> 0.1)" in err
    code, err = run_cli(["train", str(config), "--set", "train.max_steps=3"], capsys)
    assert code == 2 and "train.max_steps: 2 -> 3" in err
    assert main(["train", str(config), "--set", "train.logging_steps=1"]) == 0  # logging does not change the weights


class Kill(TrainerCallback):
    def on_step_end(self, args, state, control, **kw):
        if state.global_step == 2:  # after checkpoint-1 was saved
            raise KeyboardInterrupt


def test_resume_after_a_changed_lora_rank_is_one_line(tmp_path, tiny_student_dir, shared_data, capsys, monkeypatch):
    import skintern.train as train_module

    config = tiny_run(tmp_path, tiny_student_dir, shared_data, train={"finetune": "lora", "max_steps": 3, "save_steps": 1})
    original = train_module.WeightedLossTrainer
    monkeypatch.setattr(train_module, "WeightedLossTrainer", lambda *a, **kw: (t := original(*a, **kw), t.add_callback(Kill()))[0])
    assert main(["train", str(config)]) == 130
    assert (tmp_path / "runs" / "tiny" / "train" / "std-cot" / "checkpoint-1").is_dir()
    monkeypatch.setattr(train_module, "WeightedLossTrainer", original)
    code, err = run_cli(["train", str(config), "--set", "train.lora_r=4"], capsys)
    assert code == 2 and "train.lora_r: 16 -> 4" in err.splitlines()[-1] and "Traceback" not in err


def test_a_finished_entry_names_the_changed_setting(tmp_path, tiny_student_dir, shared_data, capsys):
    config = tiny_run(tmp_path, tiny_student_dir, shared_data)
    assert main(["run", str(config)]) == 0
    code, err = run_cli(["run", str(config), "--set", "methods.mt-cot.alpha=0.4"], capsys)
    assert code == 2 and "methods.mt-cot.alpha: 0.3 -> 0.4" in err
