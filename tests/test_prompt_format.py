"""student.prompt_format (#17 item 6): under `chat` every trained method's prompts are its plain prompts rendered
in the student's chat template, its targets end with the template's end of turn, and training, evaluation, the
export's Modelfile and model card, and `ask` all use that one prompt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import skintern.evaluate
import skintern.export
from skintern.cli import main
from skintern.config import config_from_dict
from skintern.errors import SkinternError
from skintern.export import export_run
from skintern.generation import Generation
from skintern.methods.rundata import RunData, load_run_data
from skintern.prompts import STOP_STRINGS, PromptFormat, cot_prompt
from skintern.run import build_method
from skintern.schedule import ScheduleConfig
from skintern.schema import SettingError
from skintern.student import Student, StudentConfig, load_student
from skintern.train import SFTExample, _encode
from test_cli import write_config
from test_export import modelfile_commands, render
from test_fair_floor import chat_tokenizer
from test_methods import DESC, KNOWLEDGE, RATIONALES, TEST, TRAIN, cfg  # noqa: F401 (cfg: a fixture)

EOT = "</s>"  # the end of turn of test_fair_floor's template, which is the tiny tokenizer's EOS


def chat(question: str, description: str = DESC, cue: str = "Let's think step by step.") -> str:
    return f"<|user|>\n{description}\n\nQ: {question}{EOT}\n<|assistant|>\n{cue}"


@pytest.fixture
def both(cfg, tiny_model, tiny_tokenizer, tmp_path):  # noqa: F811
    """Build a method twice on the same chat-template tokenizer and data: in the plain and in the chat format."""
    tok = chat_tokenizer(tiny_tokenizer)
    rd = RunData(data_dir=Path("."), train_pool=TRAIN, train=TRAIN, rationales=RATIONALES, tests={"bbh": [TEST]},
                 descriptions={"sports_understanding": DESC}, fewshot={}, knowledge=KNOWLEDGE)
    cfg.methods["skintern"].schedule = ScheduleConfig(steps=2, examples=1, epochs=2.0)
    students = {kind: Student(tiny_model, tok, "tiny", ".", PromptFormat(kind, tok)) for kind in ("plain", "chat")}
    return lambda name: tuple(build_method(name, cfg, rd, students[kind], tmp_path / kind) for kind in ("plain", "chat"))


def pairs_of(method):
    """Every training pair; SKIntern's of both its stages."""
    if method.name == "skintern":
        return [pair for rows in method.stage_pairs().values() for pair in rows]
    return method.train_pairs()


@pytest.mark.parametrize("name", ["std-cot", "skintern", "kard", "fine-tune", "mt-cot", "cascod"])
def test_chat_pairs_and_prompts_are_the_plain_ones_in_the_chat_template(both, name):
    plain, chatted = both(name)
    fmt = chatted.prompt_format
    plain_pairs, chat_pairs = pairs_of(plain), pairs_of(chatted)
    assert len(chat_pairs) == len(plain_pairs) > 0
    for p, c in zip(plain_pairs, chat_pairs):
        assert (c.id, c.weight, c.task) == (p.id, p.weight, p.task)
        assert c.target == p.target + EOT
        if name != "cascod" or c.task == "rationale":  # CasCoD's answer prompt continues the reply of its first pass
            assert c.prompt == fmt.prompt(p.prompt) != p.prompt
    assert chatted.prompt(TEST) == fmt.prompt(plain.prompt(TEST))
    assert chatted.prompt(TEST).startswith("<|user|>\n") and chatted.prompt(TEST).count(EOT) == 1


def test_the_reply_cue_starts_the_assistant_turn(both):
    (_, std), (_, tune), (_, sk), (_, kard) = both("std-cot"), both("fine-tune"), both("skintern"), both("kard")
    assert std.prompt(TEST) == chat(TEST.question)
    first = std.train_pairs()[0]
    assert first.prompt == chat(TRAIN[0].question)
    assert first.target == " Joao Moutinho is a soccer player. The screen pass is football. Therefore, the answer is No.</s>"
    assert tune.prompt(TEST) == chat(TEST.question, cue="The answer is")
    assert tune.train_pairs()[0].target == " No.</s>"
    stages = sk.stage_pairs()
    with_knowledge, bare = stages[0][0], stages[1][0]
    assert with_knowledge.prompt.startswith(f"<|user|>\n{DESC}\n\nKnowledge:\n") and "\n\nQ: " in with_knowledge.prompt
    assert with_knowledge.prompt.endswith(f"Q: {TRAIN[0].question}{EOT}\n<|assistant|>\nLet's think step by step.")
    assert bare.prompt == sk.prompt(TRAIN[0]) == chat(TRAIN[0].question)
    assert "Knowledge:\n" in kard.prompt(TEST) and kard.prompt(TEST).endswith(f"{EOT}\n<|assistant|>\nLet's think step by step.")


def test_a_chat_target_ends_in_one_end_of_turn_token(both, tiny_tokenizer):
    plain, chatted = both("std-cot")
    eos = tiny_tokenizer.eos_token_id
    _, plain_ids = _encode(plain.ctx.student.tokenizer, plain.train_pairs()[0])
    _, chat_ids = _encode(chatted.ctx.student.tokenizer, chatted.train_pairs()[0])
    assert chat_ids == plain_ids and chat_ids[-1] == eos and chat_ids[-2] != eos  # EOS is not added twice


def test_a_template_whose_end_of_turn_is_not_eos_gets_both(tiny_tokenizer):
    tok = chat_tokenizer(tiny_tokenizer, "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }} [end]\n{% endfor %}"
                                         "{% if add_generation_prompt %}[assistant] {% endif %}")
    fmt = PromptFormat("chat", tok)
    assert fmt.end_of_turn == " [end]" and fmt.stop_strings == (*STOP_STRINGS, " [end]")  # as the template writes it
    assert fmt.prompt(cot_prompt("", "Is 7 prime?")) == "[user] Q: Is 7 prime? [end]\n[assistant] Let's think step by step."
    _, ids = _encode(tok, SFTExample("x", "p", fmt.target(" Yes.")))
    assert ids[-1] == tok.eos_token_id and tok.decode(ids[:-1]) == " Yes. [end]"


def test_plain_is_the_default_and_unknown_formats_name_the_key(tiny_tokenizer):
    fmt = PromptFormat()
    assert fmt.prompt("Q: x\nA: Let's think step by step.") == "Q: x\nA: Let's think step by step."
    assert fmt.target(" y.") == " y." and fmt.stop_strings == STOP_STRINGS
    with pytest.raises(SettingError, match="prompt_format"):
        StudentConfig(prompt_format="html")
    with pytest.raises(SkinternError, match=r"^student\.prompt_format: chat needs"):
        PromptFormat("chat", tiny_tokenizer)


def chat_config(tmp_path: Path, student: Path, data_dir: Path, **sections) -> Path:
    """test_cli's config of a std-cot run (no untrained evaluation) with student.prompt_format: chat."""
    path = write_config(tmp_path, student, data_dir, eval={"before_training": False}, **sections)
    cfg = yaml.safe_load(path.read_text())
    cfg["student"]["prompt_format"] = "chat"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_chat_without_a_template_fails_before_training(tmp_path, tiny_student_dir, shared_data, capsys):
    config = chat_config(tmp_path, tiny_student_dir, shared_data)
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert "student.prompt_format" in err and "\n" not in err
    assert not (tmp_path / "runs" / "tiny" / "train").exists()


@pytest.fixture(scope="module")
def chat_student_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    from conftest import build_tiny_llama

    path = tmp_path_factory.mktemp("tiny-chat-student")
    build_tiny_llama(len(tiny_tokenizer)).save_pretrained(path)
    chat_tokenizer(tiny_tokenizer).save_pretrained(path)
    return path


class Spy:
    """Records what each Generator is built with and asked, then lets the real one answer."""

    def __init__(self, real):
        self.real, self.stops, self.prompts = real, [], []

    def __call__(self, *args, **kwargs):
        gen = self.real(*args, **kwargs)
        self.stops.append(gen.stop_strings)
        spy = self

        class Recording:
            max_new_tokens = gen.max_new_tokens

            def __call__(self, prompts, max_new_tokens=None) -> list[Generation]:
                spy.prompts += prompts
                return gen(prompts, max_new_tokens)

        return Recording()


def test_a_chat_run_trains_evaluates_exports_and_asks_with_one_prompt(tmp_path, chat_student_dir, shared_data,
                                                                      monkeypatch, capsys):
    config = chat_config(tmp_path, chat_student_dir, shared_data, data={"tasks": ["sports_understanding"]})
    evaluation = Spy(skintern.evaluate.Generator)
    monkeypatch.setattr(skintern.evaluate, "Generator", evaluation)
    assert main(["run", str(config)]) == 0
    run_dir = tmp_path / "runs" / "tiny"
    results = json.loads((run_dir / "results.json").read_text())
    assert [r["method"] for r in results["runs"]] == ["std-cot"] and results["runs"][0]["eval"]["bbh"]["n"] == 3
    assert evaluation.stops == [(*STOP_STRINGS, EOT)]

    cfg = config_from_dict(results["config"], "results.json")
    rd = load_run_data(cfg.data, cfg.eval, cfg.internalization)
    method = build_method("std-cot", cfg, rd, load_student(cfg.student.model, prompt_format="chat"), run_dir)
    tests = rd.tests["bbh"]
    assert sorted(evaluation.prompts) == sorted(method.prompt(ex) for ex in tests)
    assert all(p.startswith("<|user|>\n") and p.endswith("<|assistant|>\nLet's think step by step.")
               for p in evaluation.prompts)

    out = export_run(run_dir, tmp_path / "export")
    assert load_student(str(out)).tokenizer.chat_template == load_student(str(chat_student_dir)).tokenizer.chat_template
    assert json.loads((out / "skintern.json").read_text()) == {"method": "std-cot", "prompt_format": "chat"}
    commands = modelfile_commands((out / "Modelfile").read_text())
    values = dict(commands)
    assert [v for c, v in commands if c == "PARAMETER stop"] == [*STOP_STRINGS, EOT]
    ex = tests[0]
    assert render(values["TEMPLATE"], values["SYSTEM"], ex.question.strip()) == method.prompt(ex)
    card = (out / "README.md").read_text()
    assert f"```\n{method.prompt(ex).replace(ex.question.strip(), '<question>')}\n```" in card

    asked = Spy(skintern.export.Generator)
    monkeypatch.setattr(skintern.export, "Generator", asked)
    assert main(["ask", str(out), ex.question, "--task", ex.task, "--data-dir", str(shared_data),
                 "--max-new-tokens", "4"]) == 0
    assert asked.prompts == [method.prompt(ex)] and asked.stops == [(*STOP_STRINGS, EOT)]


def test_a_chat_format_prompt_is_not_sent_as_a_chat_message(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "x")
    eval_ = {"backend": "openai", "openai": {"base_url": "http://127.0.0.1:9/v1", "model": "m", "api": "chat"}}
    with pytest.raises(SkinternError, match=r"c\.yaml: eval\.openai\.api: expected completions with student\.prompt_format: chat"):
        config_from_dict({"student": {"prompt_format": "chat"}, "eval": eval_}, "c.yaml")
    eval_["openai"]["api"] = "completions"
    assert config_from_dict({"student": {"prompt_format": "chat"}, "eval": eval_}, "c.yaml").student.prompt_format == "chat"
