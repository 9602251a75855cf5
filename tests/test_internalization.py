"""The internalization check: a dev set held out of every method's training, prompted at every stage exactly as
training items are, and a run that scores each stage's student on it with its stage prompt and the bare question."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml

from skintern.cli import main
from skintern.config import RunConfig
from skintern.errors import SkinternError
from skintern.generation import Generation, Generator
from skintern.files import read_jsonl
from skintern.methods.rundata import InternalizationConfig, load_run_data
from skintern.prompts import COT_TRIGGER, augmented_prompt, worked_example
from skintern.report import internalization_verdict
from skintern.results import Internalization, InternalizationStage
from skintern.run import build_method
from skintern.schedule import ScheduleConfig
from skintern.student import load_student
from skintern.train import TrainConfig
from test_skintern import skintern_config


def check_config(tmp_path, student_dir, data_dir, dev_size=4, train_per_task=30) -> RunConfig:
    """test_skintern's tiny SKIntern run with the check on: T = 3, one test item per task, no extra checkpoints."""
    cfg = skintern_config(tmp_path, student_dir, data_dir, name="intern",
                          internalization=InternalizationConfig(enabled=True, dev_size=dev_size))
    cfg.data.train_per_task, cfg.eval.per_task = train_per_task, 1
    cfg.train.epochs, cfg.train.save_steps = 3.0, TrainConfig().save_steps
    cfg.methods["skintern"].schedule = ScheduleConfig(steps=3, epochs=3, examples=2)
    return cfg


def methods(cfg, *names):
    rd = load_run_data(cfg.data, cfg.eval, cfg.internalization)
    return [build_method(name, cfg, rd, load_student(cfg.student.model), cfg.run_dir) for name in names]


def test_dev_prompts_are_the_training_prompts_of_each_stage(tmp_path, tiny_student_dir, shared_data):
    (method,) = methods(check_config(tmp_path, tiny_student_dir, shared_data), "skintern")
    rd = method.ctx.data
    items, store = method.training_items()
    pairs = method.stage_pairs()
    achieved = dict(method.achieved_keep_rates)
    # one builder: training items get from stage_prompts exactly their training prompts
    assert method.stage_prompts(items) == {s: [p.prompt for p in rows] for s, rows in pairs.items()}
    dev_prompts = method.stage_prompts(rd.dev)
    assert method.achieved_keep_rates == achieved  # the dev items do not change what the results report
    stages = method.schedule.stages
    rates = sorted({s.knowledge_keep_rate for s in stages if s.knowledge_keep_rate})
    compressed = method._compressed(rd.dev, store, rates, record_keep_rates=False)
    neighbours = method._neighbours(rd.dev, max(s.num_examples for s in stages))
    train_ids = {ex.id for ex in rd.train}
    for stage in stages:
        assert len(dev_prompts[stage.stage]) == len(rd.dev)
        for ex, prompt in zip(rd.dev, dev_prompts[stage.stage]):
            shots = neighbours[ex.id][: stage.num_examples]
            assert len(shots) == stage.num_examples and {n.id for n in shots} <= train_ids  # never a dev item
            knowledge = compressed[stage.knowledge_keep_rate][ex.id] if stage.knowledge_keep_rate else None
            assert prompt == augmented_prompt(rd.description(ex), ex.question, knowledge,
                                              [worked_example(n.question, rd.rationales[n.id], n.answer) for n in shots])
    assert dev_prompts[stages[-1].stage] == [method.prompt(ex) for ex in rd.dev]  # the last stage: the bare question
    assert "Knowledge:" in dev_prompts[0][0] and dev_prompts[0] != dev_prompts[1]


def test_dev_items_are_seeded_have_knowledge_and_train_no_method(tmp_path, tiny_student_dir, shared_data):
    cfg = check_config(tmp_path, tiny_student_dir, shared_data, dev_size=3, train_per_task=20)
    plain = load_run_data(cfg.data, cfg.eval)
    rd = load_run_data(cfg.data, cfg.eval, cfg.internalization)
    assert len(rd.dev) == 3 and all((ex.task, ex.index) in rd.knowledge for ex in rd.dev)
    assert [ex.id for ex in load_run_data(cfg.data, cfg.eval, cfg.internalization).dev] == [ex.id for ex in rd.dev]
    other = load_run_data(cfg.data, cfg.eval, InternalizationConfig(enabled=True, dev_size=3, dev_seed=1))
    assert [ex.id for ex in other.dev] != [ex.id for ex in rd.dev]
    off = load_run_data(cfg.data, cfg.eval, InternalizationConfig(dev_size=3))
    assert off.train == plain.train and off.train_pool == plain.train_pool and not off.dev
    dev_ids, dev_questions = {ex.id for ex in rd.dev}, [ex.question for ex in rd.dev]
    assert rd.train == [ex for ex in plain.train if ex.id not in dev_ids]
    assert not dev_ids & {ex.id for ex in rd.train_pool}
    std, mt, kard, sk = (build_method(name, cfg, rd, load_student(cfg.student.model), cfg.run_dir)
                         for name in ("std-cot", "mt-cot", "kard", "skintern"))
    pair_lists = [std.train_pairs(), mt.train_pairs(), kard.train_pairs(), *sk.stage_pairs().values()]
    for pairs in pair_lists:
        assert pairs and not dev_ids & {p.id for p in pairs}
        assert not any(q in p.prompt or q in p.target for p in pairs for q in dev_questions)


def test_dev_size_must_leave_items_to_train(tmp_path, tiny_student_dir, shared_data):
    cfg = check_config(tmp_path, tiny_student_dir, shared_data, dev_size=11)  # 11 items with knowledge in all
    with pytest.raises(SkinternError, match=r"^internalization\.dev_size: expected fewer than the 11 training items"):
        load_run_data(cfg.data, cfg.eval, cfg.internalization)
    with pytest.raises(SkinternError, match=r"^dev_size: expected"):
        InternalizationConfig(dev_size=1)


def test_run_with_the_check_writes_the_section_and_the_plot(tmp_path, tiny_student_dir, shared_data, capsys, monkeypatch):
    cfg = check_config(tmp_path, tiny_student_dir, shared_data)
    cfg.data.require_knowledge = True  # both methods train on the same 7 items, 3 epochs each
    cfg.compare.methods = ["std-cot", "skintern", "prompt"]
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    assert main(["compare", str(path)]) == 0
    out = capsys.readouterr().out
    # as soon as its weights exist, before the later methods, so a stopped compare keeps it; saved with the config
    assert out.index("== skintern") < out.index("== internalization check") < out.index("== prompt")
    run_dir = tmp_path / "runs" / "intern"
    section = json.loads((run_dir / "results.json").read_text())["internalization"]
    assert section.pop("seconds") > 0
    saved = json.loads((run_dir / "internalization.json").read_text())
    assert saved["config_digest"] == json.loads((run_dir / "entries" / "skintern.json").read_text())["config_digest"]
    assert {k: v for k, v in saved["section"].items() if k != "seconds"} == section
    assert main(["compare", str(path)]) == 0  # a rerun reads the saved section: nothing is checked again
    assert "== internalization check" not in capsys.readouterr().out
    # without the saved section, it runs once both entries are on disk, not when the list reaches them
    (run_dir / "internalization.json").unlink()
    assert main(["compare", str(path), "--set", "compare.methods=[prompt,skintern,std-cot]"]) == 0
    out = capsys.readouterr().out
    assert out.index("== prompt") < out.index("== internalization check") < out.index("== skintern")
    assert {k: v for k, v in json.loads((run_dir / "results.json").read_text())["internalization"].items()
            if k != "seconds"} == section
    assert len(section["dev_ids"]) == 4 and [s["stage"] for s in section["stages"]] == [0, 1, 2]
    for stage in section["stages"]:
        assert 0 <= stage["stage_prompt_accuracy"] <= 1 and 0 <= stage["bare_accuracy"] <= 1
        assert stage["gap"] == pytest.approx(stage["stage_prompt_accuracy"] - stage["bare_accuracy"])
        assert stage["gap_ci_low"] <= stage["gap"] <= stage["gap_ci_high"]
    for stage in section["stages"]:
        rows = read_jsonl(run_dir / "internalization" / f"stage-{stage['stage']}-bare.jsonl")
        assert [r["id"] for r in rows] == section["dev_ids"]
        assert stage["bare_accuracy"] == sum(r["correct"] for r in rows) / len(rows)
    assert [s["bare_stage"] for s in section["stages"]] == [False, False, True] and section["stages"][-1]["gap"] == 0
    assert section["reference_method"] == "std-cot" and 0 <= section["reference_accuracy"] <= 1
    saved = sorted(p.name for p in (run_dir / "internalization").glob("*.jsonl"))
    assert saved == ["stage-0-bare.jsonl", "stage-0-prompt.jsonl", "stage-1-bare.jsonl", "stage-1-prompt.jsonl",
                     "stage-2-bare.jsonl", "std-cot-bare.jsonl"]
    assert (run_dir / "internalization.png").stat().st_size > 0
    report = (run_dir / "report.md").read_text()
    assert "## Internalization check" in report and "![internalization](internalization.png)" in report
    assert re.search(r"The check took [\d,]+ s\.", report)
    assert re.search(r"Internalization (not shown|shown|inconclusive): by stage 1, the last with knowledge or examples",
                     report)

    # the command on the finished run: same section, from the saved predictions (nothing generated again)
    mtimes = {p: p.stat().st_mtime_ns for p in (run_dir / "internalization").glob("*.jsonl")}
    capsys.readouterr()
    assert main(["internalization", str(run_dir)]) == 0
    assert "results: " in capsys.readouterr().out
    assert {k: v for k, v in json.loads((run_dir / "results.json").read_text())["internalization"].items()
            if k != "seconds"} == section
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    # on a machine without the weights (they are not committed): both methods retrained with the same settings and
    # seed, checked against the fingerprints their evaluations recorded; a reproduced retrain regenerates nothing
    shutil.rmtree(run_dir / "train")
    recorded = run_dir / "predictions" / "std-cot-bbh.jsonl.key.json"
    key = json.loads(recorded.read_text())
    recorded.write_text(json.dumps({**key, "weights": "made-elsewhere"}))  # as if its evaluation used other bytes
    assert main(["internalization", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "== skintern: " in out and "is not on this machine; retraining it" in out
    assert "warning: the retrained std-cot weights differ from those its evaluation recorded (made-elsewhere)" in out
    retrained = json.loads((run_dir / "results.json").read_text())["internalization"]
    assert retrained.pop("retrained") == {"skintern": True, "std-cot": False}
    assert {k: v for k, v in retrained.items() if k != "seconds"} == section
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    report = (run_dir / "report.md").read_text()
    assert "skintern's weights were retrained for the check (same settings and seed) and reproduced its evaluated " \
           "weights byte for byte." in report
    assert "std-cot's weights were retrained for the check (same settings and seed) and differ from its evaluated " \
           "weights" in report
    recorded.write_text(json.dumps(key))
    # answers that are right exactly when the prompt carries knowledge: every stage but the last needs its prompt
    dev = load_run_data(cfg.data, cfg.eval, cfg.internalization).dev
    gold = {f"Q: {ex.question.strip()}\n{COT_TRIGGER}": ex.answer for ex in dev}

    def knowledge_only(self, prompts, max_new_tokens=None):
        answers = [next(a for q, a in gold.items() if p.endswith(q)) if "Knowledge:" in p else "(Z)" for p in prompts]
        return [Generation(f" Therefore, the answer is {a}.", len(p), 8) for p, a in zip(prompts, answers)]

    shutil.rmtree(run_dir / "internalization")
    monkeypatch.setattr(Generator, "__call__", knowledge_only)
    assert main(["internalization", str(run_dir)]) == 0
    section = json.loads((run_dir / "results.json").read_text())["internalization"]
    assert [(s["stage_prompt_accuracy"], s["bare_accuracy"], s["gap"], s["gap_ci_low"]) for s in section["stages"]] == \
        [(1.0, 0.0, 1.0, 1.0), (1.0, 0.0, 1.0, 1.0), (0.0, 0.0, 0.0, 0.0)]
    assert section["reference_accuracy"] == 0.0
    assert "Internalization not shown: by stage 1, the last with knowledge or examples in its prompt, the gap had not " \
           "closed (+100.0 pp, 95 % CI [+100.0, +100.0])" in (run_dir / "report.md").read_text()
    # a config without the check describes a run whose dev items trained: refused
    assert main(["internalization", str(path), "--set", "internalization.enabled=false"]) == 2
    assert "internalization.enabled is off" in capsys.readouterr().err


def _section(bare_first: float, gap: float, ci: tuple[float, float]) -> Internalization:
    stages = [InternalizationStage(0, 1.0, 3, bare_first + 0.2, bare_first, 0.2, 0.0, 0.4),
              InternalizationStage(1, 0.5, 1, 0.4 + gap, 0.4, gap, *ci),
              InternalizationStage(2, 0.0, 0, 0.4, 0.4, 0.0, 0.0, 0.0, bare_stage=True)]
    return Internalization(dev_ids=[f"d{i}" for i in range(25)], stages=stages)


@pytest.mark.parametrize("bare_first, gap, ci, verdict", [
    (0.1, 0.02, (-0.06, 0.08), "Internalization shown: by stage 1, the last with knowledge or examples in its prompt, "
                               "the gap had closed (+2.0 pp, 95 % CI [-6.0, +8.0]), and the bare-question accuracy "
                               "rose from 10.0 % (stage 0) to 40.0 % (stage 2)."),
    (0.1, 0.16, (0.0, 0.36), "Internalization inconclusive: by stage 1, the last with knowledge or examples in its "
                             "prompt, the gap (+16.0 pp, 95 % CI [+0.0, +36.0]) cannot be told from 0 nor from a gap "
                             "of 10 pp or more: too few dev items (internalization.dev_size: 25), and the "
                             "bare-question accuracy rose from 10.0 % (stage 0) to 40.0 % (stage 2)."),
    (0.1, 0.28, (0.04, 0.52), "Internalization not shown: by stage 1, the last with knowledge or examples in its "
                              "prompt, the gap had not closed (+28.0 pp, 95 % CI [+4.0, +52.0]), and the "
                              "bare-question accuracy rose from 10.0 % (stage 0) to 40.0 % (stage 2)."),
    (0.5, 0.02, (-0.06, 0.08), "Internalization not shown: by stage 1, the last with knowledge or examples in its "
                               "prompt, the gap had closed (+2.0 pp, 95 % CI [-6.0, +8.0]), and the bare-question "
                               "accuracy did not rise from 50.0 % (stage 0) to 40.0 % (stage 2)."),
])
def test_a_gap_is_closed_only_when_its_ci_is_narrow(bare_first, gap, ci, verdict):
    """A CI that holds 0 only because 25 dev items make it wide is no evidence that the gap closed."""
    assert internalization_verdict(_section(bare_first, gap, ci)) == verdict
