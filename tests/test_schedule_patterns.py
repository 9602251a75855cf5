"""The schedule's shapes (patterns, T, K), the seeded random draw of examples, the knowledge-part ablations
and `skintern schedule` (the stage table, without a model)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_skintern import skintern_config, skintern_method

from skintern.cli import main
from skintern.config import load_config
from skintern.report import _schedule_summary, _schedule_table
from skintern.results import Results
from skintern.schema import SettingError
from skintern.schedule import PATTERNS, ScheduleConfig, build_schedule, pick_examples

REPO = Path(__file__).resolve().parents[1]

RATES = {  # S_t by pattern and T; exponential with λ = 3
    ("linear", 3): [1, 0.5, 0],
    ("linear", 4): [1, 2 / 3, 1 / 3, 0],
    ("linear", 7): [1, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6, 0],
    ("exponential", 3): [1, 0.182426, 0],
    ("exponential", 4): [1, 0.334759, 0.090031, 0],
    ("exponential", 7): [1, 0.585915, 0.334759, 0.182426, 0.090031, 0.033990, 0],
    ("inverse-exponential", 3): [1, 0.817574, 0],
    ("inverse-exponential", 4): [1, 0.909969, 0.665241, 0],
    ("inverse-exponential", 7): [1, 0.966010, 0.909969, 0.817574, 0.665241, 0.414085, 0],
    ("abrupt", 3): [1, 1, 0],
    ("abrupt", 4): [1, 1, 1, 0],
    ("abrupt", 7): [1, 1, 1, 1, 1, 1, 0],
}
EXAMPLES = {  # floor(K * S_t) for K = 3 and K = 6
    ("linear", 3): ([3, 1, 0], [6, 3, 0]),
    ("linear", 4): ([3, 2, 1, 0], [6, 4, 2, 0]),
    ("linear", 7): ([3, 2, 2, 1, 1, 0, 0], [6, 5, 4, 3, 2, 1, 0]),
    ("exponential", 3): ([3, 0, 0], [6, 1, 0]),
    ("exponential", 4): ([3, 1, 0, 0], [6, 2, 0, 0]),
    ("exponential", 7): ([3, 1, 1, 0, 0, 0, 0], [6, 3, 2, 1, 0, 0, 0]),
    ("inverse-exponential", 3): ([3, 2, 0], [6, 4, 0]),
    ("inverse-exponential", 4): ([3, 2, 1, 0], [6, 5, 3, 0]),
    ("inverse-exponential", 7): ([3, 2, 2, 2, 1, 1, 0], [6, 5, 5, 4, 3, 2, 0]),
    ("abrupt", 3): ([3, 3, 0], [6, 6, 0]),
    ("abrupt", 4): ([3, 3, 3, 0], [6, 6, 6, 0]),
    ("abrupt", 7): ([3] * 6 + [0], [6] * 6 + [0]),
}


@pytest.mark.parametrize("pattern, T", list(RATES), ids=lambda v: str(v))
def test_keep_rates_and_example_counts(pattern, T):
    for K, examples in zip((0, 3, 6), ([0] * T, *EXAMPLES[pattern, T])):
        schedule = build_schedule(ScheduleConfig(pattern=pattern, steps=T, examples=K, epochs=12.0))
        assert [s.knowledge_keep_rate for s in schedule.stages] == pytest.approx(RATES[pattern, T], abs=5e-7)
        assert [s.num_examples for s in schedule.stages] == examples, K
        assert [s.epochs for s in schedule.stages] == pytest.approx([12 / T] * T)
        assert [s.final for s in schedule.stages] == [False] * (T - 1) + [True] and schedule.stages[-1].bare
        assert schedule.stages[0].knowledge_keep_rate == 1.0 and schedule.stages[-1].knowledge_keep_rate == 0.0


def test_paper_defaults_and_an_explicit_pattern():
    paper = build_schedule(ScheduleConfig())
    assert (paper.pattern, paper.T, paper.K) == ("linear", 4, 3)
    assert [(s.knowledge_keep_rate, s.num_examples, s.epochs) for s in paper.stages] == \
        [(1.0, 3, 3.0), (2 / 3, 2, 3.0), (1 / 3, 1, 3.0), (0.0, 0, 3.0)]
    explicit = build_schedule(ScheduleConfig(pattern=[1, 0.5, 0.5, 0], examples=3, epochs=8.0, final_epochs=2.0))
    assert explicit.pattern == "explicit" and explicit.T == 4
    assert [(s.knowledge_keep_rate, s.num_examples, s.epochs) for s in explicit.stages] == \
        [(1.0, 3, 2.0), (0.5, 1, 2.0), (0.5, 1, 2.0), (0.0, 0, 2.0)]
    uneven = build_schedule(ScheduleConfig(steps=3, epochs=6.0, final_epochs=2.0))
    assert [s.epochs for s in uneven.stages] == [2.0, 2.0, 2.0]
    uneven = build_schedule(ScheduleConfig(steps=3, epochs=5.0, final_epochs=1.0))
    assert [s.epochs for s in uneven.stages] == [2.0, 2.0, 1.0]


@pytest.mark.parametrize("bad, key", [
    (dict(pattern=[0.9, 0.5, 0]), "pattern"),  # not starting at 1
    (dict(pattern=[1, 0.4, 0.6, 0]), "pattern"),  # rising
    (dict(pattern=[1, 0.5, 0.1]), "pattern"),  # not ending at 0: the last step must be the bare question
    (dict(pattern=[1]), "pattern"),
    (dict(pattern="cosine"), "pattern"),
    (dict(pattern=[1, 0.5, 0], steps=4), "steps"),
    (dict(steps=1), "steps"),
    (dict(epochs=0.0), "epochs"),
    (dict(epochs=4.0, final_epochs=4.0), "final_epochs"),
    (dict(examples=-1), "examples"),
    (dict(examples_pick="bottom"), "examples_pick"),
    (dict(knowledge_parts=["summary", "facts"]), "knowledge_parts"),
    (dict(knowledge_parts=["summary", "summary"]), "knowledge_parts"),
], ids=lambda v: str(v))
def test_bad_schedules_name_the_field(bad, key):
    with pytest.raises(SettingError) as e:
        ScheduleConfig(**bad)
    assert e.value.key == key and str(e.value).startswith(f"{key}: ") and "\n" not in str(e.value)


def test_a_bad_explicit_pattern_is_one_line_naming_the_key(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("methods:\n  skintern:\n    schedule:\n      pattern: [1, 0.5, 0.7, 0]\n")
    assert main(["schedule", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"skintern: error: {path}: methods.skintern.schedule.pattern: expected values that never rise, " \
                  "got [1.0, 0.5, 0.7, 0.0]"


# ---------------------------------------------------------------- the random draw of examples


def test_random_draws_are_seeded_redrawn_per_step_and_within_the_top_k():
    top = [f"n{i}" for i in range(6)]
    ids = [f"task/{i}" for i in range(40)]
    for count in (0, 1, 3, 5, 6):
        for item in ids:
            draw = pick_examples(top, count, "random", 42, 1, item)
            assert len(draw) == count and set(draw) <= set(top)
            assert draw == sorted(draw, key=top.index)  # similarity order: a too-long prompt drops the least similar
            assert draw == pick_examples(top, count, "random", 42, 1, item)
    step1 = [pick_examples(top, 3, "random", 42, 1, item) for item in ids]
    assert step1 != [pick_examples(top, 3, "random", 42, 2, item) for item in ids]  # re-drawn each step
    assert step1 != [pick_examples(top, 3, "random", 43, 1, item) for item in ids]  # and with the seed
    assert len({tuple(d) for d in step1}) > 5  # items draw differently
    assert pick_examples(top, 3, "top", 42, 1, "task/0") == ["n0", "n1", "n2"]
    assert pick_examples(top[:2], 3, "random", 42, 1, "task/0") == ["n0", "n1"]  # fewer neighbours than asked


def test_random_draws_are_the_same_in_another_process():
    code = ("from skintern.schedule import pick_examples\n"
            "print([pick_examples(list(range(6)), 3, 'random', 7, s, f'x/{i}') for s in (1, 2) for i in range(5)])")
    env = {"PYTHONPATH": str(REPO / "src"), "PYTHONHASHSEED": "random"}
    runs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
            for _ in range(2)]
    here = [pick_examples(list(range(6)), 3, "random", 7, s, f"x/{i}") for s in (1, 2) for i in range(5)]
    assert runs[0] == runs[1] == f"{here}\n"


def test_stage_prompts_carry_the_drawn_examples(tmp_path, tiny_student_dir, shared_data, monkeypatch):
    cfg = skintern_config(tmp_path, tiny_student_dir, shared_data)
    cfg.methods["skintern"].schedule = ScheduleConfig(steps=4, examples=3, epochs=4.0, examples_pick="random")
    method = skintern_method(cfg)
    monkeypatch.setattr(method, "_compressor", lambda: HalfCompressor([]))
    items, _ = method.training_items()
    neighbours = method._neighbours(items, 3)
    per_stage = method.stage_pairs()
    for stage in method.schedule.stages:
        for ex, pair in zip(items, per_stage[stage.stage]):
            drawn = method.stage_examples(ex, stage, neighbours[ex.id])
            assert len(drawn) == stage.num_examples and set(n.id for n in drawn) <= set(n.id for n in neighbours[ex.id])
            shown = [n for n in neighbours[ex.id] if f"Q: {n.question.strip()}\n" in pair.prompt]
            assert shown == drawn
    stage1, stage2 = method.schedule.stages[1:3]
    redrawn = sum(method.stage_examples(ex, stage1, neighbours[ex.id])[:1] != method.stage_examples(ex, stage2, neighbours[ex.id])
                  for ex in items)
    assert redrawn > 0


# ---------------------------------------------------------------- knowledge parts


class HalfCompressor:
    """Below keep-rate 1, keeps the first half of each text (in characters) and records what it compressed."""

    def __init__(self, seen: list[str]):
        self.seen = seen

    def compress_many(self, texts, rate):
        if rate == 1.0:
            return list(texts)
        self.seen.extend(texts)
        return [t[: len(t) // 2] for t in texts]


def stage_prompts(tmp_path, tiny_student_dir, shared_data, monkeypatch, parts, steps=2):
    cfg = skintern_config(tmp_path, tiny_student_dir, shared_data)
    cfg.methods["skintern"].schedule = ScheduleConfig(steps=steps, examples=2, epochs=float(steps), knowledge_parts=parts)
    method = skintern_method(cfg)
    seen: list[str] = []
    monkeypatch.setattr(method, "_compressor", lambda: HalfCompressor(seen))
    return method, method.stage_pairs(), seen


@pytest.mark.parametrize("keep, drop", [("summary", "supplementary"), ("supplementary", "summary")])
def test_each_knowledge_part_switch_removes_exactly_that_part(tmp_path, tiny_student_dir, shared_data, monkeypatch, keep, drop):
    full_method, full, _ = stage_prompts(tmp_path, tiny_student_dir, shared_data, monkeypatch, ["summary", "supplementary"])
    method, part, _ = stage_prompts(tmp_path, tiny_student_dir, shared_data, monkeypatch, [keep])
    store = method.ctx.data.knowledge
    headers = {"summary": "Learning summary:", "supplementary": "Supplementary knowledge:"}
    assert [p.id for p in part[0]] == [p.id for p in full[0]]
    for whole, one in zip(full[0], part[0]):  # step 0: uncompressed knowledge
        ex = next(ex for ex in method.ctx.data.train if ex.id == whole.id)
        record = store.get(ex.task, ex.index)
        blocks = {"summary": f"Learning summary:\n{record.summary}",
                  "supplementary": f"Supplementary knowledge:\n{record.knowledge}"}
        both = f"{blocks['summary']}\n{blocks['supplementary']}".strip()
        assert both in whole.prompt and one.prompt == whole.prompt.replace(both, blocks[keep].strip())
        assert headers[drop] not in one.prompt and headers[keep] in one.prompt and one.target == whole.target
    assert [p.prompt for p in part[1]] == [p.prompt for p in full[1]]  # the bare question, unchanged


def test_compression_applies_to_the_remaining_parts(tmp_path, tiny_student_dir, shared_data, monkeypatch):
    method, per_stage, seen = stage_prompts(tmp_path, tiny_student_dir, shared_data, monkeypatch, ["summary"], steps=3)
    store = method.ctx.data.knowledge
    items, _ = method.training_items()
    assert seen == [f"Learning summary:\n{store.get(ex.task, ex.index).summary}" for ex in items]
    assert all("Supplementary knowledge:" not in p.prompt for rows in per_stage.values() for p in rows)
    assert all(f"Knowledge:\n{seen[i][: len(seen[i]) // 2].strip()}\n\n" in p.prompt for i, p in enumerate(per_stage[1]))


def test_no_knowledge_parts_is_no_knowledge(tmp_path, tiny_student_dir, shared_data, monkeypatch):
    none_method, none, seen = stage_prompts(tmp_path, tiny_student_dir, shared_data, monkeypatch, [], steps=3)
    assert not seen and all(s.knowledge_keep_rate == 0 for s in none_method.schedule.stages)
    assert all("Knowledge:" not in p.prompt for rows in none.values() for p in rows)
    assert none_method.training_items()[0] == list(none_method.ctx.data.train)  # items without knowledge train too
    assert [s.num_examples for s in none_method.schedule.stages] == [2, 1, 0]


# ---------------------------------------------------------------- the table: CLI and report


COMPARE_CPU_TABLE = """\
SKIntern schedule (linear, T=4 steps, K=3 examples, the most similar; knowledge: summary + supplementary)
step  S_t (knowledge keep-rate)  examples  epochs  input
   0                      1.00         3       1  knowledge@1.00 + 3 examples + question
   1                      0.67         2       1  knowledge@0.67 + 2 examples + question
   2                      0.33         1       1  knowledge@0.33 + 1 examples + question
   3                      0.00         0       1  bare question (= inference prompt)
"""


def test_schedule_command_prints_the_table_without_a_model(capsys, monkeypatch):
    import transformers

    def no_model(*args, **kwargs):
        pytest.fail("skintern schedule loaded a model")

    for auto in (transformers.AutoModel, transformers.AutoModelForCausalLM, transformers.AutoTokenizer):
        monkeypatch.setattr(auto, "from_pretrained", no_model)
    assert main(["schedule", str(REPO / "configs" / "compare-cpu.yaml")]) == 0
    assert capsys.readouterr().out == COMPARE_CPU_TABLE
    assert main(["schedule", str(REPO / "configs" / "compare-cpu.yaml"), "--set", "methods.skintern.schedule.pattern=exponential",
                 "--set", "methods.skintern.schedule.examples_pick=random"]) == 0
    out = capsys.readouterr().out
    assert "(exponential, T=4 steps, K=3 examples, drawn at random from the top-K;" in out
    assert "   1                      0.33         1       1  knowledge@0.33 + 1 examples + question" in out


def test_report_draws_the_new_schedule_dict():
    schedule = build_schedule(ScheduleConfig(pattern="inverse-exponential", steps=3, examples=6, knowledge_parts=["summary"]))
    d = schedule.to_dict()
    assert {k: d[k] for k in ("pattern", "T", "K", "examples_pick", "knowledge_parts")} == \
        {"pattern": "inverse-exponential", "T": 3, "K": 6, "examples_pick": "top", "knowledge_parts": ["summary"]}
    assert _schedule_summary(d) == ("Progressive schedule (inverse-exponential, T = 3 steps, K = 6 examples picked top, "
                                    "knowledge: summary).")
    assert [row[2] for row in _schedule_table(d).rows] == ["6", "4", "0"]
    assert _schedule_summary({"K": 5, "N": 3, "stages": []}) == "Progressive schedule (K = 5, N = 3)."  # older results
    Results.from_dict({"name": "r", "runs": [{"method": "skintern", "eval": {}}], "schedule": d})


def test_every_pattern_is_tested():
    assert {p for p, _ in RATES} == set(PATTERNS)


@pytest.mark.parametrize("overrides, stages", [
    (["schedule.decay_stages=2", "schedule.epochs_per_stage=1.5"], [(1.0, 3, 1.5), (0.5, 1, 1.5), (0.0, 0, 1.5)]),
    (["schedule.epochs_per_stage=0.5", "schedule.final_epochs=2.5"],
     [(1.0, 3, 0.5), (2 / 3, 2, 0.5), (1 / 3, 1, 0.5), (0.0, 0, 2.5)]),
    (["schedule.kind=abrupt", "schedule.knowledge=false"], [(0.0, 3, 1.0)] * 3 + [(0.0, 0, 1.0)]),
    (["schedule.examples=false"], [(1.0, 0, 1.0), (2 / 3, 0, 1.0), (1 / 3, 0, 1.0), (0.0, 0, 1.0)]),
], ids=["K=2", "final", "abrupt-no-knowledge", "no-examples"])
def test_old_ablation_overrides_of_docs_results_still_apply(overrides, stages, capsys):
    """The ablation commands in docs/results.md set old keys over a config with the current ones."""
    cfg = load_config(REPO / "configs" / "compare-cpu.yaml", overrides)
    assert "old keys" in capsys.readouterr().err
    got = [(s.knowledge_keep_rate, s.num_examples, s.epochs) for s in build_schedule(cfg.methods["skintern"].schedule).stages]
    assert [v for row in got for v in row] == pytest.approx([v for row in stages for v in row])
