"""Teacher data: import published rationales, or generate rationales and knowledge from an endpoint.

`import_rationales` reads a rationale file in the `{"task","index","rationale","target"}` shape
(the shared code-davinci-002 CoT, or what `skintern teach` wrote) and keeps only rationales
whose extracted answer is correct. A row is matched to its item by (task, index) *and* by content:
its `target` must be the item's gold answer, so a file with shifted indices cannot pass off
rationales written for other questions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from skintern.data import Example, extract_answer, is_correct, normalize_answer
from skintern.errors import SkinternError
from skintern.files import check_item_row, numbered_jsonl

RATIONALE_FIELDS = ("task", "index", "rationale", "target")
MAX_MISMATCHED = 0.5  # above this share of target disagreements the file's indices are wrong, not a few rows
OTHER_TASKS = "(other tasks)"  # unmatched rows of tasks that have no item in the selection


@dataclass
class ImportedRationales:
    by_id: dict[str, str]  # example id -> the first correct rationale
    kept: Counter = field(default_factory=Counter)  # per task
    dropped: Counter = field(default_factory=Counter)  # wrong answer, per task
    missing: Counter = field(default_factory=Counter)  # no usable rationale at all, per task
    mismatched: Counter = field(default_factory=Counter)  # rows whose target is not the item's gold answer, per task
    unmatched: Counter = field(default_factory=Counter)  # rows naming no item of the selection, per task

    def table(self) -> str:
        counters = (self.kept, self.dropped, self.missing, self.mismatched, self.unmatched)
        tasks = sorted(set().union(*counters), key=lambda t: (t == OTHER_TASKS, t))
        rows = [(t, [c[t] for c in counters]) for t in tasks] + [("total", [c.total() for c in counters])]
        lines = [f"{'task':<44} kept  wrong  missing  target-mismatch  unmatched"]
        lines += [f"{t:<44} {k:>4}  {w:>5}  {m:>7}  {x:>15}  {u:>9}" for t, (k, w, m, x, u) in rows]
        return "\n".join(lines)


def import_rationales(path: str | Path, examples: Sequence[Example]) -> ImportedRationales:
    """Match rationale records to `examples` by (task, index) and gold target; keep one correct rationale each.

    Rows naming no item of `examples` (another split or task, or no such item) are counted as unmatched;
    rows whose `target` disagrees with the item's gold answer are counted and never kept. When most
    rows that name an item disagree, the file is rejected: its indices are offset."""
    items = {(ex.task, ex.index): ex for ex in examples}
    tasks = {ex.task for ex in examples}
    result = ImportedRationales(by_id={})
    by_id: dict[str, list[str]] = {}
    for lineno, row in numbered_jsonl(path, required=RATIONALE_FIELDS):
        check_item_row(row, f"{path}:{lineno}", ("rationale", "target"))
        ex = items.get((row["task"], row["index"]))
        if ex is None:
            result.unmatched[row["task"] if row["task"] in tasks else OTHER_TASKS] += 1
        elif normalize_answer(row["target"], ex.kind) != ex.answer:
            result.mismatched[ex.task] += 1
        else:
            by_id.setdefault(ex.id, []).append(row["rationale"])
    named = result.mismatched.total() + sum(map(len, by_id.values()))
    if result.mismatched.total() > MAX_MISMATCHED * named:
        raise SkinternError(
            f"{path}: {result.mismatched.total()} of {named} rows disagree with their item's gold answer "
            f"(field 'target'); the 'index' values look offset (0- vs 1-based, or shifted rows)")
    for ex in examples:
        candidates = by_id.get(ex.id)
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
