"""`skintern teach CONFIG` on a user source: rationales kept when correct and knowledge from a correct rationale,
keyed by item id in the files the source's rationales:/knowledge: settings read, cached, and trained on; bad
input is one line, exit 2, nothing written."""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from pathlib import Path

import yaml

from fake_openai import FakeOpenAI
from skintern.cli import main
from skintern.config import load_config
from skintern.files import read_jsonl
from skintern.methods.rundata import load_run_data
from skintern.teacher.prompts import KNOWLEDGE_SYSTEM

KNOWLEDGE = ("Learning summary:\n1. Read both numbers.\n2. Compare them.\n"
             "Supplementary knowledge:\n1. A number is greater when it lies further right on the number line.")
NEVER_RIGHT = "Is 6 greater than 3?"  # the teacher gets this one wrong in every sample


def rows(n: int) -> list[dict]:
    out = []
    for i in range(n):
        a, b = (i * 5 + 1) % 7, (i * 3) % 5
        answer = "Yes" if a > b else "No"
        out.append({"uid": f"q{i}", "q": f"Is {a} greater than {b}?", "gold": answer, "group": ["small", "big"][i % 2],
                    "why": f"{a} vs {b}. So the answer is {answer}."})
    return out


def gold(question: str) -> str:
    a, b = map(int, re.search(r"Is (\d+) greater than (\d+)\?", question).groups())
    return "Yes" if a > b else "No"


class Teacher:
    """Per question, the first rationale asked is right and the second wrong (NEVER_RIGHT: both wrong); knowledge
    is always valid. Records the knowledge requests."""

    def __init__(self):
        self.asked: Counter = Counter()
        self.knowledge_prompts: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, body: dict) -> str:
        system, user = body["messages"][0]["content"], body["messages"][1]["content"]
        if system == KNOWLEDGE_SYSTEM:
            self.knowledge_prompts.append(user)
            return KNOWLEDGE
        question = re.search(r"Question: (.*\?)", user).group(1)
        with self.lock:
            self.asked[question] += 1
            right = self.asked[question] == 1 and question != NEVER_RIGHT
        answer = gold(question) if right else {"Yes": "No", "No": "Yes"}[gold(question)]
        return f"Let's think step by step. Comparing the numbers. Therefore, the answer is {answer}."


def write_jsonl(path: Path, items: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in items))
    return path


def write_config(tmp_path: Path, student: Path, server: FakeOpenAI, train: list, tests: list | None = None,
                 data: dict | None = None, teacher: dict | None = None) -> Path:
    cfg = {
        "name": "mine",
        "output_dir": str(tmp_path / "runs"),
        "data": {"train": train, **(data or {})},
        "student": {"model": str(student)},
        "train": {"finetune": "full", "epochs": 1, "batch_size": 4, "learning_rate": 1e-3, "save_steps": 2},
        "eval": {"datasets": tests or [train[0]["name"]], "batch_size": 4, "max_new_tokens": 8},
        "teacher": {"base_url": server.base_url, "model": "fake", "temperature": 0.8, "n_samples": 2,
                    "backoff_base_s": 0.001, "max_retries": 1, "timeout_s": 5,
                    "cache_path": str(tmp_path / "cache.sqlite"), **(teacher or {})},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def taught_source(tmp_path: Path, name: str = "cmp", n: int = 8) -> dict:
    """A source with question, answer, id and task only, pointed at the files teach writes for it."""
    path = write_jsonl(tmp_path / f"{name}.jsonl", [{k: r[k] for k in ("uid", "q", "gold", "group")} for r in rows(n)])
    out = tmp_path / "runs" / "mine" / "teacher" / name
    return {"name": name, "path": str(path), "fields": {"question": "q", "answer": "gold", "id": "uid", "task": "group"},
            "description": "Answer Yes or No.", "test_fraction": 0.25, "seed": 3,
            "rationales": str(out / "rationales.jsonl"), "knowledge": str(out / "knowledge.jsonl")}


def teach(config: Path, capsys, *flags: str) -> tuple[int, str]:
    code = main(["teach", str(config), *flags])
    return code, capsys.readouterr().err.strip()


def test_teach_a_user_source_then_train_on_exactly_the_kept_items(tmp_path, tiny_student_dir, capsys):
    teacher = Teacher()
    with FakeOpenAI(reply=teacher) as server:
        config = write_config(tmp_path, tiny_student_dir, server, [taught_source(tmp_path)])
        code, err = teach(config, capsys)
        assert code == 0, err
        cfg = load_config(config)
        rd = load_run_data(cfg.data, cfg.eval)  # the taught files, read back as the trainer reads them
        pool = {rows(8)[ex.index]["uid"]: ex for ex in rd.train_pool}
        kept = {uid for uid, ex in pool.items() if ex.question != NEVER_RIGHT}
        assert len(pool) == 6 and len(kept) == 5  # 2 of 8 rows carved out for testing: never taught
        assert sum(teacher.asked.values()) == 2 * 6 and set(teacher.asked) == {ex.question for ex in pool.values()}
        assert {body["temperature"] for body in server.bodies} == {0.8}  # teacher.temperature

        out = tmp_path / "runs" / "mine" / "teacher" / "cmp"
        rationales = read_jsonl(out / "rationales.jsonl", required=("id", "rationale"))
        assert sorted(r["id"] for r in rationales) == sorted(kept)  # one right sample each, the wrong ones dropped
        for r in rationales:
            assert r["rationale"] == f"Comparing the numbers. Therefore, the answer is {pool[r['id']].answer}."
        knowledge = read_jsonl(out / "knowledge.jsonl", required=("id", "summary", "knowledge"))
        assert sorted(k["id"] for k in knowledge) == sorted(kept)  # only items that will train
        assert knowledge[0]["summary"] == "1. Read both numbers.\n2. Compare them."
        assert knowledge[0]["knowledge"] == "1. A number is greater when it lies further right on the number line."
        by_question = {re.search(r"Question:\n(.*\?)", p).group(1): p for p in teacher.knowledge_prompts}
        for uid in kept:
            ex = pool[uid]
            assert f"Correct answer: {ex.answer}" in by_question[ex.question]
            assert f"Correct solution:\nComparing the numbers. Therefore, the answer is {ex.answer}." in by_question[ex.question]

        assert {rows(8)[ex.index]["uid"] for ex in rd.train} == kept
        assert all((ex.task, ex.index) in rd.knowledge for ex in rd.train) and len(rd.knowledge) == 5

        before = (server.received, (out / "rationales.jsonl").read_text(), (out / "knowledge.jsonl").read_text())
        code, err = teach(config, capsys)  # a rerun: everything from the cache
        assert code == 0, err
        assert (server.received, (out / "rationales.jsonl").read_text(), (out / "knowledge.jsonl").read_text()) == before

    assert main(["run", str(config)]) == 0
    results = json.loads((tmp_path / "runs" / "mine" / "results.json").read_text())
    trained = {r["method"]: r for r in results["runs"]}["std-cot"]
    assert trained["train"]["examples"] == 5 and trained["eval"]["cmp"]["n"] == 2


def test_what_knowledge_on_a_source_with_its_own_rationales(tmp_path, tiny_student_dir, capsys):
    """Knowledge only, from the source's own rationale; an item whose own rationale is wrong gets none."""
    items = rows(6)
    items[2]["why"] = f"So the answer is {'No' if items[2]['gold'] == 'Yes' else 'Yes'}."
    path = write_jsonl(tmp_path / "own.jsonl", items)
    source = {"name": "own", "path": str(path),
              "fields": {"question": "q", "answer": "gold", "id": "uid", "rationale": "why"}}
    teacher = Teacher()
    with FakeOpenAI(reply=teacher) as server:
        config = write_config(tmp_path, tiny_student_dir, server, [source], [dict(source, name="test-only")])
        code, err = teach(config, capsys, "--what", "knowledge")
        assert code == 0, err
        assert not teacher.asked and server.answered == 5
    out = tmp_path / "runs" / "mine" / "teacher" / "own"
    assert not (out / "rationales.jsonl").exists()
    knowledge = read_jsonl(out / "knowledge.jsonl", required=("id", "summary", "knowledge"))
    assert [k["id"] for k in knowledge] == ["q0", "q1", "q3", "q4", "q5"]
    assert all(f"Correct solution:\n{r['why']}" in "".join(teacher.knowledge_prompts) for r in items if r["uid"] != "q2")
    assert f"source 'own': knowledge: {out / 'knowledge.jsonl'} -- set it to train on these" in err.splitlines()


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, tiny_student_dir, capsys):
    good = taught_source(tmp_path)
    bad_rows = [{"uid": "x0", "q": "Is 1 greater than 2?", "gold": "No", "group": "small"},
                {"uid": "x1", "q": "Is 3 greater than 2?", "group": "small"}]
    bad = dict(taught_source(tmp_path, "bad"), path=str(write_jsonl(tmp_path / "bad.jsonl", bad_rows)))
    with FakeOpenAI(reply=Teacher()) as server:
        config = write_config(tmp_path, tiny_student_dir, server, [good, bad])
        code, err = teach(config, capsys)
        assert (code, server.received) == (2, 0)  # checked before the first request
        assert err == f"skintern: error: source 'bad' ({tmp_path / 'bad.jsonl'}): row 2: field 'gold' is missing or empty"

    # the second source's teacher fails after the first source is answered: no file of either is written
    second = dict(taught_source(tmp_path, "cmp2"), path=good["path"], description="Say Yes or No.")
    with FakeOpenAI(reply=Teacher(), faults=["ok"] * 17 + ["400"]) as server:
        config = write_config(tmp_path, tiny_student_dir, server, [good, second])
        code, err = teach(config, capsys, "--concurrency", "1")
        assert code == 2 and server.answered == 17
        assert err.splitlines()[-1].startswith(f"skintern: error: teacher {server.base_url} model 'fake': HTTP 400: ")

    with FakeOpenAI() as server:
        url = server.base_url  # a port nothing listens on once the server is gone
    config = write_config(tmp_path, tiny_student_dir, server, [good])
    code, err = teach(config, capsys, "--base-url", url)
    assert code == 2 and err.startswith(f"skintern: error: teacher {url} model 'fake': gave up after 2 tries (")
    assert "\n" not in err
    assert not (tmp_path / "runs" / "mine" / "teacher").exists()


def tiny_builtins(root: Path) -> None:
    """BBH (one yes/no task: 6 train, 2 test) and GSM8K (3 train, 1 test) in the shared data's layout."""
    (root / "bbh" / "cot-prompts").mkdir(parents=True)
    (root / "gsm8k").mkdir()
    examples = [{"input": f"Is claim {k} plausible?", "target": "yes" if k % 2 else "no"} for k in range(8)]
    (root / "bbh" / "toy.json").write_text(json.dumps({"examples": examples}))
    (root / "bbh" / "split.json").write_text(json.dumps({"toy": {"train": list(range(6)), "test": [6, 7]}}))
    (root / "bbh" / "cot-prompts" / "toy.txt").write_text(
        "canary\n-----\nJudge plausibility.\n\nQ: Is it?\nA: Let's think step by step. So the answer is yes.\n")
    for split, n in (("train", 3), ("test", 1)):
        write_jsonl(root / "gsm8k" / f"{split}.jsonl", [
            {"question": f"Tom has {k} apples and buys 2 more. How many?", "answer": f"He has {k} + 2 apples.\n#### {k + 2}"}
            for k in range(n)])


def test_builtin_sources_are_taught_in_the_shape_the_trainer_reads(tmp_path, tiny_student_dir, capsys):
    """BBH: generated rationales and knowledge by (task, index), read through data.teacher_cot / data.knowledge;
    GSM8K: no rationales asked (it trains on its worked solutions), knowledge written from them."""
    tiny_builtins(tmp_path / "data")
    out = tmp_path / "runs" / "mine" / "teacher"

    def reply(body: dict) -> str:
        return KNOWLEDGE if body["messages"][0]["content"] == KNOWLEDGE_SYSTEM else "Hmm. So the answer is yes."

    with FakeOpenAI(reply=reply) as server:
        data = {"data_dir": str(tmp_path / "data"), "teacher_cot": str(out / "bbh" / "rationales.jsonl"),
                "knowledge": str(out / "bbh" / "knowledge.jsonl")}
        config = write_config(tmp_path, tiny_student_dir, server, ["bbh", "gsm8k"], ["bbh"], data=data,
                              teacher={"n_samples": 1, "temperature": 0.0})
        code, err = teach(config, capsys)
        assert code == 0, err
        knowledge_asks = [b["messages"][1]["content"] for b in server.bodies if b["messages"][0]["content"] == KNOWLEDGE_SYSTEM]
        assert server.answered == 6 + 3 + 3  # 6 BBH rationales, knowledge for its 3 kept and for the 3 GSM8K items
    assert "gsm8k: trains on its own worked solutions; no rationales asked" in err.splitlines()
    assert "data.teacher_cot" not in err  # already pointed at the taught files
    assert not (out / "gsm8k" / "rationales.jsonl").exists()
    assert [r["index"] for r in read_jsonl(out / "bbh" / "rationales.jsonl")] == [1, 3, 5]
    gsm = read_jsonl(out / "gsm8k" / "knowledge.jsonl", required=("task", "index", "summary", "knowledge"))
    assert [(k["task"], k["index"]) for k in gsm] == [("gsm8k", 0), ("gsm8k", 1), ("gsm8k", 2)]
    assert any("Correct answer: 3\n\nCorrect solution:\nHe has 1 + 2 apples." in ask for ask in knowledge_asks)

    loaded = load_config(config)
    rd = load_run_data(loaded.data, loaded.eval)
    assert sorted(ex.id for ex in rd.train) == ["bbh/toy/1", "bbh/toy/3", "bbh/toy/5", "gsm8k/gsm8k/0",
                                                "gsm8k/gsm8k/1", "gsm8k/gsm8k/2"]
    assert {(r.task, r.index) for r in rd.knowledge if r.task == "toy"} == {("toy", 1), ("toy", 3), ("toy", 5)}
