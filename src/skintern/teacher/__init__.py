"""Teacher data: import published rationales, or generate rationales and knowledge from an endpoint.

`import_rationales` reads a rationale file in the `{"task","index","rationale","target"}` shape
(the shared code-davinci-002 CoT, or what `skintern teach` wrote) and keeps only rationales
whose extracted answer is correct."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from skintern.data import Example, extract_answer, is_correct
from skintern.files import read_jsonl

RATIONALE_FIELDS = ("task", "index", "rationale")


@dataclass
class ImportedRationales:
    by_id: dict[str, str]  # example id -> the first correct rationale
    kept: Counter = field(default_factory=Counter)  # per task
    dropped: Counter = field(default_factory=Counter)  # wrong answer, per task
    missing: Counter = field(default_factory=Counter)  # no rationale at all, per task

    def table(self) -> str:
        tasks = sorted(set(self.kept) | set(self.dropped) | set(self.missing))
        lines = [f"{'task':<44} kept  wrong  missing"]
        lines += [f"{t:<44} {self.kept[t]:>4}  {self.dropped[t]:>5}  {self.missing[t]:>7}" for t in tasks]
        lines.append(f"{'total':<44} {sum(self.kept.values()):>4}  {sum(self.dropped.values()):>5}  {sum(self.missing.values()):>7}")
        return "\n".join(lines)


def import_rationales(path: str | Path, examples: Sequence[Example]) -> ImportedRationales:
    """Match rationale records to `examples` by (task, index); keep one correct rationale per example."""
    by_key: dict[tuple[str, int], list[str]] = {}
    for row in read_jsonl(path, required=RATIONALE_FIELDS):
        by_key.setdefault((row["task"], int(row["index"])), []).append(row["rationale"])
    result = ImportedRationales(by_id={})
    for ex in examples:
        candidates = by_key.get((ex.task, ex.index))
        if not candidates:
            result.missing[ex.task] += 1
            continue
        good = next((r for r in candidates if is_correct(extract_answer(r, ex.kind, ex.options), ex)), None)
        if good is None:
            result.dropped[ex.task] += 1
        else:
            result.by_id[ex.id] = good
            result.kept[ex.task] += 1
    return result
