"""Supervised fine-tuning of the student on prompt -> target pairs (LoRA or full) with `Trainer`.

The loss covers the target tokens only. Checkpoints go to `output_dir/checkpoint-*`; calling
`finetune` again with the same `output_dir` resumes from the newest one, and a finished run
(marked by `output_dir/done.json`) is not trained twice."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from accelerate import PartialState
from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file
from transformers import DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments, get_scheduler, set_seed
from transformers.integrations import TensorBoardCallback
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, SchedulerType

from skintern.errors import SkinternError
from skintern.files import changed_settings, read_json, write_json
from skintern.schema import SettingError, check_choice, check_nonempty, check_range

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# train.report_to: integration -> (modules any one of which makes it usable, what to pip install)
TRACKERS = {"tensorboard": (("tensorboard", "tensorboardX"), "tensorboard"), "wandb": (("wandb",), "wandb"),
            "mlflow": (("mlflow",), "mlflow"), "trackio": (("trackio",), "trackio")}


@dataclass
class TrainConfig:
    """The `train:` section: how the student is fine-tuned (the same for every method of a compare)."""

    finetune: str = "lora"
    """lora (a LoRA adapter on every linear layer by default) | full (all weights)."""
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] | str = "all-linear"
    learning_rate: float = 2e-4
    epochs: float = 1.0
    """Passes over the training pairs (SKIntern: per stage, see its schedule)."""
    max_steps: int = -1
    """> 0 overrides epochs; -1 trains by epochs."""
    batch_size: int = 4
    grad_accum: int = 1
    max_length: int = 512
    """Longer training sequences are dropped (and counted)."""
    warmup_ratio: float = 0.1
    lr_scheduler: str = "cosine"
    weight_decay: float = 0.0
    save_steps: int = 25
    """A checkpoint every this many optimizer steps: a killed run resumes from the newest."""
    logging_steps: int = 5
    gradient_checkpointing: bool = False
    precision: str = "auto"
    """auto | fp32 | bf16 | fp16 (mixed precision; auto = bf16 where the device runs it natively)."""
    group_by_length: bool = True
    """Batch similar lengths together: less padding, the same examples."""
    report_to: list[str] | str = "none"
    """none | tensorboard | wandb | mlflow | trackio, or a list of them: where the Trainer also logs the loss and
    learning rate. The run is named `<run folder>/<method>[/stage-<s>]`; TensorBoard writes under `<output>/logs`
    in the method's (or stage's) train folder. Each needs its package installed (checked when the config loads)."""

    def __post_init__(self):
        check_report_to(self.report_to)
        check_choice("finetune", self.finetune, ("lora", "full"))
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("lr_scheduler", self.lr_scheduler, [t.value for t in SchedulerType])
        for key in ("lora_r", "lora_alpha", "batch_size", "grad_accum", "max_length", "save_steps", "logging_steps"):
            check_range(key, getattr(self, key), 1)
        check_range("lora_dropout", self.lora_dropout, 0, 1, high_open=True)
        check_range("learning_rate", self.learning_rate, 0, low_open=True)
        check_range("epochs", self.epochs, 0, low_open=True)
        if self.max_steps != -1:
            check_range("max_steps", self.max_steps, 1)
        check_range("warmup_ratio", self.warmup_ratio, 0, 1, high_open=True)
        check_range("weight_decay", self.weight_decay, 0)


def check_report_to(report_to: list[str] | str) -> None:
    """Known integrations only, each installed: a missing one is caught when the config loads, not after a model has."""
    if report_to == "none":
        return
    names = [report_to] if isinstance(report_to, str) else report_to
    check_nonempty("report_to", names)
    for name in names:  # "none" alone, not in a list
        check_choice("report_to", name, TRACKERS if isinstance(report_to, list) else ("none", *TRACKERS))
    for name in names:
        modules, package = TRACKERS[name]
        if all(importlib.util.find_spec(module) is None for module in modules):
            raise SettingError("report_to", f"{name} is not installed; pip install {package}")


@dataclass(frozen=True)
class SFTExample:
    id: str
    prompt: str
    target: str
    weight: float = 1.0  # loss weight (multi-task methods: alpha for the answer, 1 - alpha for the rationale)
    task: str = ""  # multi-task methods: which task the pair trains ("answer", "rationale"); its loss is averaged per task


@dataclass
class TrainStats:
    examples: int
    dropped_too_long: int
    steps: int
    train_loss: float
    seconds: float
    losses: list[float]
    stages: list[dict] | None = None  # per-stage stats of a progressive (SKIntern) run

    def to_dict(self) -> dict:
        return {k: v for k, v in vars(self).items() if v is not None}


def _encode(tokenizer, ex: SFTExample) -> tuple[list[int], list[int]]:
    """Prompt ids, and target ids ending in EOS (added unless the target ends with it already, as a chat-format
    target does where the template's end of turn is the EOS token)."""
    prompt_ids = tokenizer(ex.prompt).input_ids
    target_ids = tokenizer(ex.target, add_special_tokens=False).input_ids
    if not target_ids or target_ids[-1] != tokenizer.eos_token_id:
        target_ids.append(tokenizer.eos_token_id)
    return prompt_ids, target_ids


def pair_length(tokenizer, ex: SFTExample) -> int:
    """Tokens the pair takes in training (prompt + target + EOS), to compare with train.max_length."""
    prompt_ids, target_ids = _encode(tokenizer, ex)
    return len(prompt_ids) + len(target_ids)


def tokenize(tokenizer, examples: Sequence[SFTExample], max_length: int) -> tuple[list[dict], int]:
    """input_ids = prompt + target + EOS; labels mask the prompt with -100. Too-long pairs are dropped.

    Each row carries its loss weight and its task as an index into the sorted task names."""
    task_ids = {task: i for i, task in enumerate(sorted({ex.task for ex in examples}))}
    rows, dropped = [], 0
    for ex in examples:
        prompt_ids, target_ids = _encode(tokenizer, ex)
        ids = prompt_ids + target_ids
        if len(ids) > max_length:
            dropped += 1
            continue
        rows.append(
            {
                "input_ids": ids,
                "attention_mask": [1] * len(ids),
                "labels": [-100] * len(prompt_ids) + target_ids,
                "weight": ex.weight,
                "task": task_ids[ex.task],
            }
        )
    return rows, dropped


def with_lora(model, cfg: TrainConfig):
    """Wrap in a LoRA adapter unless the model already carries one (a later SKIntern stage)."""
    if cfg.finetune == "full" or isinstance(model, PeftModel):
        return model
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.lora_target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def finetune(
    model,
    tokenizer,
    examples: Sequence[SFTExample],
    cfg: TrainConfig,
    output_dir: str | Path,
    seed: int = 42,
    epochs: float | None = None,
    desc: str = "train",
    optimizers: ContinuedOptimizer | None = None,
) -> tuple[object, TrainStats]:
    """Train `model` on `examples`; returns the (possibly LoRA-wrapped) model and its stats.

    With $SKINTERN_STAGE_LOG set, every rank logs the stage of each step there (`StageLog`).
    `seed` fixes the run: it is set before the LoRA adapter is initialized, so the adapter does not depend on
    what the process drew before; `Trainer` reseeds (dropout) and seeds the data order with it too.
    `optimizers`: continue one AdamW and LR schedule from earlier calls instead of starting fresh ones."""
    output_dir = Path(output_dir)
    done = output_dir / "done.json"
    key = training_key(model, examples, cfg, seed, epochs)
    if optimizers is not None:  # the schedule spans all the calls' steps: it changes the weights of each
        key |= {"restart_optimizer": False, "optimizer_steps": optimizers.total_steps}
    changed = changed_settings(output_dir / "train_key.json", key)
    if changed:
        raise SkinternError(f"{output_dir}: trained under other settings ({'; '.join(changed[:3])}); "
                            "remove that folder to train again, or restore the settings")
    set_seed(seed)
    model = with_lora(model, cfg)
    if done.is_file():
        load_trained_weights(model, output_dir / "final")
        if optimizers is not None:
            optimizers.continue_from(output_dir)
        return model, TrainStats(**read_json(done))
    rows, dropped = tokenize(tokenizer, examples, cfg.max_length)
    if not rows:
        raise SkinternError(f"{desc}: no training example fits train.max_length={cfg.max_length} ({dropped} dropped)")
    precision = resolve_precision(cfg.precision)
    tokenizer.padding_side = "right"
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    args = TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=epochs if epochs is not None else cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # a float below 1 is a ratio of the total steps (on any number of processes)
        weight_decay=cfg.weight_decay,
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        seed=seed,
        data_seed=seed,
        report_to=cfg.report_to,
        run_name=run_name(output_dir, desc),
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        remove_unused_columns=False,
        disable_tqdm=False,
    )
    trainer = WeightedLossTrainer(
        model=model,
        args=args,
        train_dataset=rows,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
        callbacks=[StageLog(os.environ["SKINTERN_STAGE_LOG"], desc)] if os.environ.get("SKINTERN_STAGE_LOG") else None,
    )
    log_to_folder(trainer, output_dir / "logs")
    if optimizers is not None:
        optimizers.attach(trainer)
    last = last_complete_checkpoint(output_dir)
    if last:
        print(f"{desc}: resuming from {last}", flush=True)
    elif trainer.is_world_process_zero():
        write_json(output_dir / "train_key.json", key)
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=last)
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    stats = TrainStats(
        examples=len(rows),
        dropped_too_long=dropped,
        steps=trainer.state.global_step,
        train_loss=float(result.training_loss),
        seconds=time.perf_counter() - start,
        losses=losses,
    )
    trainer.save_model(str(output_dir / "final"))  # gathers FSDP / ZeRO-3 shards; writes on the main process
    if trainer.is_world_process_zero():
        if optimizers is not None:
            optimizers.save(output_dir)  # before done.json: a finished call always has the state to continue from
        write_json(done, stats.to_dict())
    trainer.accelerator.wait_for_everyone()
    return model, stats


def leave_process_group() -> None:
    """End of a distributed run (`accelerate launch`): wait for every process, then tear the group down, so that no
    process exits while another still uses it; gloo aborts a process that exits with the group alive."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def run_name(output_dir: Path, desc: str) -> str:
    """`<run folder>/<method>[/stage-<s>]` for a method trained in `<run folder>/train/<method>[/stage-<s>]`."""
    stage = output_dir.name if output_dir.name.startswith("stage-") else ""
    method_dir = output_dir.parent if stage else output_dir
    return "/".join(p for p in (method_dir.parent.parent.name, desc, stage) if p)


def log_to_folder(trainer: Trainer, folder: Path) -> None:
    """TensorBoard events go to `folder` ($TENSORBOARD_LOGGING_DIR still wins), not to `<output>/runs/<date_host>`."""
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback) and callback.logging_dir is None:
            callback.logging_dir = str(folder)


def last_complete_checkpoint(output_dir: Path) -> str | None:
    """The newest checkpoint a kill did not cut short. `Trainer` writes a checkpoint in place and its trainer state
    last, so a checkpoint whose state file is missing or unreadable was being saved when the run died: it is
    removed and the one before it is used."""
    steps = sorted((int(p.name.rsplit("-", 1)[1]), p) for p in output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*")
                   if p.is_dir() and p.name.rsplit("-", 1)[1].isdigit()) if output_dir.is_dir() else []
    for _, path in reversed(steps):
        try:
            json.loads((path / TRAINER_STATE_NAME).read_text())
            return str(path)
        except (OSError, ValueError):
            print(f"skintern: warning: {path} was cut short by a kill; resuming from the checkpoint before it", flush=True)
            shutil.rmtree(path)
    return None


def optimizer_steps(tokenizer, examples: Sequence[SFTExample], cfg: TrainConfig, epochs: float | None) -> int:
    """The optimizer steps `finetune` takes on `examples`, counted as `Trainer` counts them: batches per process
    (the last one padded out across processes), a partial accumulation counting as a step, epochs rounded up."""
    if cfg.max_steps > 0:
        return cfg.max_steps
    rows, _ = tokenize(tokenizer, examples, cfg.max_length)
    batches = math.ceil(math.ceil(len(rows) / cfg.batch_size) / PartialState().num_processes)
    per_epoch = max(math.ceil(batches / cfg.grad_accum), 1)
    return math.ceil((epochs if epochs is not None else cfg.epochs) * per_epoch)


class ContinuedOptimizer:
    """One AdamW and one LR schedule (warmup + decay over `total_steps`) that successive `finetune` calls continue,
    so the learning rate decays once over all of them and the moment estimates carry from call to call.

    The first call that trains builds both as its `Trainer` would (its `create_optimizer`: the same parameter groups
    and weight decay; `get_scheduler` with its warmup). A finished call saves their state next to its done.json,
    so a run killed between calls continues where it stopped; a kill within a call resumes from the Trainer's
    checkpoint, which restores both."""

    STATE = "optimizer-state.pt"

    def __init__(self, total_steps: int):
        self.total_steps = total_steps
        self.optimizer = self.scheduler = None
        self._saved: Path | None = None  # a finished call's state, loaded once the optimizer exists

    def attach(self, trainer: Trainer) -> None:
        if trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled:
            raise SkinternError("one optimizer over several trainings (restart_optimizer: false) needs plain or DDP "
                                "training: FSDP and DeepSpeed build their own optimizer on the wrapped model")
        if self.optimizer is None:
            args = trainer.args
            self.optimizer = trainer.create_optimizer()
            self.scheduler = get_scheduler(args.lr_scheduler_type, self.optimizer,
                                           num_warmup_steps=args.get_warmup_steps(self.total_steps),
                                           num_training_steps=self.total_steps,
                                           scheduler_specific_kwargs=args.lr_scheduler_kwargs)
        if self._saved is not None:
            state = torch.load(self._saved / self.STATE, map_location="cpu", weights_only=True)
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self._saved = None
        trainer.optimizer, trainer.lr_scheduler = self.optimizer, self.scheduler

    def continue_from(self, output_dir: Path) -> None:
        """Continue from the state a finished call saved in `output_dir` (a resumed run skips that call)."""
        self._saved = output_dir

    def save(self, output_dir: Path) -> None:
        torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()},
                   output_dir / self.STATE)


def training_key(model, examples: Sequence[SFTExample], cfg: TrainConfig, seed: int, epochs: float | None) -> dict:
    """What a training output depends on: the student, the pairs, the settings that change the weights, the seed.
    Checkpoints and a finished output are reused only under the same key (`finetune`)."""
    pairs = hashlib.sha256(json.dumps([asdict(ex) for ex in examples], sort_keys=True).encode()).hexdigest()[:16]
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("save_steps", "logging_steps", "report_to")}
    settings["precision"] = resolve_precision(cfg.precision)  # `auto` trains in bf16 on one machine, fp32 on another
    return {"student": str(getattr(model.config, "_name_or_path", "")), "pairs": pairs, "train": settings,
            "seed": seed, "epochs": epochs}


class StageLog(TrainerCallback):
    """Appends {rank, world_size, desc, stage, global_step} per optimizer step to a JSON-lines file,
    so a distributed run can be checked for every rank walking the same stages in lockstep.
    `stage` is the output folder's name (SKIntern: stage-<s>). One O_APPEND write per line keeps
    lines from different processes whole."""

    def __init__(self, path: str | Path, desc: str):
        self.path, self.desc = str(path), desc

    def on_step_end(self, args, state, control, **kwargs):
        line = {"rank": args.process_index, "world_size": args.world_size, "desc": self.desc,
                "stage": Path(args.output_dir).name, "global_step": state.global_step}
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(line) + "\n").encode())
        finally:
            os.close(fd)


class WeightedLossTrainer(Trainer):
    """Every method's loss: the sum over tasks of the task's weight times the mean loss of its target tokens, with
    the LM head applied to the target positions only.

    Rows carry their task (mt-cot, step-by-step, cascod: answer rows weigh alpha, rationale rows 1 - alpha; every
    other method: one task of weight 1) and the mean runs over that task's target tokens in the whole optimizer
    batch (every accumulated micro-batch, every process): loss = alpha * mean(answer-token loss) + (1 - alpha) *
    mean(rationale-token loss). So an answer-only batch weighs alpha, not 1; batch 4 x accumulation 2 equals batch
    8 x 1; with one task of weight 1 the loss is the plain token mean. A task absent from the batch adds nothing.

    The model runs its body over the whole sequence but projects to the vocabulary only where a label is
    (`logits_to_keep` as a boolean mask): a prompt's positions cost no vocabulary logits and no fp32 upcast, which
    matters most for SKIntern's long first-stage prompts. `full_logits=True` keeps the old path (benchmarks)."""

    loss_is_scaled_for_ga = True  # normalized over the whole optimizer batch: the Trainer must not divide again

    def __init__(self, *args, full_logits: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.full_logits = full_logits

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        """Tag each row with its task's target tokens in the optimizer batch, per process (`task_tokens`),
        so that DDP's average over processes of each process's sum gives the mean."""
        batches, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
        if batches:
            tasks = torch.cat([b["task"] for b in batches])
            all_tasks = torch.tensor(sorted({row["task"] for row in self.train_dataset}), device=tasks.device)
            member = (tasks[:, None] == all_tasks).float()
            per_task = member.T @ torch.cat([self._target_tokens(b["labels"]) for b in batches])
            if self.args.world_size > 1:
                per_task = self.accelerator.reduce(per_task, reduction="mean")
            for b, task_tokens in zip(batches, (member @ per_task).split([len(b["task"]) for b in batches])):
                b["task_tokens"] = task_tokens
        return batches, num_items_in_batch

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        weights = inputs.pop("weight").float()
        tasks = inputs.pop("task")
        labels = inputs.pop("labels")
        task_tokens = inputs.pop("task_tokens", None)
        if task_tokens is None:  # a lone batch (a direct call, evaluation): its tasks' tokens in it
            task_tokens = (tasks[:, None] == tasks).float() @ self._target_tokens(labels)
        keep = torch.zeros_like(labels, dtype=torch.bool)
        keep[:, :-1] = labels[:, 1:] != -100  # position t predicts token t + 1
        outputs = model(**inputs, logits_to_keep=0 if self.full_logits else keep)
        logits = outputs.logits
        if logits.dim() == 3:  # the full path, or a model that ignores a mask in logits_to_keep
            logits = logits[keep]
        token_loss = torch.nn.functional.cross_entropy(logits.float(), labels[:, 1:][keep[:, :-1]], reduction="none")
        row = keep.nonzero(as_tuple=True)[0]
        loss = (weights[row] * token_loss / task_tokens[row].clamp(min=1e-8)).sum()
        return (loss, outputs) if return_outputs else loss

    @staticmethod
    def _target_tokens(labels: torch.Tensor) -> torch.Tensor:
        """Target tokens per row: the positions the shifted causal-LM loss covers."""
        return (labels[:, 1:] != -100).sum(1).float()


def resolve_precision(precision: str) -> str:
    """`auto` picks bf16 on GPUs and CPUs with native bf16 matmuls (about 1.7x faster on AVX512-BF16), else fp32."""
    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if _cpu_has_bf16() else "fp32"


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def load_trained_weights(model, path: Path) -> None:
    """Load what `finetune` saved in `path` into `model` (adapter weights for LoRA, all weights for full)."""
    if isinstance(model, PeftModel):
        set_peft_model_state_dict(model, load_file(path / "adapter_model.safetensors"))
    else:
        state = {}
        for shard in sorted(path.glob("*.safetensors")):
            state.update(load_file(shard))
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected:
            raise SkinternError(f"{path}: weights do not match the student ({len(unexpected)} unexpected tensors)")
