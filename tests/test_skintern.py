"""SKIntern core: schedule arithmetic, stage prompts, no test leakage, resume mid-schedule, falling loss."""

from __future__ import annotations

import json

import pytest
import yaml
from transformers import TrainerCallback

from skintern.cli import main
from skintern.config import RunConfig, load_config
from skintern.methods.rundata import load_run_data
from skintern.prompts import cot_prompt
from skintern.run import build_method
from skintern.schedule import ScheduleConfig, build_schedule
from skintern.student import load_student
from skintern.train import pair_length

TASKS = ["sports_understanding", "date_understanding"]


def test_old_schedule_keys_give_the_same_stages(tmp_path, capsys):
    """A config of the K-decay-stages era: K + 1 steps, the same keep-rates and epochs, examples floor(N * S_t)."""
    path = tmp_path / "c.yaml"
    path.write_text("methods:\n  skintern:\n    schedule: {decay_stages: 5, initial_examples: 3, epochs_per_stage: 1, "
                    "final_epochs: 2, kind: abrupt, knowledge: false}\n")
    cfg = load_config(path).methods["skintern"].schedule
    assert "old keys" in capsys.readouterr().err
    schedule = build_schedule(cfg)
    assert [(s.knowledge_keep_rate, s.num_examples, s.epochs) for s in schedule.stages] == [(0.0, 3, 1.0)] * 5 + [(0.0, 0, 2.0)]
    path.write_text("methods:\n  skintern:\n    schedule: {decay_stages: 2, examples: false}\n")
    schedule = build_schedule(load_config(path).methods["skintern"].schedule)
    assert [(s.knowledge_keep_rate, s.num_examples, s.epochs) for s in schedule.stages] == [(1.0, 0, 1.0), (0.5, 0, 1.0), (0.0, 0, 1.0)]


def skintern_config(tmp_path, student_dir, data_dir, **overrides) -> RunConfig:
    cfg = RunConfig(name="sk", method="skintern", output_dir=str(tmp_path / "runs"))
    cfg.data.data_dir, cfg.data.tasks, cfg.data.train_per_task = str(data_dir), TASKS, 20
    cfg.student.model = str(student_dir)
    cfg.train.finetune, cfg.train.precision, cfg.train.batch_size = "full", "fp32", 2
    cfg.train.learning_rate, cfg.train.save_steps, cfg.train.max_length = 3e-3, 1, 2048
    cfg.methods["skintern"].schedule = ScheduleConfig(steps=4, examples=2, epochs=4.0)
    cfg.retrieval.embedder = "tfidf"
    cfg.eval.per_task, cfg.eval.max_new_tokens = 2, 8
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def skintern_method(cfg):
    return build_method("skintern", cfg, load_run_data(cfg.data, cfg.eval), load_student(cfg.student.model), cfg.run_dir)


@pytest.fixture
def method(tmp_path, tiny_student_dir, shared_data):
    return skintern_method(skintern_config(tmp_path, tiny_student_dir, shared_data))


def test_stage_prompts_shrink_and_final_stage_is_the_inference_prompt(method):
    per_stage = method.stage_pairs()
    items, _ = method.training_items()
    assert all(len(rows) == len(items) for rows in per_stage.values())
    by_id = {ex.id: ex for ex in items}
    first, final = per_stage[0][0], per_stage[3][0]
    ex = by_id[first.id]
    assert "Knowledge:\nLearning summary:" in first.prompt and first.prompt.count("\nQ: ") + first.prompt.startswith("Q: ") >= 3
    assert final.prompt == method.prompt(ex) == cot_prompt(method.ctx.data.description(ex), ex.question)
    assert first.target == final.target
    mean_len = [sum(len(r.prompt) for r in per_stage[s]) / len(per_stage[s]) for s in range(4)]
    assert mean_len == sorted(mean_len, reverse=True) and mean_len[0] > 2 * mean_len[3]


def test_skintern_trains_only_items_with_knowledge(method):
    items, store = method.training_items()
    assert items and all((ex.task, ex.index) in store for ex in items)
    assert len(items) < len(method.ctx.data.train)


def test_no_test_question_appears_in_any_training_prompt(method):
    tests = method.ctx.data.tests["bbh"]
    assert tests
    for rows in method.stage_pairs().values():
        for row in rows:
            assert not any(t.question in row.prompt for t in tests)
    train_ids = {ex.id for ex in method.ctx.data.train_pool}
    assert not train_ids & {t.id for t in tests}


def test_worked_examples_are_never_the_item_itself(method):
    for ex, rows in zip(method.training_items()[0], method.stage_pairs()[0]):
        assert rows.prompt.count(f"Q: {ex.question.strip()}\n") == 1


class KillInStage(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kw):
        if state.global_step == self.step and "stage-2" in args.output_dir:
            raise KeyboardInterrupt


def test_kill_in_stage_2_resumes_in_stage_2(tmp_path, tiny_student_dir, shared_data, monkeypatch, capsys):
    cfg = skintern_config(tmp_path, tiny_student_dir, shared_data)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))

    import skintern.train as train_module

    original = train_module.WeightedLossTrainer
    seen_dirs = []

    def killing(*args, **kw):
        trainer = original(*args, **kw)
        seen_dirs.append(trainer.args.output_dir)
        trainer.add_callback(KillInStage(2))
        return trainer

    monkeypatch.setattr(train_module, "WeightedLossTrainer", killing)
    assert main(["train", str(path)]) == 130  # the CLI turns the kill into "run the same command again"
    stage_root = tmp_path / "runs" / "sk" / "train" / "skintern"
    assert [p.rsplit("/", 1)[-1] for p in seen_dirs] == ["stage-0", "stage-1", "stage-2"]
    assert (stage_root / "stage-1" / "done.json").is_file() and not (stage_root / "stage-2" / "done.json").exists()
    assert (stage_root / "stage-2" / "checkpoint-1").is_dir()  # saved after step 1; killed in step 2

    seen_dirs.clear()
    monkeypatch.setattr(train_module, "WeightedLossTrainer", lambda *a, **kw: (seen_dirs.append(kw["args"].output_dir), original(*a, **kw))[1])
    capsys.readouterr()
    assert main(["train", str(path)]) == 0
    out = capsys.readouterr().out
    assert [p.rsplit("/", 1)[-1] for p in seen_dirs] == ["stage-2", "stage-3"]  # stages 0-1 are not retrained
    assert "resuming from" in out and "stage-2/checkpoint-" in out
    assert (stage_root / "stage-3" / "done.json").is_file()


def test_progressive_run_loss_falls_and_eval_is_question_only(tmp_path, tiny_student_dir, shared_data, capsys):
    cfg = skintern_config(tmp_path, tiny_student_dir, shared_data)
    cfg.methods["skintern"].schedule.epochs = 8.0
    cfg.compare.methods = ["std-cot", "skintern"]
    cfg.compare.allow_unequal_budgets = True  # 8 SKIntern epochs: enough for the loss to fall on the tiny model
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    assert main(["compare", str(path)]) == 0
    results = json.loads((tmp_path / "runs" / "sk" / "results.json").read_text())
    std, sk = results["runs"]
    stages = sk["train"]["stages"]
    assert len(stages) == 4
    assert stages[-1]["losses"][-1] < 0.8 * stages[0]["losses"][0]
    # inference sees only the question: same prompt tokens per query as Std-CoT on the same items
    assert sk["prompt_tokens_per_query"] == std["prompt_tokens_per_query"]
    report = (tmp_path / "runs" / "sk" / "report.md").read_text()
    assert results["schedule"]["T"] == 4 and "Schedule" in report and "Achieved keep-rate" in report
    achieved = [(s["knowledge_keep_rate"], s["achieved_keep_rate"]) for s in sk["extras"]["schedule"]["stages"]]
    assert achieved[0] == (1.0, 1.0) and achieved[-1] == (0.0, 0.0)  # uncompressed and no knowledge
    assert all(0 < got < 1 for want, got in achieved[1:-1])  # what the compressor really kept, logged per stage
    kept = [(s["num_examples"], s["achieved_num_examples"]) for s in sk["extras"]["schedule"]["stages"]]
    assert kept[0][1] > 0 and all(got <= want and (got > 0) == (want > 0) for want, got in kept), kept
    assert "Examples kept (mean)" in report
    capsys.readouterr()
    assert main(["eval", str(path)]) == 0
    assert f"prompt tokens per query: {std['prompt_tokens_per_query']:.1f}" in capsys.readouterr().out


def test_schedule_command_prints_the_table(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("method: skintern\nmethods:\n  skintern:\n    schedule: {decay_stages: 4, initial_examples: 4}\n")
    assert main(["schedule", str(path)]) == 0
    out = capsys.readouterr().out
    assert "T=5 steps, K=4 examples" in out and "knowledge@0.75 + 3 examples" in out


def test_train_items_repeating_a_test_question_are_left_out(tmp_path, tiny_student_dir, shared_data, capsys):
    cfg = skintern_config(tmp_path, tiny_student_dir, shared_data)
    cfg.data.tasks, cfg.data.train_per_task, cfg.eval.per_task = ["sports_understanding"], None, None
    rd = load_run_data(cfg.data, cfg.eval)
    assert "left out 1 train items whose question is also a test question" in capsys.readouterr().out
    test_questions = {t.question for t in rd.tests["bbh"]}
    assert not any(ex.question in test_questions for ex in rd.train_pool)


def test_missing_knowledge_is_generated_by_the_teacher_when_configured(tmp_path, tiny_student_dir, shared_data):
    from fake_openai import FakeOpenAI

    reply = "Learning summary:\n1. Name the sport of the athlete.\n2. Check the action.\n" \
            "Supplementary knowledge:\n1. Each athlete plays one sport.\n2. Actions belong to sports."
    cfg = skintern_config(tmp_path, tiny_student_dir, shared_data)
    cfg.data.tasks, cfg.data.train_per_task = ["sports_understanding"], 12
    with FakeOpenAI(reply=lambda body: reply) as server:
        cfg.methods["skintern"].missing_knowledge = "teacher"
        cfg.teacher.base_url, cfg.teacher.model = server.base_url, "fake"
        cfg.teacher.cache_path = str(tmp_path / "teacher.sqlite")
        method = skintern_method(cfg)
        rd = method.ctx.data
        items, store = method.training_items()
        missing = [ex for ex in rd.train if (ex.task, ex.index) not in rd.knowledge]
        assert missing and server.answered == len(missing)
    assert items == rd.train  # every item now has knowledge
    assert store.get(missing[0].task, missing[0].index).summary.startswith("1. Name the sport")
    assert (cfg.run_dir / "teacher" / "knowledge.jsonl").is_file()


def test_prompts_over_max_length_drop_their_least_similar_examples(tmp_path, tiny_student_dir, shared_data, capsys):
    cfg = skintern_config(tmp_path, tiny_student_dir, shared_data)
    full = skintern_method(cfg)
    untrimmed = full.stage_pairs()[0]
    tokenizer = full.ctx.student.tokenizer
    lengths = sorted(pair_length(tokenizer, r) for r in untrimmed)
    cfg.train.max_length = lengths[len(lengths) // 2]  # half the stage-0 pairs are too long
    capsys.readouterr()
    trimmed = full.stage_pairs()[0]
    assert "keep fewer examples" in capsys.readouterr().out
    assert len(trimmed) == len(untrimmed)  # no item is lost
    for before, after in zip(untrimmed, trimmed):
        if pair_length(tokenizer, before) <= cfg.train.max_length:
            assert after == before
        else:
            n_before, n_after = before.prompt.count("Q: "), after.prompt.count("Q: ")
            assert n_after < n_before and after.target == before.target
            assert pair_length(tokenizer, after) <= cfg.train.max_length or n_after == 1  # only the item's own Q left
            knowledge = [p.prompt.split("Knowledge:")[1].split("\n\nQ: ")[0] for p in (before, after)]
            assert knowledge[0] == knowledge[1] and knowledge[0].strip()  # the knowledge is kept whole ...
            assert after.prompt.rsplit("Q: ", 1)[1] == before.prompt.rsplit("Q: ", 1)[1]  # ... and the item's question
    # the results record how many examples the stage's prompts really kept, not the schedule's K_t
    kept = [after.prompt.count("Q: ") - 1 for after in trimmed]
    stage0 = full.result_extras()["schedule"]["stages"][0]
    assert stage0["achieved_num_examples"] == pytest.approx(sum(kept) / len(kept))
    assert stage0["achieved_num_examples"] < stage0["num_examples"]
