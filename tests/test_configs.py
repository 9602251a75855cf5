"""Every shipped config loads: run configs with skintern's schema, accelerate configs with accelerate's."""

from __future__ import annotations

from pathlib import Path

import pytest

from skintern.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RUN_CONFIGS = sorted(p for p in CONFIGS.rglob("*.yaml") if "accelerate" not in p.parts)
ACCELERATE_CONFIGS = sorted((CONFIGS / "accelerate").glob("*.yaml"))


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_run_config_loads(path):
    cfg = load_config(path)
    assert cfg.name and cfg.eval.backend in ("auto", "hf", "vllm")


def test_gpu_configs_cover_every_bbh_task(shared_data):
    from skintern.data import bbh_tasks

    for path in (CONFIGS / "gpu").glob("*.yaml"):
        cfg = load_config(path)
        assert cfg.method == "skintern" and sorted(cfg.data.tasks) == sorted(bbh_tasks(shared_data)), path


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=lambda p: p.name)
def test_accelerate_config_loads(path):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(path))
    assert cfg.compute_environment.value == "LOCAL_MACHINE" and cfg.num_machines == 1


def test_every_shipped_config_is_checked():
    assert {p.name for p in ACCELERATE_CONFIGS} == {"single_gpu.yaml", "multi_gpu_ddp.yaml", "fsdp.yaml", "fsdp_cpu.yaml",
                                                 "deepspeed_zero3.yaml"}
    assert len(RUN_CONFIGS) >= 5


@pytest.mark.parametrize("path", sorted((CONFIGS / "paper").glob("*.yaml")), ids=lambda p: p.stem)
def test_paper_configs_are_the_papers_table_1_setting_and_plan_here(path, shared_data, monkeypatch):
    """Every method for 12 epochs, T = 4 linear with random picks, LoRA r 32, max output 128; the dry run of the
    compare passes on this machine (no model is loaded)."""
    import skintern.run
    from skintern.methods import METHODS
    from skintern.run import dry_run

    monkeypatch.setenv("SKINTERN_DATA_DIR", str(shared_data))
    monkeypatch.setattr(skintern.run, "load_student", lambda *a: pytest.fail("a model was loaded"))
    cfg = load_config(path)
    schedule = cfg.settings("skintern").schedule
    assert (cfg.train.epochs, schedule.epochs, schedule.T, schedule.pattern, schedule.examples_pick) == (12, 12, 4, "linear", "random")
    assert cfg.train.lora_r == 32 and cfg.train.warmup_ratio == 0.1 and cfg.eval.max_new_tokens == 128
    assert cfg.settings("kard").retriever == "bm25" and cfg.settings("kard").top_k == 3
    assert set(cfg.compare.methods) == set(METHODS) - {"prompt-fewshot", "teacher"}
    plan = dry_run(cfg, compare=True)
    assert "skintern        yes" in plan and "bare question (= inference prompt)" in plan
