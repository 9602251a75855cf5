"""Loaders and answer scoring, checked on the real benchmark data and the real teacher rationales."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import pytest

from skintern.data import (
    ANSWER_KINDS,
    DATASETS,
    Example,
    answer_kind,
    bbh_tasks,
    cot_prompt,
    extract_answer,
    is_correct,
    load_bbh,
    load_benchmark,
    normalize_answer,
    resolve_data_dir,
    task_description,
)
from skintern.errors import SkinternError
from skintern.files import read_jsonl

TEACHER = "bbh/teacher/code-davinci-002-cot.jsonl"


@pytest.fixture(scope="module")
def root() -> Path:
    try:
        return resolve_data_dir(None)
    except SkinternError as e:
        pytest.skip(f"real benchmark data not available ({e}); run from the project root")


@pytest.fixture(scope="module")
def bbh_all(root: Path) -> dict[tuple[str, int], Example]:
    return {(e.task, e.index): e for split in ("train", "test") for e in load_bbh(root, split)}


@pytest.fixture(scope="module")
def teacher_by_task(root: Path) -> dict[str, list[dict]]:
    grouped = defaultdict(list)
    for row in read_jsonl(root / TEACHER, required=("task", "index", "rationale", "target")):
        grouped[row["task"]].append(row)
    return grouped


def _states_target(rationale: str, target: str) -> bool:
    """True when the rationale ends with "So the answer is <target>." verbatim."""
    return rationale.rstrip().endswith(f"So the answer is {target}.")


# ---------------------------------------------------------------- teacher agreement, every BBH task


def test_every_bbh_task_has_teacher_rationales(root, teacher_by_task):
    assert len(bbh_tasks(root)) == 27
    assert sorted(teacher_by_task) == bbh_tasks(root)


def _bbh_task_names() -> list[str]:
    """Collected at import so each task is its own test; no data means no cases (pytest skips them)."""
    try:
        return bbh_tasks(None)
    except SkinternError:
        return []


@pytest.mark.parametrize("task", _bbh_task_names())
def test_teacher_answers_extract_to_gold(task, bbh_all, teacher_by_task):
    rows = teacher_by_task[task]
    agree = stated = 0
    for row in rows:
        ex = bbh_all[(task, row["index"])]
        assert normalize_answer(row["target"], ex.kind) == ex.answer
        ok = is_correct(extract_answer(row["rationale"], ex.kind, ex.options), ex)
        agree += ok
        if _states_target(row["rationale"], row["target"]):
            stated += 1
            assert ok, f"{ex.id}: rationale states the gold answer but extraction missed it"
    assert stated > 0.3 * len(rows)
    assert stated <= agree <= stated + 0.05 * len(rows)


def test_teacher_overall_accuracy_matches_published(bbh_all, teacher_by_task):
    """code-davinci-002 CoT scores 73.9% on BBH (Suzgun et al., 2022); our scoring must land close."""
    rows = [r for rs in teacher_by_task.values() for r in rs]
    hits = sum(is_correct(extract_answer(r["rationale"], e.kind, e.options), e)
               for r in rows for e in [bbh_all[(r["task"], r["index"])]])
    assert 0.72 <= hits / len(rows) <= 0.76


# ---------------------------------------------------------------- extraction and normalisation


@pytest.mark.parametrize(
    ("text", "kind", "options", "expected"),
    [
        ("So the answer is (C).", "choice", (), "(C)"),
        ("Therefore, the answer is (b) the moon.", "choice", ("the sun", "the moon"), "(B)"),
        ("The answer is B.", "choice", (), "(B)"),
        ("The answer is (2).", "choice", (), "(B)"),
        ("so THE ANSWER IS the moon.", "choice", ("the sun", "the moon"), "(B)"),
        ("So the answer is: option (C), the third one.", "choice", (), "(C)"),
        ("So the answer is (A) or (B).", "choice", (), None),
        ("So the answer is (E).", "choice", ("x", "y"), None),
        ("First (A), on reflection (C).", "choice", (), "(C)"),
        ("(i) is a step, not an option. I pick the sun.", "choice", ("the sun", "the moon"), "(A)"),
        ("no letter here", "choice", (), None),
        ("the answer is No.", "yes_no", (), "No"),
        ("So the answer is yes.", "yes_no", (), "Yes"),
        ("Yes at first; the answer is no", "yes_no", (), "No"),
        ("So the answer is yes or no.", "yes_no", (), None),
        ("so it must be true", "true_false", (), "True"),
        ("So the answer is False.", "true_false", (), "False"),
        ("So the answer is invalid.", "validity", (), "invalid"),
        ("The argument is valid", "validity", (), "valid"),
        ("Therefore, the answer is 3.5.", "number", (), "3.5"),
        ("So the answer is -24.", "number", (), "-24"),
        ("So the answer is 135,210.", "number", (), "135210"),
        ("The answer is $18 per day.", "number", (), "18"),
        ("3 + 4 = 7\n#### 1,234", "number", (), "1234"),
        ("We get 12 and then 15", "number", (), "15"),
        ("So the answer is ] ) }.", "text", (), "] ) }"),
        ("So the answer is ])}.", "text", (), "] ) }"),
        ("So the answer is apple  Banana cherry.", "text", (), "apple banana cherry"),
        ("So the answer is it&t malton.", "text", (), "it&t malton"),
        ("The answer is $\\frac{1}{2}$.", "text", (), "\\frac{1}{2}"),
        ("some work\nx = 4\n", "text", (), "x=4"),
    ],
)
def test_extract_answer(text, kind, options, expected):
    assert extract_answer(text, kind, options) == expected


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("yes", "yes_no", "Yes"),
        ("NO.", "yes_no", "No"),
        ("true", "true_false", "True"),
        ("Invalid", "validity", "invalid"),
        ("(b)", "choice", "(B)"),
        ("B", "choice", "(B)"),
        ("(3)", "choice", "(C)"),
        ("1,234.0", "number", "1234"),
        ("0.50", "number", "0.5"),
        ("-0", "number", "0"),
        ("]  ]", "text", "] ]"),
        ("<>)", "text", "< > )"),
        ("Apple   banana ", "text", "apple banana"),
        ("$3 + 2 \\sqrt{2}$", "text", "3+2\\sqrt{2}"),
        ("\\boxed{\\dfrac{1}{3}}", "text", "\\frac{1}{3}"),
    ],
)
def test_normalize_answer(text, kind, expected):
    assert normalize_answer(text, kind) == expected
    assert normalize_answer(expected, kind) == expected


@pytest.mark.parametrize(
    ("targets", "kind"),
    [
        (["(A)", "(C)"], "choice"),
        (["yes", "no", "Yes"], "yes_no"),
        (["True", "False"], "true_false"),
        (["valid", "invalid"], "validity"),
        (["24", "-3"], "number"),
        (["] )", "}"], "text"),
        (["apple banana"], "text"),
        (["(A)"] * 40 + ["Monsters, Inc"], "choice"),
    ],
)
def test_answer_kind(targets, kind):
    assert answer_kind(targets) == kind


def test_is_correct_compares_canonical_forms():
    ex = Example("bbh", "sports_understanding", 0, "q", normalize_answer("yes", "yes_no"), "yes_no")
    assert ex.answer == "Yes" and ex.id == "bbh/sports_understanding/0"
    assert is_correct("yes", ex) and is_correct("Yes", ex)
    assert not is_correct("No", ex) and not is_correct(None, ex)


def test_unknown_kind_is_rejected():
    with pytest.raises(SkinternError, match="unknown answer kind"):
        normalize_answer("x", "essay")


# ---------------------------------------------------------------- loaders on the real data


def test_bbh_split_sizes_match_split_json(root):
    split = json.loads((root / "bbh" / "split.json").read_text())
    train, test = load_bbh(root, "train"), load_bbh(root, "test")
    assert (len(train), len(test)) == (3907, 2604)
    for task, parts in split.items():
        assert sorted(e.index for e in test if e.task == task) == sorted(parts["test"])
    assert not {e.id for e in train} & {e.id for e in test}


@pytest.mark.parametrize("name", DATASETS)
def test_every_loader_returns_sane_examples(root, name):
    examples = load_benchmark(name, root)
    assert examples and len({e.id for e in examples}) == len(examples)
    for e in examples:
        assert e.dataset == name and e.kind in ANSWER_KINDS
        assert e.question.strip() and e.answer.strip()
        if e.kind == "choice" and name != "bbh":
            assert e.options and "Options:\n(" in e.question
    expected = {"bbsub": {"choice"}, "arc-easy": {"choice"}, "arc-challenge": {"choice"}, "gsm8k": {"number"},
                "agieval": {"choice", "text"}, "bbh": set(ANSWER_KINDS)}
    assert {e.kind for e in examples} == expected[name]


def test_bbh_task_kinds(root):
    kinds = {e.task: e.kind for e in load_bbh(root, "test")}
    assert kinds["sports_understanding"] == "yes_no" and kinds["navigate"] == "yes_no"
    assert kinds["boolean_expressions"] == "true_false" and kinds["formal_fallacies"] == "validity"
    assert kinds["object_counting"] == "number" and kinds["multistep_arithmetic_two"] == "number"
    assert kinds["word_sorting"] == "text" and kinds["dyck_languages"] == "text"
    assert kinds["ruin_names"] == "choice" and kinds["date_understanding"] == "choice"


def test_agieval_question_format(root):
    ex = load_benchmark("agieval", root, tasks=["lsat-ar"], limit_per_task=1)[0]
    assert ex.kind == "choice" and ex.answer == "(C)"
    assert "\nOptions:\n(A) Mon." in ex.question and ex.question.startswith("Of the eight students")
    math = load_benchmark("agieval", root, tasks=["math"], limit_per_task=5)
    assert [e.kind for e in math] == ["text"] * 5 and math[0].answer == "(3,4]"


def test_gsm8k_gold_and_splits(root):
    assert load_benchmark("gsm8k", root, limit_per_task=1)[0].answer == "18"
    assert len(load_benchmark("gsm8k", root, split="train")) == 7473


def test_limit_per_task_keeps_file_order(root):
    examples = load_benchmark("bbsub", root, limit_per_task=3)
    assert len(examples) == 3 * 24
    assert [e.index for e in examples if e.task == "anachronisms"] == [0, 1, 2]
    assert examples == load_benchmark("bbsub", root, limit_per_task=3)


def test_cot_prompt_and_description(root):
    assert task_description(root, "navigate").startswith("Given a series of navigation instructions")
    prompt = cot_prompt(root, "dyck_languages")
    assert prompt.startswith("Correctly close a Dyck-n word.") and prompt.count("Q:") == 3
    assert "canary" not in prompt and "-----" not in prompt


# ---------------------------------------------------------------- bad input


def _write_bbh(tmp_path: Path, split: dict, examples: list[dict]) -> Path:
    (tmp_path / "bbh").mkdir()
    (tmp_path / "bbh" / "split.json").write_text(json.dumps(split))
    (tmp_path / "bbh" / "t.json").write_text(json.dumps({"examples": examples}))
    return tmp_path


def test_missing_data_dir(tmp_path, monkeypatch):
    with pytest.raises(SkinternError, match=r"data dir not found: .*nope .*SKINTERN_DATA_DIR"):
        resolve_data_dir(tmp_path / "nope")
    monkeypatch.setenv("SKINTERN_DATA_DIR", str(tmp_path))
    assert resolve_data_dir() == tmp_path


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    (tmp_path / "agieval").mkdir()
    path = tmp_path / "agieval" / "x.jsonl"
    path.write_text('{"question": "q", "options": null, "answer": "1"}\n{"question": \n')
    with pytest.raises(SkinternError, match=re.escape(f"{path}:2: malformed JSON")):
        load_benchmark("agieval", tmp_path)


def test_bad_records_name_file_and_field(tmp_path):
    (tmp_path / "agieval").mkdir()
    path = tmp_path / "agieval" / "x.jsonl"
    path.write_text('{"question": "q", "options": ["(A)a", "(B)b"], "label": "E"}\n')
    with pytest.raises(SkinternError, match=re.escape(f"{path}: record 1: field 'label'")):
        load_benchmark("agieval", tmp_path)
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "test.jsonl").write_text('{"question": "q", "answer": "no marker"}\n')
    with pytest.raises(SkinternError, match=r"test.jsonl: record 1: field 'answer' must end with '#### <number>'"):
        load_benchmark("gsm8k", tmp_path)
    (tmp_path / "bbsub").mkdir()
    (tmp_path / "bbsub" / "b.json").write_text(json.dumps({"examples": [{"input": "q", "target": "maybe"}]}))
    with pytest.raises(SkinternError, match=r"b.json: example 0: target 'maybe' is not an option label"):
        load_benchmark("bbsub", tmp_path)


def test_unknown_task_lists_valid_names(root):
    with pytest.raises(SkinternError, match=r"unknown BBH task 'nope'; valid tasks include: boolean_expressions"):
        load_bbh(root, "test", ["nope"])
    with pytest.raises(SkinternError, match=r"unknown AGIEval task 'nope'"):
        load_benchmark("agieval", root, tasks=["nope"])


def test_unknown_dataset_and_split(root):
    with pytest.raises(SkinternError, match=r"unknown dataset 'mmlu'; expected one of bbh, bbsub"):
        load_benchmark("mmlu", root)
    with pytest.raises(SkinternError, match=r"unknown BBH split 'dev'"):
        load_bbh(root, "dev")


def test_empty_split_names_split_file(tmp_path):
    data = _write_bbh(tmp_path, {"t": {"train": [0], "test": []}}, [{"input": "q", "target": "Yes"}])
    assert [e.answer for e in load_bbh(data, "train")] == ["Yes"]
    with pytest.raises(SkinternError, match=re.escape(f"{data / 'bbh' / 'split.json'}: split 'test' has no examples")):
        load_bbh(data, "test")


def test_split_index_out_of_range(tmp_path):
    data = _write_bbh(tmp_path, {"t": {"train": [5], "test": []}}, [{"input": "q", "target": "Yes"}])
    with pytest.raises(SkinternError, match=r"split.json: task 't': index 5 out of range"):
        load_bbh(data, "train")


def test_missing_target_field(tmp_path):
    data = _write_bbh(tmp_path, {"t": {"train": [0], "test": []}}, [{"input": "q"}])
    with pytest.raises(SkinternError, match=r"t.json: example 0: field 'target' must be a non-empty string"):
        load_bbh(data, "train")
