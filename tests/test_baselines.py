"""The paper's remaining baselines behind the method seam: answer-only zero-shot and fine-tuning, knowledge-
augmented fine-tuning, KARD's BM25 retriever, and the teacher's row (tiny student, fixed items)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from skintern.config import config_from_dict
from skintern.data import Example
from skintern.errors import SkinternError
from skintern.files import read_jsonl
from skintern.methods.base import AnswerOnly
from skintern.knowledge import KnowledgeRecord, KnowledgeStore
from skintern.methods.kard import KARD, KARDSettings
from skintern.methods.rundata import RunData
from skintern.methods.teacher import Teacher, TeacherSettings
from skintern.prompts import cot_prompt
from skintern.report import render_report
from skintern.results import DatasetScore, Entry, QueryFlops, Results
from skintern.retrieval import BM25Retriever, Passage, load_passages
from skintern.run import build_method, evaluate_method
from skintern.student import Student
from skintern.teacher.config import TeacherConfig
from tests.fake_openai import FakeOpenAI
from tests.test_fair_floor import SPORTS, chat_tokenizer, untrained
from tests.test_methods import DESC, RATIONALES, TEST, TRAIN, Recorder, cfg, make, sports  # noqa: F401  (fixtures)


def test_fine_tune_trains_and_answers_without_a_rationale(cfg, make):
    cfg.methods["fine-tune"].answer_max_new_tokens = 5
    method = make("fine-tune")
    pairs = method.train_pairs()
    assert [(p.id, p.prompt, p.target) for p in pairs[:2]] == [
        (TRAIN[0].id, f'{DESC}\n\nQ: Is the following sentence plausible? "Joao Moutinho caught the screen pass."\n'
                      "A: The answer is", " No."),
        (TRAIN[1].id, f'{DESC}\n\nQ: Is the following sentence plausible? "Kyle Palmieri was called for slashing."\n'
                      "A: The answer is", " Yes."),
    ]
    generate = Recorder(" No.")
    assert [[g.text for g in passes] for passes in method.infer([TEST], generate)] == [[" No."]]
    assert generate.calls == [([f"{DESC}\n\nQ: {TEST.question}\nA: The answer is"], 5)]
    assert method.result_extras() == {"answer_max_new_tokens": 5}


def test_zero_shot_asks_the_untrained_student_for_the_answer_at_once(make, tiny_model):
    method = make("zero-shot")
    fitted = method.fit()
    assert not method.trains and fitted.stats is None and fitted.model is tiny_model
    assert isinstance(method, AnswerOnly)
    generate = Recorder(" No.")
    method.infer([TEST], generate)
    assert generate.calls == [([
        f"{DESC}\n\nQ: {TEST.question}\n"
        'Reply only with the sentence "The answer is X." where X is Yes or No.\nA: The answer is'], method.ctx.caps.answer)]


def test_zero_shot_under_a_chat_template_starts_the_reply_with_the_answer(tiny_tokenizer, tmp_path):
    tok = chat_tokenizer(tiny_tokenizer)
    direct = 'Reply only with the sentence "The answer is X." where X is Yes or No.'
    assert untrained("zero-shot", tok, tmp_path).prompt(SPORTS) == (
        f"<|user|>\n{DESC}\n\nQ: {SPORTS.question}\n{direct}</s>\n<|assistant|>\nThe answer is")


# ---------------------------------------------------------------- BM25 and knowledge-augmented fine-tuning

PASSAGES = [
    {"text": "Kyle Palmieri is an American ice hockey player."},
    {"text": "A touchdown scores six points in American football."},
    {"text": "Joao Moutinho is a Portuguese footballer."},
]


def passage_file(tmp_path, rows=PASSAGES) -> str:
    path = tmp_path / "passages.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_bm25_returns_the_best_matching_passages_best_first():
    corpus = [Passage("p0", "The cat sat on the mat."), Passage("p1", "A hockey player was called for slashing."),
              Passage("p2", "Slashing is a hockey penalty; slashing with the stick."), Passage("p3", "Dogs chase cats."),
              Passage("own", "Palmieri slashing hockey hockey.", question="Was Palmieri slashing in hockey?")]
    retriever = BM25Retriever(corpus)
    query = Example("bbh", "t", 9, "Was Palmieri slashing in hockey?", "Yes", "yes_no")
    assert [p.id for p in retriever.top_k(query, 3)] == ["p2", "p1"]  # never its own passage; none without a shared word
    assert [p.id for p in retriever.top_k(query, 1)] == ["p2"]
    cat = Example("bbh", "t", 10, "Where did the cat sit?", "mat", "text")
    assert [p.id for p in retriever.top_k(cat, 3)] == ["p0", "p3"]  # stemmed: "cat" matches "cats" too, below p0
    assert retriever.top_k(Example("bbh", "t", 11, "Is it so?", "Yes", "yes_no"), 3) == []  # stopwords only
    assert BM25Retriever([]).top_k(query, 3) == []
    plural = Example("bbh", "t", 12, "Which penalties exist?", "slashing", "text")
    assert [p.id for p in retriever.top_k(plural, 3)] == ["p2"]  # stemmed: "penalties" matches "penalty"


def test_kaft_trains_and_answers_with_retrieved_passages_and_no_rationale(cfg, make, tmp_path):
    settings = cfg.methods["kaft"]
    settings.retriever, settings.passages, settings.answer_max_new_tokens = "bm25", passage_file(tmp_path), 4
    method = make("kaft")
    first, second = method.train_pairs()[:2]
    assert (first.prompt, first.target) == (
        f"{DESC}\n\nKnowledge:\nJoao Moutinho is a Portuguese footballer.\n\n"
        f"Q: {TRAIN[0].question}\nA: The answer is", " No.")
    assert second.prompt == (f"{DESC}\n\nKnowledge:\nKyle Palmieri is an American ice hockey player.\n\n"
                             f"Q: {TRAIN[1].question}\nA: The answer is")
    generate = Recorder(" No.")
    method.infer([TEST], generate)
    assert generate.calls == [([
        f"{DESC}\n\nKnowledge:\nKyle Palmieri is an American ice hockey player.\n\n"
        "A touchdown scores six points in American football.\n\n"
        f"Q: {TEST.question}\nA: The answer is"], 4)]


def test_kard_bm25_over_the_teacher_knowledge_never_retrieves_an_items_own(cfg, tiny_model, tiny_tokenizer, tmp_path):
    facts = ["Moutinho plays soccer; a screen pass is American football.",
             "Palmieri plays ice hockey; slashing is a hockey penalty.", "Jamal Murray plays basketball."]
    store = KnowledgeStore([KnowledgeRecord("sports_understanding", i, "1. Find the sport.", fact) for i, fact in enumerate(facts)])
    rd = RunData(data_dir=Path("."), train_pool=TRAIN, train=TRAIN, rationales=RATIONALES, tests={"bbh": [TEST]},
                 descriptions={"sports_understanding": DESC}, fewshot={}, knowledge=store)
    cfg.methods["kard"].retriever = "bm25"
    method = build_method("kard", cfg, rd, Student(tiny_model, tiny_tokenizer, "tiny", "."), tmp_path)
    palmieri = f"Learning summary:\n1. Find the sport.\nSupplementary knowledge:\n{facts[1]}"
    assert method.prompt(TEST) == f"{DESC}\n\nKnowledge:\n{palmieri}\n\nQ: {TEST.question}\nA: Let's think step by step."
    # the Palmieri training item's own knowledge is the only passage sharing its words: it gets none
    assert [pair.prompt for pair in method.train_pairs()][1] == cot_prompt(DESC, TRAIN[1].question)


def test_kard_bm25_from_a_passage_file(cfg, make, tmp_path):
    cfg.methods["kard"].retriever, cfg.methods["kard"].passages = "bm25", passage_file(tmp_path)
    prompt = make("kard").prompt(TEST)
    assert prompt == (f"{DESC}\n\nKnowledge:\nKyle Palmieri is an American ice hockey player.\n\n"
                      f"A touchdown scores six points in American football.\n\nQ: {TEST.question}\nA: Let's think step by step.")


@pytest.mark.parametrize("line, error", [
    ({"txt": "a"}, "passages.jsonl:2: missing field 'text'"),
    ({"text": 3}, "passages.jsonl:2: field 'text' must be a non-empty string, got 3"),
    ({"text": "  "}, "passages.jsonl:2: field 'text' must be a non-empty string, got '  '"),
])
def test_a_bad_passage_file_names_file_line_and_field_before_a_model_loads(cfg, tmp_path, line, error):
    path = passage_file(tmp_path, [PASSAGES[0], line])
    settings = KARDSettings(retriever="bm25", passages=path)
    with pytest.raises(SkinternError, match=re.escape(error)) as info:
        KARD.check(settings, None, cfg.teacher)
    assert str(info.value).startswith(str(tmp_path)) and "\n" not in str(info.value)


def test_a_passage_file_is_read_once_while_unchanged_and_again_after_an_edit(tmp_path):
    path = passage_file(tmp_path)
    first = load_passages(path)
    assert [p.text for p in first] == [row["text"] for row in PASSAGES]
    assert load_passages(Path(path)) is first  # the check, the plan and the retriever share one read
    passage_file(tmp_path, PASSAGES[:1] + [{"text": "An edited passage, longer than the one it replaces."}])
    assert [p.text for p in load_passages(path)] == [PASSAGES[0]["text"], "An edited passage, longer than the one it replaces."]
    passage_file(tmp_path, [PASSAGES[0], {"text": ""}])
    with pytest.raises(SkinternError, match="passages.jsonl:2: field 'text'"):
        load_passages(path)


def test_the_new_settings_are_checked_when_the_config_loads():
    with pytest.raises(SkinternError, match=r"^c.yaml: methods.kard.passages: needs retriever: bm25"):
        config_from_dict({"methods": {"kard": {"passages": "p.jsonl"}}}, "c.yaml")
    with pytest.raises(SkinternError, match=r"^c.yaml: methods.kaft.retriever: expected one of dense, bm25, got 'sparse'"):
        config_from_dict({"methods": {"kaft": {"retriever": "sparse"}}}, "c.yaml")
    with pytest.raises(SkinternError, match=r"^c.yaml: methods.kaft.answer_max_new_tokens: expected a value >= 1"):
        config_from_dict({"methods": {"kaft": {"answer_max_new_tokens": 0}}}, "c.yaml")
    with pytest.raises(SkinternError, match=r"^c.yaml: methods.teacher.answers: expected a file path or null"):
        config_from_dict({"methods": {"teacher": {"answers": " "}}}, "c.yaml")
    loaded = config_from_dict({"methods": {"kard": {"retriever": "bm25", "top_k": 3, "passages": "p.jsonl"}}}, "c.yaml")
    kard = loaded.methods["kard"]
    assert (kard.retriever, kard.top_k, kard.passages) == ("bm25", 3, "p.jsonl")


# ---------------------------------------------------------------- the teacher's row

SECOND = sports(11, "Jamal Murray", "hit a three pointer", "Yes")


def teacher_entry(cfg, tiny_model, tiny_tokenizer, tmp_path) -> Entry:
    rd = RunData(data_dir=Path("."), train_pool=TRAIN, train=TRAIN, rationales=RATIONALES, tests={"bbh": [TEST, SECOND]},
                 descriptions={"sports_understanding": DESC}, fewshot={})
    Teacher.check(cfg.settings("teacher"), rd, cfg.teacher)
    method = build_method("teacher", cfg, rd, Student(tiny_model, tiny_tokenizer, "tiny", "."), tmp_path)
    fitted = method.fit()
    assert not method.trains and fitted.stats is None
    return evaluate_method(method, fitted.model, cfg, tmp_path, "untrained tiny")


def test_the_teacher_row_is_scored_from_a_file_without_cost_figures(cfg, tiny_model, tiny_tokenizer, tmp_path):
    answers = tmp_path / "teacher.jsonl"
    answers.write_text(json.dumps({"id": TEST.id, "output": "Palmieri plays hockey. So the answer is no."}) + "\n"
                       + json.dumps({"id": SECOND.id, "output": "Murray plays basketball. So the answer is no."}) + "\n")
    cfg.methods["teacher"].answers = str(answers)
    entry = teacher_entry(cfg, tiny_model, tiny_tokenizer, tmp_path)
    assert entry.eval["bbh"].accuracy == 0.5 and entry.eval["bbh"].n == 2
    assert entry.flops_per_query is None and entry.prompt_tokens_per_query is None and entry.wall_time_per_query_s is None
    assert "flops_per_query" not in entry.to_dict() and entry.extras == {"answers": str(answers)}
    rows = read_jsonl(tmp_path / "predictions" / "teacher-bbh.jsonl")
    assert [(r["prediction"], r["correct"]) for r in rows] == [("No", True), ("No", False)] and "flops" not in rows[0]

    student = Entry("std-cot", {"bbh": DatasetScore(0.5, 2)}, prompt_tokens_per_query=40.0, generated_tokens_per_query=9.0,
                    flops_per_query=QueryFlops(2e9, 1e9), wall_time_per_query_s=0.1)
    render_report(Results(runs=[student, entry], student="tiny"), tmp_path / "report")
    table = (tmp_path / "report" / "report.md").read_text().split("## Inference cost")[1].split("##")[0]
    teacher_row = next(line for line in table.splitlines() if line.startswith("| teacher |"))
    assert teacher_row == "| teacher | – | – | – | – | – | – | – | – | – |"  # no FLOPs, no ratio to std-cot
    assert "| std-cot | 40.0 | 9.0 | 2.00 | 1.00 | 3.00 | 0.10 | – | 1.00× | 1.00× |" in table


def test_the_teacher_row_from_the_endpoint(cfg, tiny_model, tiny_tokenizer, tmp_path):
    def reply(body):
        return "Jamal Murray plays basketball. So the answer is yes." if "Murray" in body["messages"][0]["content"] else "I cannot tell."

    with FakeOpenAI(reply) as fake:
        cfg.teacher = TeacherConfig(base_url=fake.base_url, model="fake-teacher", max_retries=0,
                                    cache_path=str(tmp_path / "cache.sqlite"))
        entry = teacher_entry(cfg, tiny_model, tiny_tokenizer, tmp_path)
    assert entry.eval["bbh"].accuracy == 0.5 and entry.eval["bbh"].no_answer == 0.5 and entry.flops_per_query is None
    assert entry.extras == {"teacher": "fake-teacher", "base_url": fake.base_url}
    instruction = 'End with the sentence "Therefore, the answer is X." where X is Yes or No.\nA: Let\'s think step by step.'
    assert sorted((body["messages"] for body in fake.bodies), key=str) == [
        [{"role": "user", "content": f"{DESC}\n\nQ: {ex.question}\n{instruction}"}] for ex in (SECOND, TEST)]


def test_a_teacher_file_must_answer_every_test_item(cfg, tmp_path):
    answers = tmp_path / "teacher.jsonl"
    answers.write_text(json.dumps({"id": TEST.id, "output": "So the answer is no."}) + "\n" + json.dumps({"id": 3}) + "\n")
    rd = RunData(data_dir=Path("."), train_pool=TRAIN, train=TRAIN, rationales=RATIONALES, tests={"bbh": [TEST, SECOND]},
                 descriptions={}, fewshot={})
    with pytest.raises(SkinternError, match=re.escape(f"{answers}:2: missing field 'output'")):
        Teacher.check(TeacherSettings(answers=str(answers)), rd, cfg.teacher)
    answers.write_text(json.dumps({"id": TEST.id, "output": "So the answer is no."}) + "\n")
    with pytest.raises(SkinternError, match=re.escape(f"{answers}: no teacher answer for 1 of 2 test items "
                                                      f"(field 'id'; first missing: {SECOND.id})")):
        Teacher.check(TeacherSettings(answers=str(answers)), rd, cfg.teacher)
