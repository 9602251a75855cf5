"""The teacher's symbolic knowledge (learning summary + supplementary knowledge) per training item.

SKIntern feeds this text, compressed stage by stage, into the student's input; the store is keyed by
(task, index) so it joins with `skintern.data.Example`s of the same benchmark files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from skintern.errors import SkinternError
from skintern.files import check_item_row, numbered_jsonl

FIELDS = ("task", "index", "summary", "knowledge")


@dataclass(frozen=True)
class KnowledgeRecord:
    task: str
    index: int
    summary: str
    knowledge: str

    def text(self, parts: Sequence[str] = ("summary", "supplementary")) -> str:
        """The block the student sees, of the parts named (an ablation drops one with its header); headers stay
        fixed so compression keeps them as anchors."""
        blocks = {"summary": f"Learning summary:\n{self.summary}", "supplementary": f"Supplementary knowledge:\n{self.knowledge}"}
        return "\n".join(blocks[p] for p in blocks if p in parts)


def _record(row: dict, where: str) -> KnowledgeRecord:
    check_item_row(row, where, ("summary", "knowledge"))
    return KnowledgeRecord(row["task"], row["index"], row["summary"], row["knowledge"])


class KnowledgeStore:
    """Knowledge records keyed by (task, index)."""

    def __init__(self, records: Iterable[KnowledgeRecord] = ()):
        self._records: dict[tuple[str, int], KnowledgeRecord] = {}
        for record in records:
            key = (record.task, record.index)
            if key in self._records:
                raise SkinternError(f"duplicate knowledge record for task {record.task!r} index {record.index}")
            self._records[key] = record

    @classmethod
    def load(cls, path: str | os.PathLike) -> "KnowledgeStore":
        path = Path(path)
        records: dict[tuple[str, int], KnowledgeRecord] = {}
        for lineno, row in numbered_jsonl(path, required=FIELDS):
            record = _record(row, f"{path}:{lineno}")
            key = (record.task, record.index)
            if key in records:
                raise SkinternError(f"{path}:{lineno}: duplicate (task, index) = ({record.task!r}, {record.index})")
            records[key] = record
        return cls(records.values())

    def get(self, task: str, index: int) -> KnowledgeRecord | None:
        return self._records.get((task, index))

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, key: object) -> bool:
        return key in self._records

    def __iter__(self) -> Iterator[KnowledgeRecord]:
        return iter(self._records.values())

    def records(self) -> list[KnowledgeRecord]:
        return list(self._records.values())

    def split_covered(self, examples: Iterable) -> tuple[list, list]:
        """(examples with knowledge, examples without), each in input order."""
        covered, uncovered = [], []
        for ex in examples:
            (covered if (ex.task, ex.index) in self._records else uncovered).append(ex)
        return covered, uncovered
