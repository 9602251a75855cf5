"""Export of a trained LoRA run to one merged model folder, its model card, and question-only `ask`."""

from __future__ import annotations

import json
import re

import pytest
import torch
from transformers import AutoModelForCausalLM

from skintern.cli import main
from skintern.config import RunConfig, config_from_dict
from skintern.errors import SkinternError
from skintern.generation import Generator
from skintern.export import ask, export_run, ollama_modelfile
from skintern.methods.rundata import load_run_data
from skintern.prompts import STOP_STRINGS, PromptFormat, cot_prompt, cot_target, rationale_body
from skintern.run import build_method
from skintern.student import load_student
from skintern.train import SFTExample, finetune

QUESTION = 'Is the following sentence plausible? "Joao Moutinho caught the screen pass in the NFC championship."'


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_student_dir, shared_data):
    """A run folder as `skintern run` leaves it: results.json with its config, LoRA weights in train/std-cot/final."""
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    cfg = RunConfig(name="tiny", method="std-cot", output_dir=str(run_dir.parent))
    cfg.student.model = str(tiny_student_dir)
    cfg.data.tasks, cfg.data.data_dir = ["sports_understanding"], str(shared_data)
    cfg.train.precision, cfg.train.learning_rate, cfg.train.batch_size, cfg.train.epochs = "fp32", 2e-2, 2, 3.0
    cfg.train.lora_dropout, cfg.train.save_steps = 0.0, 1000
    student = load_student(cfg.student.model)
    examples = [SFTExample(f"bbh/t/{i}", cot_prompt("", QUESTION), cot_target("Joao Moutinho is a soccer player.", "no"))
                for i in range(4)]
    model, _ = finetune(student.model, student.tokenizer, examples, cfg.train, run_dir / "train" / "std-cot", seed=1)
    run = {"method": "std-cot", "student": cfg.student.model, "prompt_tokens_per_query": 41.0,
           "eval": {"bbh": {"accuracy": 0.625, "n": 8, "per_task": {"sports_understanding": 0.625}}}}
    (run_dir / "results.json").write_text(json.dumps({"name": "tiny", "student": cfg.student.model, "seed": 42,
                                                      "config": cfg.to_dict(), "runs": [run]}))
    return run_dir, model, student.tokenizer


def test_merged_export_has_the_adapter_models_logits(lora_run, tmp_path):
    run_dir, adapter_model, tokenizer = lora_run
    out = export_run(run_dir, tmp_path / "export")
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    ids = tokenizer(cot_prompt("", QUESTION), return_tensors="pt").input_ids
    with torch.no_grad():
        expected, got = adapter_model.eval()(ids).logits, merged(ids).logits
    base = AutoModelForCausalLM.from_pretrained(adapter_model.peft_config["default"].base_model_name_or_path)
    assert not torch.allclose(base(ids).logits, expected, atol=1e-3)  # the adapter changed the model
    assert torch.allclose(got, expected, atol=1e-5)
    card = (out / "README.md").read_text()
    assert "method **std-cot**" in card and "| std-cot | 62.5 | 41 |" in card and "Let's think step by step." in card
    assert not list(tmp_path.glob(".export.*"))  # the temp folder was renamed into place

    again = export_run(run_dir, tmp_path / "export")  # re-export replaces the folder whole
    assert again == out and (out / "model.safetensors").is_file()


def modelfile_commands(text: str) -> list[tuple[str, str]]:
    """(command, value) pairs as Ollama's Modelfile parser reads them: a triple-quoted value literally, newlines
    included, no escapes; comments skipped."""
    pattern = re.compile(r'^(FROM|TEMPLATE|SYSTEM|PARAMETER \w+) (?:"""(.*?)"""|(\S+))$', re.S | re.M)
    text = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    return [(m[1], m[2] if m[2] is not None else m[3]) for m in pattern.finditer(text)]


def render(template: str, system: str, prompt: str) -> str:
    """Go text/template semantics for the actions such a template may use: if/end on .System, .System, .Prompt."""
    out = re.sub(r"\{\{ if \.System \}\}(.*?)\{\{ end \}\}", lambda m: m[1] if system else "", template, flags=re.S)
    assert set(re.findall(r"\{\{.*?\}\}", out)) <= {"{{ .System }}", "{{ .Prompt }}"}, out
    return out.replace("{{ .System }}", system).replace("{{ .Prompt }}", prompt)


def test_modelfile_renders_the_evaluated_prompt_byte_for_byte(lora_run, tmp_path):
    run_dir, _, _ = lora_run
    out = export_run(run_dir, tmp_path / "export")
    commands = modelfile_commands((out / "Modelfile").read_text())
    assert [c for c, _ in commands] == ["FROM", "TEMPLATE", "SYSTEM", *["PARAMETER stop"] * len(STOP_STRINGS),
                                        "PARAMETER temperature"]
    values = dict(commands)
    assert values["FROM"] == "." and values["PARAMETER temperature"] == "0"
    assert [v for c, v in commands if c == "PARAMETER stop"] == list(STOP_STRINGS)
    # the prompt std-cot was evaluated with, for test items of the run's one task
    cfg = config_from_dict(json.loads((run_dir / "results.json").read_text())["config"], "results.json")
    rd = load_run_data(cfg.data, cfg.eval, cfg.internalization)
    method = build_method("std-cot", cfg, rd, load_student(cfg.student.model), run_dir)
    for ex in rd.tests["bbh"][:5]:
        assert render(values["TEMPLATE"], values["SYSTEM"], ex.question.strip()) == method.prompt(ex)
    card = (out / "README.md").read_text()
    assert f"```\n{method.prompt(ex).replace(ex.question.strip(), '<question>')}\n```" in card
    assert values["TEMPLATE"] in card


def test_modelfile_of_a_multi_task_student_takes_the_description_as_system_text():
    commands = modelfile_commands(ollama_modelfile("", PromptFormat()))
    assert "SYSTEM" not in dict(commands)
    template, question = dict(commands)["TEMPLATE"], "Is 7 prime?"
    description = "Answer questions about numbers."
    assert render(template, description, question) == cot_prompt(description, question)
    assert render(template, "", question) == cot_prompt("", question)  # no description (non-BBH datasets)


def test_adapter_only_export(lora_run, tmp_path):
    out = export_run(lora_run[0], tmp_path / "adapter", merge=False)
    assert (out / "adapter_model.safetensors").is_file() and (out / "README.md").is_file()
    assert not (out / "Modelfile").exists()  # Ollama needs the merged weights
    assert "LoRA adapter only" in (out / "README.md").read_text()


def test_ask_returns_the_models_own_text(lora_run, tmp_path, capsys):
    run_dir, _, _ = lora_run
    out = export_run(run_dir, tmp_path / "export")
    student = load_student(str(out))
    (gen,) = Generator(student.model, student.tokenizer, batch_size=1, max_new_tokens=24)([cot_prompt("", QUESTION)])
    rationale, answer = ask(out, QUESTION, kind="yes_no", max_new_tokens=24)
    assert rationale == rationale_body(gen.text) and rationale
    assert answer in ("Yes", "No", None)  # normalised yes_no answers
    assert main(["ask", str(out), QUESTION, "--max-new-tokens", "24"]) == 0
    assert capsys.readouterr().out.startswith(rationale)
    with pytest.raises(SkinternError, match="question is empty"):
        ask(out, "  ")


@pytest.mark.parametrize("make, expected", [
    (lambda p: p / "nope", "run folder not found"),
    (lambda p: p, "results.json: not found"),
])
def test_bad_run_path_is_one_line(tmp_path, capsys, make, expected):
    assert main(["export", str(make(tmp_path))]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err


@pytest.mark.parametrize("method", ["kard", "cascod", "fine-tune", "step-by-step"])
def test_a_method_that_answers_otherwise_is_refused_before_its_weights_are_read(lora_run, tmp_path, capsys, method):
    """The card, Modelfile and `ask` render the bare CoT prompt: exporting KARD (retrieved knowledge), CasCoD (two
    passes) or an answer-only method would deploy a prompt it never trained on, so export names what it can export."""
    run_dir, _, _ = lora_run
    out = tmp_path / "out"
    assert main(["export", str(run_dir), "--method", method, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"method {method!r} does not answer in one pass" in err and "export one of: std-cot, skintern" in err
    assert "\n" not in err and not out.exists()
