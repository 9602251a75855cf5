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
