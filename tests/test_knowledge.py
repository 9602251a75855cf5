"""KnowledgeStore: loading the teacher's knowledge file strictly, and joining it with examples."""

from __future__ import annotations

import json

import pytest

from skintern.data import Example
from skintern.errors import SkinternError
from skintern.knowledge import KnowledgeRecord, KnowledgeStore


def _row(task="navigate", index=3, summary="1. Track position.", knowledge="1. Steps add up."):
    return {"task": task, "index": index, "summary": summary, "knowledge": knowledge}


def _write(path, rows):
    path.write_text("".join(r if isinstance(r, str) else json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_loads_real_teacher_knowledge(shared_data):
    store = KnowledgeStore.load(shared_data / "bbh" / "teacher" / "knowledge.jsonl")
    assert len(store) == 1080
    first = store.records()[0]
    assert (first.task, first.index) in store
    assert store.get(first.task, first.index) is first
    assert len({r.task for r in store.records()}) == 27


def test_text_layout():
    record = KnowledgeRecord("navigate", 3, "1. Track position.", "1. Steps add up.")
    assert record.text() == "Learning summary:\n1. Track position.\nSupplementary knowledge:\n1. Steps add up."


def test_get_missing_and_contains(tmp_path):
    store = KnowledgeStore.load(_write(tmp_path / "k.jsonl", [_row(), _row(index=4)]))
    assert store.get("navigate", 5) is None
    assert ("navigate", 4) in store and ("snarks", 4) not in store


@pytest.mark.parametrize(
    ("bad", "field"),
    [({"index": "3"}, "index"), ({"index": True}, "index"), ({"index": -1}, "index"), ({"task": 7}, "task"),
     ({"summary": ""}, "summary"), ({"knowledge": None}, "knowledge")],
)
def test_bad_field_names_file_line_and_field(tmp_path, bad, field):
    path = _write(tmp_path / "k.jsonl", [_row(), "\n", _row(index=9) | bad])
    with pytest.raises(SkinternError, match=rf"k\.jsonl:3: field '{field}'"):
        KnowledgeStore.load(path)


def test_missing_field_and_duplicate_are_errors(tmp_path):
    row = _row()
    del row["knowledge"]
    with pytest.raises(SkinternError, match=r"k\.jsonl:1: missing field 'knowledge'"):
        KnowledgeStore.load(_write(tmp_path / "k.jsonl", [row]))
    with pytest.raises(SkinternError, match=r"d\.jsonl:2: duplicate \(task, index\)"):
        KnowledgeStore.load(_write(tmp_path / "d.jsonl", [_row(), _row()]))


def test_split_covered_keeps_order(tmp_path):
    store = KnowledgeStore.load(_write(tmp_path / "k.jsonl", [_row(index=1), _row(index=3)]))
    examples = [Example("bbh", "navigate", i, f"q{i}", "Yes", "yes_no") for i in range(4)]
    covered, uncovered = store.split_covered(examples)
    assert [e.index for e in covered] == [1, 3]
    assert [e.index for e in uncovered] == [0, 2]
