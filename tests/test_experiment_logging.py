"""train.report_to: checked when the config loads, and a tiny run's losses reach TensorBoard under its train folder."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from skintern.config import config_from_dict
from skintern.errors import SkinternError
from skintern.prompts import cot_prompt, cot_target
from skintern.train import SFTExample, TrainConfig, finetune, run_name, training_key

HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None


def examples(n: int = 6) -> list[SFTExample]:
    return [SFTExample(f"bbh/t/{i}", cot_prompt("Answer the question.", "Is 2 even?"), cot_target("2 is even.", "yes"))
            for i in range(n)]


@pytest.mark.parametrize("value, message", [
    ("tensorbored", r"train\.report_to: expected one of none, tensorboard, wandb, mlflow, trackio, got 'tensorbored'"),
    (["wandb", "none"], r"train\.report_to: expected one of tensorboard, wandb, mlflow, trackio, got 'none'"),
    ([], r"train\.report_to: expected at least one entry"),
])
def test_an_unknown_tracker_is_one_line_naming_the_key(value, message):
    with pytest.raises(SkinternError, match=message):
        config_from_dict({"train": {"report_to": value}}, "c.yaml")


def test_a_tracker_not_installed_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(SkinternError, match=r"^c\.yaml: train\.report_to: wandb is not installed; pip install wandb$"):
        config_from_dict({"train": {"report_to": ["wandb"]}}, "c.yaml")


def test_run_name_has_the_run_the_method_and_the_stage():
    assert run_name(Path("runs/cmp/seed-43/train/skintern/stage-2"), "skintern") == "seed-43/skintern/stage-2"
    assert run_name(Path("runs/quickstart/train/std-cot"), "std-cot") == "quickstart/std-cot"


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="tensorboard is not installed (it is in the dev extra: pip install -e '.[dev]')")
def test_tensorboard_events_are_written_under_the_train_folder(tiny_model, tiny_tokenizer, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = TrainConfig(finetune="full", precision="fp32", batch_size=2, epochs=2.0, logging_steps=1, save_steps=1000,
                      report_to="tensorboard")
    out = tmp_path / "quick" / "train" / "std-cot"
    _, stats = finetune(tiny_model, tiny_tokenizer, examples(), cfg, out, desc="std-cot")
    assert list((out / "logs").glob("events.out.tfevents.*"))
    events = EventAccumulator(str(out / "logs")).Reload()
    logged = [e.value for e in events.Scalars("train/loss")]
    assert len(logged) == len(stats.losses) == stats.steps == 6
    assert logged == pytest.approx(stats.losses, rel=1e-5)
    assert '"run_name": "quick/std-cot"' in events.Tensors("args/text_summary")[0].tensor_proto.string_val[0].decode()


def test_the_tracker_is_not_part_of_the_training_key(tiny_model):
    """Logging elsewhere changes no weight: a finished or checkpointed training is reused, not refused."""
    plain, tracked = TrainConfig(), TrainConfig()
    tracked.report_to = ["wandb", "mlflow"]  # set after the check: the key must not depend on what is installed
    assert training_key(tiny_model, examples(), tracked, 42, None) == training_key(tiny_model, examples(), plain, 42, None)
    tracked.lora_r = 8
    assert training_key(tiny_model, examples(), tracked, 42, None) != training_key(tiny_model, examples(), plain, 42, None)


def test_the_tracker_does_not_invalidate_finished_entries_or_predictions():
    from skintern.config import RunConfig
    from skintern.run import config_digest, prediction_settings

    plain, tracked = RunConfig(), RunConfig()
    tracked.train.report_to = ["wandb"]
    assert config_digest(tracked) == config_digest(plain) and prediction_settings(tracked) == prediction_settings(plain)
    tracked.train.lora_r = 8
    assert config_digest(tracked) != config_digest(plain)


def test_the_training_key_holds_the_precision_auto_resolves_to(tiny_model, monkeypatch):
    """`auto` is bf16 on a CPU with native bf16 and fp32 on one without: weights trained on one machine must not be
    reused (or resumed) as if they were the other's."""
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    auto, fp32, bf16 = (TrainConfig(precision=p) for p in ("auto", "fp32", "bf16"))
    monkeypatch.setattr("skintern.train._cpu_has_bf16", lambda: False)
    assert training_key(tiny_model, examples(), auto, 42, None) == training_key(tiny_model, examples(), fp32, 42, None)
    monkeypatch.setattr("skintern.train._cpu_has_bf16", lambda: True)
    assert training_key(tiny_model, examples(), auto, 42, None) == training_key(tiny_model, examples(), bf16, 42, None)
    assert training_key(tiny_model, examples(), auto, 42, None) != training_key(tiny_model, examples(), fp32, 42, None)


def test_entries_are_keyed_on_the_precision_auto_resolves_to(monkeypatch):
    """A finished entry from a bf16 machine is refused, not reused, by a rerun of the same config on an fp32 one."""
    from skintern.config import RunConfig
    from skintern.run import config_digest, run_settings

    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    auto, fp32 = RunConfig(), RunConfig()
    auto.train.precision, fp32.train.precision = "auto", "fp32"
    monkeypatch.setattr("skintern.train._cpu_has_bf16", lambda: False)
    assert run_settings(auto)["train"]["precision"] == "fp32" and config_digest(auto) == config_digest(fp32)
    monkeypatch.setattr("skintern.train._cpu_has_bf16", lambda: True)
    assert run_settings(auto)["train"]["precision"] == "bf16" and config_digest(auto) != config_digest(fp32)
