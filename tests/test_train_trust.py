"""Training results to trust: a seed fixes the run, and the multi-task weighted loss is
alpha * mean(answer-token loss) + (1 - alpha) * mean(rationale-token loss) whatever the batching."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

from conftest import REPO, build_tiny_llama, build_tokenizer
from skintern.config import TrainConfig
from skintern.train import SFTExample, WeightedLossTrainer, finetune, tokenize

ITEMS = [
    ("Is the following sentence plausible? \"Joao Moutinho caught the screen pass.\"",
     "Joao Moutinho is a soccer player. The screen pass is part of American football.", "No"),
    ("Today is Christmas Eve of 1937. What is the date tomorrow in MM/DD/YYYY?",
     "Today is 12/24/1937, so tomorrow is 12/25/1937.", "(B)"),
    ("not True and False or ( True ) is",
     "not True is False. False and False is False. False or True is True.", "True"),
    ("Is the following sentence plausible? \"The player caught the pass in the NFC championship.\"",
     "The NFC championship is part of American football.", "Yes"),
]
ALPHA = 0.3
SEED = 5


def sft_examples() -> list[SFTExample]:
    return [SFTExample(f"t/{i}", f"Q: {q}\nA: Let's think step by step.", f" {r} So the answer is {a}.")
            for i, (q, r, a) in enumerate(ITEMS)]


def multitask_examples() -> tuple[list[SFTExample], list[SFTExample]]:
    """Answer rows (weight alpha) and rationale rows (weight 1 - alpha), as mt-cot builds them."""
    answers = [SFTExample(f"t/{i}", f"Q: {q}\nA: The answer is", f" {a}.", weight=ALPHA, task="answer")
               for i, (q, _, a) in enumerate(ITEMS)]
    rationales = [SFTExample(f"t/{i}#rationale", f"Q: {q}\nA: Let's think step by step.", f" {r}", weight=1 - ALPHA, task="rationale")
                  for i, (q, r, _) in enumerate(ITEMS)]
    return answers, rationales


# --- a seed fixes the run -------------------------------------------------------------------------

LORA = TrainConfig(finetune="lora", lora_r=4, lora_alpha=8, lora_dropout=0.2, precision="fp32", learning_rate=2e-2,
                   batch_size=2, max_steps=3, save_steps=1000, logging_steps=1, warmup_ratio=0.0)


def train_adapter(seed: int, out: Path, tokenizer=None) -> Path:
    """LoRA-train the tiny Llama (init seed fixed by the fixture builder); returns the saved adapter."""
    tokenizer = tokenizer or build_tokenizer()
    finetune(build_tiny_llama(len(tokenizer)), tokenizer, sft_examples(), LORA, out, seed=seed)
    return out / "final" / "adapter_model.safetensors"


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        assert torch.equal(a[name], b[name]), name


def subprocess_env() -> dict:
    """This checkout's code and test helpers, offline."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")]),
            "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def fresh_process_runs(tmp_path_factory) -> list[dict]:
    """The same LoRA run in two fresh Python processes, side by side."""
    tmp = tmp_path_factory.mktemp("fresh")
    code = f"import sys, pathlib, test_train_trust as t; t.train_adapter({SEED}, pathlib.Path(sys.argv[1]))"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp / f"run{i}")], env=subprocess_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    for proc in procs:
        output, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, output[-3000:]
    return [load_file(tmp / f"run{i}" / "final" / "adapter_model.safetensors") for i in range(2)]


def test_same_seed_in_fresh_processes_gives_identical_adapters(fresh_process_runs):
    assert_same_weights(*fresh_process_runs)


def test_a_run_after_other_work_in_the_process_equals_the_run_alone(fresh_process_runs, tiny_tokenizer, tmp_path):
    other = TrainConfig(finetune="lora", lora_r=2, lora_dropout=0.5, precision="fp32", batch_size=1, max_steps=2,
                        save_steps=1000, warmup_ratio=0.0)
    finetune(build_tiny_llama(len(tiny_tokenizer), seed=1), tiny_tokenizer, sft_examples()[:2], other,
             tmp_path / "other", seed=7)
    model = build_tiny_llama(len(tiny_tokenizer))
    torch.rand(1000)  # draws between building the student and training it
    finetune(model, tiny_tokenizer, sft_examples(), LORA, tmp_path / "after", seed=SEED)
    assert_same_weights(load_file(tmp_path / "after" / "final" / "adapter_model.safetensors"), fresh_process_runs[0])


def test_another_seed_gives_another_adapter(fresh_process_runs, tiny_tokenizer, tmp_path):
    other_seed = load_file(train_adapter(SEED + 1, tmp_path / "seed", tiny_tokenizer))
    assert other_seed.keys() == fresh_process_runs[0].keys()
    assert not any(torch.equal(other_seed[k], v) for k, v in fresh_process_runs[0].items() if "lora_A" in k)


# --- weighted losses under gradient accumulation --------------------------------------------------


def sgd_update(tokenizer, examples, trainer_class, batch_size: int, accum: int, tmp_path: Path) -> dict:
    """One optimizer step of plain SGD at learning rate 1 without clipping: the update is the gradient."""
    rows, dropped = tokenize(tokenizer, examples, 512)
    assert not dropped
    if trainer_class is Trainer:
        rows = [{k: v for k, v in r.items() if k != "weight"} for r in rows]
    model = build_tiny_llama(len(tokenizer))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    args = TrainingArguments(
        output_dir=str(tmp_path / f"{trainer_class.__name__}-{batch_size}x{accum}"),
        per_device_train_batch_size=batch_size, gradient_accumulation_steps=accum, max_steps=1,
        optim="sgd", learning_rate=1.0, lr_scheduler_type="constant", max_grad_norm=0.0, weight_decay=0.0,
        seed=0, use_cpu=True, report_to="none", save_strategy="no", remove_unused_columns=False, disable_tqdm=True,
    )
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    trainer_class(model=model, args=args, train_dataset=rows, data_collator=collator).train()
    return {name: before[name] - p.detach() for name, p in model.named_parameters()}


def assert_close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-5, msg=name)
    assert any(v.abs().max() > 1e-3 for v in a.values())  # a real update, not two zeros


def test_weighted_loss_batch_4_accumulated_twice_equals_batch_8(tiny_tokenizer, tmp_path):
    answers, rationales = multitask_examples()
    examples = answers + rationales
    accumulated = sgd_update(tiny_tokenizer, examples, WeightedLossTrainer, 4, 2, tmp_path)
    assert_close(accumulated, sgd_update(tiny_tokenizer, examples, WeightedLossTrainer, 8, 1, tmp_path))


def test_weighted_loss_has_the_plain_losses_scale_under_accumulation(tiny_tokenizer, tmp_path):
    examples = sft_examples() * 2  # weight 1 for every row: the weighted loss is the plain token mean
    weighted = sgd_update(tiny_tokenizer, examples, WeightedLossTrainer, 4, 2, tmp_path)
    assert_close(weighted, sgd_update(tiny_tokenizer, examples, Trainer, 4, 2, tmp_path))


def test_answer_and_rationale_losses_weigh_alpha_and_one_minus_alpha(tiny_tokenizer, tmp_path):
    answers, rationales = multitask_examples()
    answer_mean = sgd_update(tiny_tokenizer, answers, Trainer, 4, 1, tmp_path)  # gradient of the answer-token mean
    rationale_mean = sgd_update(tiny_tokenizer, rationales, Trainer, 4, 1, tmp_path)
    # a batch of one task keeps its weight: it is not normalized away to 1
    assert_close(sgd_update(tiny_tokenizer, answers, WeightedLossTrainer, 2, 2, tmp_path),
                 {k: ALPHA * v for k, v in answer_mean.items()})
    assert_close(sgd_update(tiny_tokenizer, rationales, WeightedLossTrainer, 2, 2, tmp_path),
                 {k: (1 - ALPHA) * v for k, v in rationale_mean.items()})
    # mixed micro-batches: alpha * mean(answer-token loss) + (1 - alpha) * mean(rationale-token loss)
    mixed = sgd_update(tiny_tokenizer, answers + rationales, WeightedLossTrainer, 2, 4, tmp_path)
    assert_close(mixed, {k: ALPHA * answer_mean[k] + (1 - ALPHA) * rationale_mean[k] for k in mixed})


DDP_SCRIPT = """
import os, sys
from pathlib import Path
import torch
from conftest import build_tokenizer
from test_train_trust import multitask_examples, sgd_update
from skintern.train import WeightedLossTrainer, leave_process_group
answers, rationales = multitask_examples()
update = sgd_update(build_tokenizer(), answers + rationales, WeightedLossTrainer, 2, 2, Path(sys.argv[1]))
if os.environ["RANK"] == "0":
    torch.save(update, Path(sys.argv[1]) / "update.pt")
leave_process_group()
"""


@pytest.mark.slow  # two fresh processes with torch + transformers (gloo): ~15 s on 2 cores
def test_weighted_loss_on_2_processes_equals_one_process(tiny_tokenizer, tmp_path):
    answers, rationales = multitask_examples()
    single = sgd_update(tiny_tokenizer, answers + rationales, WeightedLossTrainer, 8, 1, tmp_path)
    (tmp_path / "ddp.py").write_text(DDP_SCRIPT)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
         str(tmp_path / "ddp.py"), str(tmp_path)], env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert_close(torch.load(tmp_path / "update.pt"), single)  # 2 processes x batch 2 x accumulation 2
