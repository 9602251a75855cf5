"""Teacher data generation: prompts, parsing, validation, outputs, and a killed run resumed."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fake_openai import FakeOpenAI
from skintern.data import Example
from skintern.errors import SkinternError
from skintern.files import read_jsonl
from skintern.teacher.config import TeacherConfig
from skintern.teacher.generate import generate_knowledge, generate_rationales
from skintern.teacher.prompts import (KNOWLEDGE_SYSTEM, answer_leak, clean_rationale, parse_knowledge,
                                      rationale_messages)

REPO = Path(__file__).resolve().parents[1]
DATE_Q = "Today is 1/1/2000. What is tomorrow?\nOptions:\n(A) 01/02/2000\n(B) 12/31/1999\n(C) 01/03/2000"
DATE = Example("bbh", "date_understanding", 7, DATE_Q, "(A)", "choice", ("01/02/2000", "12/31/1999", "01/03/2000"))
SPORT = Example("bbh", "sports_understanding", 3, "Is \"Messi scored a penalty\" plausible?", "Yes", "yes_no")
COUNT = Example("bbh", "object_counting", 2, "I have a cat and two dogs. How many animals do I have?", "3", "number")
GOOD_KNOWLEDGE = ("Learning summary:\n1. List the objects.\n2. Count each one.\n"
                  "Supplementary knowledge:\n1. 'two dogs' counts as two.\n2. Cats and dogs are animals.")


def knowledge_reply(body: dict) -> str:
    """Valid knowledge, except: the date question first names its answer, the sports one never parses."""
    question = body["messages"][1]["content"]
    repaired = len(body["messages"]) > 2
    if "Messi" in question:
        return "It is plausible."
    if "Today is" in question and not repaired:
        return GOOD_KNOWLEDGE + "\n3. So the answer is (A)."
    return GOOD_KNOWLEDGE


def cot_reply(body: dict) -> str:
    """Right for the sports and counting questions, wrong for the date one; an invented next Q follows."""
    question = body["messages"][-1]["content"]
    answer = "yes" if "Messi" in question else "3" if "animals" in question else "(B)"
    return f"Let's think step by step.\nReasoning here. So the answer is {answer}.\n\nQ: next question"


def cfg(tmp_path, server: FakeOpenAI, **overrides) -> TeacherConfig:
    template = tmp_path / "template.txt"
    template.write_text("Q: {question}\nA: Let's think step by step.", encoding="utf-8")
    settings = dict(base_url=server.base_url, model="fake", backoff_base_s=0.001, timeout_s=5,
                    cache_path=str(tmp_path / "cache.sqlite"), prompt_template=str(template))
    return TeacherConfig(**{**settings, **overrides})


def test_clean_rationale_cuts_at_the_answer_sentence():
    assert clean_rationale("A: Let's think step by step. x is 3.5. So the answer is 3.5.\nQ: more") == \
        "x is 3.5. So the answer is 3.5."
    assert clean_rationale("I am not sure.") is None


def test_parse_knowledge_renumbers_and_requires_both_lists():
    text = "**Learning summary:**\n1) First\n   step.\n2) Second\n\n**Supplementary knowledge:**\n- 1. A fact"
    assert parse_knowledge(text) == ("1. First step.\n2. Second", "1. A fact")
    assert parse_knowledge("Learning summary:\n1. Only this") is None
    assert parse_knowledge("Learning summary:\nno numbers\nSupplementary knowledge:\n1. x") is None


def test_answer_leaks():
    assert answer_leak("1. Option A matches the calendar.", DATE) == "it names the correct option (A)"
    assert "(A)" in answer_leak("1. The answer (A) fits.", DATE)
    assert answer_leak("1. The correct option is 01/02/2000.", DATE)
    assert answer_leak("1. Compare 01/02/2000 with 12/31/1999; (B) is a day early.", DATE) is None  # options may be discussed
    assert answer_leak("1. Messi is a soccer player; yes, penalties are soccer.", SPORT) is None  # bare labels may appear
    assert answer_leak("1. Therefore the answer is yes.", SPORT)
    assert answer_leak("1. One cat plus two dogs gives 3 animals.", COUNT)
    assert answer_leak("1. Count items.\n3. Add them up.", COUNT) is None  # list numbers are not the answer


def test_bbh_uses_its_own_cot_prompt_and_other_data_a_zero_shot_one(tmp_path):
    prompts = tmp_path / "bbh" / "cot-prompts"
    prompts.mkdir(parents=True)
    (prompts / "sports_understanding.txt").write_text(
        "canary\n-----\nJudge plausibility.\n\nQ: Is X plausible?\nA: Let's think step by step. So the answer is no.\n")
    user = rationale_messages(SPORT, tmp_path, None)[1]["content"]
    assert user.startswith("Judge plausibility.\n\nQ: Is X plausible?")
    assert user.endswith(f"Q: {SPORT.question}\nA: Let's think step by step.")
    gsm = Example("gsm8k", "gsm8k", 0, "1+1?", "2", "number", description="Solve the math word problem.")
    assert rationale_messages(gsm, tmp_path, None)[1]["content"] == (
        "Task: Solve the math word problem.\nExplain your reasoning first and conclude with the format "
        "'Therefore, the answer is'.\n\nQuestion: 1+1?\nAnswer: Let's think step by step.")
    assert clean_rationale("1 plus 1 is 2. Therefore, the answer is 2.\nQuestion: 2+2?") == \
        "1 plus 1 is 2. Therefore, the answer is 2."
    assert rationale_messages(gsm, tmp_path, "Solve: {question}")[1]["content"] == "Solve: 1+1?"


def test_generate_rationales_keeps_only_correct_samples(tmp_path):
    with FakeOpenAI(reply=cot_reply) as server:
        counts = generate_rationales([SPORT, DATE, COUNT], cfg(tmp_path, server, n_samples=2), tmp_path / "out")
        assert server.answered == 6
    rows = read_jsonl(tmp_path / "out" / "rationales.jsonl", required=("task", "index", "rationale", "target", "sample"))
    assert [(r["task"], r["sample"]) for r in rows] == [("sports_understanding", 0), ("sports_understanding", 1),
                                                        ("object_counting", 0), ("object_counting", 1)]
    assert rows[0]["rationale"] == "Reasoning here. So the answer is yes." and rows[0]["target"] == "Yes"
    assert counts["tasks"]["date_understanding"] == {"kept": 0, "dropped": 2}
    assert (counts["kept"], counts["dropped"]) == (4, 2)


def test_generate_knowledge_reasks_invalid_replies_a_bounded_number_of_times(tmp_path):
    with FakeOpenAI(reply=knowledge_reply) as server:
        counts = generate_knowledge([SPORT, DATE, COUNT], cfg(tmp_path, server, knowledge_attempts=3), tmp_path)
        assert server.answered == 3 + 2 + 1  # sports: 3 tries; date: 1 re-ask; counting: once
        assert server.bodies[0]["messages"][0]["content"] == KNOWLEDGE_SYSTEM
    rows = read_jsonl(tmp_path / "knowledge.jsonl")
    assert [r["task"] for r in rows] == ["date_understanding", "object_counting"]
    assert rows[0] == {"task": "date_understanding", "index": 7, "summary": "1. List the objects.\n2. Count each one.",
                       "knowledge": "1. 'two dogs' counts as two.\n2. Cats and dogs are animals."}
    assert (counts["valid"], counts["invalid"], counts["reasked"]) == (2, 1, 3)
    assert json.loads((tmp_path / "knowledge_counts.json").read_text())["tasks"]["sports_understanding"]["invalid"] == 1


def test_yaml_teacher_section_is_strict(tmp_path):
    from skintern.teacher.cli import _settings, add_commands
    import argparse

    path = tmp_path / "run.yaml"
    path.write_text("teacher:\n  model: m\n  concurency: 3\n")
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    with pytest.raises(SkinternError, match=r"run\.yaml.*concurency"):
        _settings(parser.parse_args(["teach", str(path)]))
    path.write_text("teacher:\n  model: m\n  concurrency: 0\ndata:\n  tasks: [navigate]\n")
    with pytest.raises(SkinternError, match="teacher.concurrency: expected a positive number"):
        _settings(parser.parse_args(["teach", str(path)]))
    path.write_text("teacher:\n  model: m\n  concurrency: 2\ndata:\n  tasks: [navigate]\n")
    teacher, _, tasks, _, _ = _settings(parser.parse_args(["teach", str(path), "--concurrency", "5"]))
    assert (teacher.model, teacher.concurrency, tasks) == ("m", 5, ["navigate"])


def _tiny_bbh(root: Path, n: int) -> None:
    """A one-task BBH-format data folder: n yes/no questions, all in the train split."""
    (root / "bbh" / "cot-prompts").mkdir(parents=True)
    examples = [{"input": f"Is sentence {k} plausible?", "target": "yes" if k % 2 else "no"} for k in range(n)]
    (root / "bbh" / "toy.json").write_text(json.dumps({"examples": examples}))
    (root / "bbh" / "split.json").write_text(json.dumps({"toy": {"train": list(range(n)), "test": []}}))
    (root / "bbh" / "cot-prompts" / "toy.txt").write_text(
        "canary\n-----\nJudge plausibility.\n\nQ: Is it?\nA: Let's think step by step. So the answer is yes.\n")


def _teach(server: FakeOpenAI, tmp_path: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "skintern.teacher.cli", "teach", "--base-url", server.base_url, "--model", "fake",
           "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "c.sqlite"),
           "--concurrency", "4"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _cached(path: Path) -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(path, timeout=5) as db:
        try:
            return db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        except sqlite3.OperationalError:  # table not created yet
            return 0


def test_killed_run_resumes_without_paying_twice(tmp_path):
    n = 10
    _tiny_bbh(tmp_path / "data", n)

    def reply(body: dict) -> str:
        return GOOD_KNOWLEDGE if body["messages"][0]["content"] == KNOWLEDGE_SYSTEM else "Hmm. So the answer is yes."

    with FakeOpenAI(reply=reply, hold_after=7) as server:
        proc = _teach(server, tmp_path)
        deadline = time.monotonic() + 60
        while _cached(tmp_path / "c.sqlite") < 7:  # 7 answers committed, later requests held unanswered
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.kill()
        proc.wait()
        assert server.answered == 7 and server.received > 7  # killed with requests in flight
        assert not (tmp_path / "out" / "rationales.jsonl").exists()
        server.hold_after = None
        server.release.set()

        proc = _teach(server, tmp_path)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        distinct = {json.dumps(b["messages"], sort_keys=True) for b in server.bodies}
        assert server.answered == len(distinct) == 2 * n  # n rationales + n knowledge, each asked exactly once
        first = {p: (tmp_path / "out" / p).read_text() for p in ("rationales.jsonl", "knowledge.jsonl")}

        proc = _teach(server, tmp_path)  # a finished run re-derives its outputs from the cache alone
        assert proc.wait(timeout=60) == 0
        assert server.answered == 2 * n
    rationales = read_jsonl(tmp_path / "out" / "rationales.jsonl")
    assert [r["index"] for r in rationales] == [k for k in range(n) if k % 2]  # gold "yes" only
    assert len(read_jsonl(tmp_path / "out" / "knowledge.jsonl")) == n
    assert first == {p: (tmp_path / "out" / p).read_text() for p in first}
