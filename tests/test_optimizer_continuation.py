"""SKIntern's restart_optimizer: False runs one AdamW and one LR schedule through every stage (the learning rate
decays once, the moment estimates carry over), across a kill between stages or within one too; True restarts
both at each stage."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from test_skintern import skintern_config, skintern_method
from transformers import TrainerCallback

import skintern.train as train_module
from skintern.errors import SkinternError
from skintern.files import read_json
from skintern.schedule import ScheduleConfig


class Recorder(TrainerCallback):
    """Per stage: the learning rate and one parameter's AdamW first moment at its first and after its last step."""

    def __init__(self, records: dict):
        self.records = records

    def on_step_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kw):
        stage = self.records.setdefault(Path(args.output_dir).name, {})
        if "begin" not in stage:
            stage["begin"] = self._snapshot(optimizer, lr_scheduler)

    def on_train_end(self, args, state, control, optimizer=None, lr_scheduler=None, **kw):
        self.records[Path(args.output_dir).name]["end"] = self._snapshot(optimizer, lr_scheduler)

    @staticmethod
    def _snapshot(optimizer, lr_scheduler) -> dict:
        param = optimizer.param_groups[0]["params"][0]
        exp_avg = optimizer.state.get(param, {}).get("exp_avg")
        return {"lr": lr_scheduler.get_last_lr()[0], "exp_avg": None if exp_avg is None else exp_avg.clone()}


class KillAt(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kw):
        if state.global_step == self.step:
            raise KeyboardInterrupt


@contextmanager
def trainers(records: dict, kill: tuple[str, int | None] | None = None):
    """Every Trainer records (`Recorder`); `kill` = (stage, step): a kill after that step of that stage, or before
    the stage starts when step is None."""
    original = train_module.WeightedLossTrainer

    def patched(*args, **kw):
        trainer = original(*args, **kw)
        stage = Path(trainer.args.output_dir).name
        if kill and kill[0] == stage:
            if kill[1] is None:
                raise KeyboardInterrupt
            trainer.add_callback(KillAt(kill[1]))
        trainer.add_callback(Recorder(records))
        return trainer

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_module, "WeightedLossTrainer", patched)
        yield


def config(root: Path, student_dir, data_dir, restart: bool):
    cfg = skintern_config(root, student_dir, data_dir)
    cfg.train.lr_scheduler, cfg.train.warmup_ratio = "linear", 0.0  # the step a learning rate belongs to is plain
    cfg.train.batch_size, cfg.train.grad_accum, cfg.train.save_steps = 1, 2, 100  # 7 items: 4 steps, the last partial
    settings = cfg.methods["skintern"]
    settings.schedule = ScheduleConfig(steps=3, examples=2, epochs=3.0)
    settings.restart_optimizer = restart
    return cfg


def fit(cfg):
    fitted = skintern_method(cfg).fit()
    return {k: v.detach().clone() for k, v in fitted.model.state_dict().items()}, fitted.stats


@pytest.fixture(scope="module")
def continued(tmp_path_factory, tiny_student_dir, shared_data):
    """An uninterrupted run with restart_optimizer False: its config, weights, stats and records."""
    cfg = config(tmp_path_factory.mktemp("continued"), tiny_student_dir, shared_data, restart=False)
    records = {}
    with trainers(records):
        weights, stats = fit(cfg)
    return cfg, weights, stats, records


def test_one_schedule_and_one_adamw_run_through_all_stages(continued):
    cfg, _, stats, records = continued
    steps = [s["steps"] for s in stats.stages]
    total, lr = sum(steps), cfg.train.learning_rate
    assert len(steps) == 3 and all(s > 1 for s in steps)
    for stage in range(3):  # every stage is keyed on the shared schedule, whose length the Trainers really ran
        key = read_json(cfg.run_dir / "train" / "skintern" / f"stage-{stage}" / "train_key.json")
        assert key["restart_optimizer"] is False and key["optimizer_steps"] == total
    begin = [records[f"stage-{s}"]["begin"]["lr"] for s in range(3)]
    assert begin[0] == pytest.approx(lr)
    assert begin[1] == pytest.approx(lr * (total - steps[0]) / total) and begin[1] < begin[0]
    assert begin[2] == pytest.approx(lr * (total - steps[0] - steps[1]) / total)
    assert records["stage-0"]["end"]["lr"] > 0 and records["stage-2"]["end"]["lr"] == 0  # decays once, to the end
    end0, begin1 = records["stage-0"]["end"]["exp_avg"], records["stage-1"]["begin"]["exp_avg"]
    assert begin1 is not None and end0.abs().sum() > 0
    assert torch.equal(begin1, end0)  # the moment estimates carry into the next stage
    assert skintern_method(cfg).result_extras()["restart_optimizer"] is False
    assert cfg.to_dict()["methods"]["skintern"]["restart_optimizer"] is False


def test_by_default_each_stage_restarts_its_optimizer_and_a_switch_is_not_reused(tmp_path, tiny_student_dir,
                                                                                 shared_data):
    cfg = config(tmp_path, tiny_student_dir, shared_data, restart=True)
    records = {}
    with trainers(records):
        fit(cfg)
    lr = cfg.train.learning_rate
    assert [records[f"stage-{s}"]["begin"]["lr"] for s in range(3)] == pytest.approx([lr] * 3)
    assert records["stage-1"]["begin"]["exp_avg"] is None  # a fresh AdamW
    assert skintern_method(cfg).result_extras()["restart_optimizer"] is True

    cfg.methods["skintern"].restart_optimizer = False  # stages trained with restarts are not continued as one
    with pytest.raises(SkinternError, match="restart_optimizer"):
        fit(cfg)


@pytest.mark.parametrize("kill", [("stage-1", None), ("stage-1", 3)], ids=["between-stages", "within-a-stage"])
def test_a_killed_run_resumes_to_the_same_weights(continued, tmp_path, tiny_student_dir, shared_data, kill):
    _, reference, ref_stats, ref_records = continued
    cfg = config(tmp_path, tiny_student_dir, shared_data, restart=False)
    if kill[1]:
        cfg.train.save_steps = 2
    with pytest.raises(KeyboardInterrupt), trainers({}, kill):
        fit(cfg)
    stage_root = cfg.run_dir / "train" / "skintern"
    assert (stage_root / "stage-0" / "done.json").is_file() and not (stage_root / "stage-1" / "done.json").exists()
    assert (stage_root / "stage-1" / "checkpoint-2").is_dir() == bool(kill[1])  # within: resumes from its checkpoint

    records = {}
    with trainers(records):  # a new process: the optimizer in memory is gone
        weights, stats = fit(cfg)
    assert "stage-0" not in records  # not trained again
    lr = cfg.train.learning_rate  # the schedule goes on where it left off, not from the initial learning rate
    if kill[1] is None:
        assert records["stage-1"]["begin"]["lr"] == ref_records["stage-1"]["begin"]["lr"] < lr
    assert records["stage-2"]["begin"]["lr"] == ref_records["stage-2"]["begin"]["lr"] < lr
    assert [s["steps"] for s in stats.stages] == [s["steps"] for s in ref_stats.stages]
    for name, ref in reference.items():
        torch.testing.assert_close(weights[name], ref, rtol=0, atol=1e-6, msg=name)
