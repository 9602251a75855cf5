"""Teacher data is trusted only where it provably belongs: rationales match their item by gold target,
cached answers match their endpoint."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from fake_openai import FakeOpenAI
from skintern.data import Example, load_bbh
from skintern.errors import SkinternError
from skintern.files import read_jsonl, write_jsonl
from skintern.teacher import OTHER_TASKS, import_rationales
from skintern.teacher.cache import Answer, ResponseCache
from test_teacher_client import MESSAGES, ask, config

TEACHER = "bbh/teacher/code-davinci-002-cot.jsonl"


def _items(task: str, golds: str) -> list[Example]:
    """Choice items of one task, item k's gold answer being the k-th letter of `golds`."""
    options = ("w", "x", "y", "z")
    return [Example("bbh", task, k, f"{task} question {k}?", f"({g})", "choice", options) for k, g in enumerate(golds)]


def _row(task: str, index: int, target: str, said: str) -> dict:
    return {"task": task, "index": index, "target": f"({target})", "rationale": f"Thinking. So the answer is ({said})."}


# ---------------------------------------------------------------- rationales matched by content


def test_shifted_rows_are_never_kept_and_are_counted(tmp_path):
    good, shifted = _items("good", "ABCD"), _items("shifted", "ABC")
    rows = [_row("good", k, ex.answer[1], ex.answer[1]) for k, ex in enumerate(good)]
    rows.append(_row("good", 99, "A", "A"))  # names no item
    rows.append(_row("unknown_task", 0, "A", "A"))  # a task outside the selection
    # "shifted" rows sit one index late; the teacher was wrong on its own item and happened to state the
    # gold answer of the item the row now names, so only the target shows the row is not about it
    rows += [_row("shifted", k + 1, ex.answer[1], "BC"[k] if k < 2 else "A") for k, ex in enumerate(shifted)]
    path = tmp_path / "cot.jsonl"
    write_jsonl(path, rows)

    imported = import_rationales(path, good + shifted)

    assert sorted(imported.by_id) == [ex.id for ex in good]
    assert (imported.mismatched["shifted"], imported.unmatched["shifted"], imported.missing["shifted"]) == (2, 1, 3)
    assert (imported.kept["good"], imported.unmatched["good"], imported.mismatched["good"]) == (4, 1, 0)
    assert imported.unmatched[OTHER_TASKS] == 1
    table = imported.table().splitlines()
    assert table[0].split() == ["task", "kept", "wrong", "missing", "target-mismatch", "unmatched"]
    assert table[1:] == [f"{'good':<44} {4:>4}  {0:>5}  {0:>7}  {0:>15}  {1:>9}",
                         f"{'shifted':<44} {0:>4}  {0:>5}  {3:>7}  {2:>15}  {1:>9}",
                         f"{OTHER_TASKS:<44} {0:>4}  {0:>5}  {0:>7}  {0:>15}  {1:>9}",
                         f"{'total':<44} {4:>4}  {0:>5}  {3:>7}  {2:>15}  {3:>9}"]


def test_a_mostly_mismatched_file_is_rejected_as_offset(tmp_path):
    items = _items("toy", "ABCDABCD")
    path = tmp_path / "cot.jsonl"
    write_jsonl(path, [_row("toy", k + 1, ex.answer[1], ex.answer[1]) for k, ex in enumerate(items)])
    with pytest.raises(SkinternError, match=rf"{re.escape(str(path))}: 7 of 7 rows disagree .*'target'.*offset"):
        import_rationales(path, items)


def test_rows_without_a_target_are_rejected(tmp_path):
    path = tmp_path / "cot.jsonl"
    path.write_text('{"task": "toy", "index": 0, "rationale": "So the answer is (A)."}\n')
    with pytest.raises(SkinternError, match=rf"{re.escape(str(path))}:1: missing field 'target'"):
        import_rationales(path, _items("toy", "A"))


def test_the_shared_teacher_file_matches_every_item_by_target(shared_data, tmp_path):
    train, test = load_bbh(shared_data, "train"), load_bbh(shared_data, "test")
    imported = import_rationales(shared_data / TEACHER, train)
    assert imported.mismatched.total() == 0 and imported.missing.total() == 0
    assert imported.unmatched.total() == len(test)  # the test split's rows, nothing else
    assert imported.kept.total() + imported.dropped.total() == len(train)
    assert imported.table().splitlines()[-1].split()[4:] == ["0", str(len(test))]

    shifted = [{**row, "index": row["index"] + 1} for row in read_jsonl(shared_data / TEACHER)]
    write_jsonl(tmp_path / "shifted.jsonl", shifted)
    with pytest.raises(SkinternError, match="offset"):
        import_rationales(tmp_path / "shifted.jsonl", train)


# ---------------------------------------------------------------- cache keyed on the endpoint


def test_cache_is_per_endpoint(tmp_path):
    with FakeOpenAI(reply=lambda _: "First server. So the answer is yes.") as one, \
            FakeOpenAI(reply=lambda _: "Second server. So the answer is no.") as two:
        first, second = config(tmp_path, one), config(tmp_path, two)  # same model name, same cache file
        assert first.model == second.model and first.cache_path == second.cache_path
        texts, _ = ask(first)
        assert texts == ["First server. So the answer is yes."]
        texts, usage = ask(second)
        assert texts == ["Second server. So the answer is no."] and (usage.cached, two.answered) == (0, 1)
        texts, usage = ask(config(tmp_path, one, base_url=one.base_url + "/"))  # same endpoint, other spelling
        assert texts == ["First server. So the answer is yes."]
        assert (usage.requests, usage.cached, one.answered) == (0, 1, 1)


def test_entries_keyed_without_the_endpoint_are_asked_again(tmp_path):
    with FakeOpenAI() as server:
        cfg = config(tmp_path, server)
        params = {"temperature": cfg.temperature, "top_p": cfg.top_p, "max_tokens": cfg.max_tokens, "sample": 0}
        legacy = json.dumps({"model": cfg.model, "messages": MESSAGES, "params": params}, sort_keys=True)
        cache = ResponseCache(cfg.cache_path)
        cache.put(hashlib.sha256(legacy.encode()).hexdigest(), cfg.model, {}, Answer("stale. So the answer is no."))
        cache.close()
        texts, usage = ask(cfg)
    assert texts[0].endswith("So the answer is yes.")
    assert (usage.cached, server.answered) == (0, 1)
