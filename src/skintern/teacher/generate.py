"""Turn training examples into teacher data: rationales.jsonl and knowledge.jsonl.

All prompts are built before the first request (bad input fails for free); every answer lands in
the cache as it arrives; the output files are written atomically once everything is answered, so
rerunning the same command after a crash re-derives them from the cache and pays only for the rest."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from skintern.data import Example, extract_answer, is_correct
from skintern.files import write_json, write_jsonl
from skintern.teacher.cache import ResponseCache
from skintern.teacher.client import TeacherClient, Usage
from skintern.teacher.config import TeacherConfig
from skintern.teacher.prompts import (clean_rationale, knowledge_messages, knowledge_problem, load_template,
                                      rationale_messages, repair_message)


Key = Callable[[Example], dict]
"""The fields that name an item in an output row: {"task", "index"} for a built-in benchmark (what
data.teacher_cot / data.knowledge read), {"id"} for a user source (what its rationales: / knowledge: read)."""


def by_task_index(ex: Example) -> dict:
    return {"task": ex.task, "index": ex.index}


@dataclass
class Taught:
    """One generation step's output, held until every step of a command has finished, so a failure
    part-way writes nothing."""

    what: str
    rows: list[dict]
    counts: dict[str, Counter]
    usage: Usage
    first: dict[str, str] = field(default_factory=dict)
    """Example id -> its first kept rationale (rationale steps only): what its knowledge is written from."""

    def write(self, out_dir: str | Path) -> dict:
        """Writes <out_dir>/<what>.jsonl and <what>_counts.json; returns the counts (per task and in all, usage, cost)."""
        out_dir = Path(out_dir)
        summary = {"tasks": {task: dict(c) for task, c in self.counts.items()}, "usage": self.usage.as_dict(),
                   "path": str(out_dir / f"{self.what}.jsonl")}
        for key in {k for c in self.counts.values() for k in c}:
            summary[key] = sum(c[key] for c in self.counts.values())
        write_jsonl(out_dir / f"{self.what}.jsonl", self.rows)
        write_json(out_dir / f"{self.what}_counts.json", summary)
        return summary


def ask_rationales(examples: Sequence[Example], config: TeacherConfig, data_dir: str | Path | None = None,
                   key: Key = by_task_index) -> Taught:
    """n_samples CoT rationales per example at config.temperature, kept only when their extracted answer is the
    gold one (the evaluation's extraction and scoring); rows {**key, "rationale", "target", "sample"}."""
    template = load_template(config.prompt_template) if config.prompt_template else None
    prompts = [rationale_messages(ex, Path(data_dir) if data_dir else None, template) for ex in examples]

    async def one(client: TeacherClient, k: int) -> list[dict]:
        ex = examples[k]
        texts = await asyncio.gather(*(client.complete(prompts[k], sample=s) for s in range(config.n_samples)))
        rows = []
        for s, text in enumerate(texts):
            rationale = clean_rationale(text)
            ok = rationale is not None and is_correct(extract_answer(rationale, ex.kind, ex.options), ex)
            rows.append({**key(ex), "rationale": rationale, "target": ex.answer, "sample": s, "kept": ok})
        return rows

    results, usage = _run(config, len(examples), one, "rationales")
    counts: dict[str, Counter] = defaultdict(lambda: Counter(kept=0, dropped=0))
    kept, first = [], {}
    for ex, result in zip(examples, results):
        for row in result:
            ok = row.pop("kept")
            counts[ex.task]["kept" if ok else "dropped"] += 1
            if ok:
                kept.append(row)
                first.setdefault(ex.id, row["rationale"])
    return Taught("rationales", kept, counts, usage, first)


def ask_knowledge(examples: Sequence[Example], config: TeacherConfig, key: Key = by_task_index,
                  rationales: Mapping[str, str] | None = None) -> Taught:
    """SKIntern symbolic knowledge per example, from question + gold answer + its correct rationale in
    `rationales` (by example id) when it has one, re-asked up to knowledge_attempts times when invalid;
    rows {**key, "summary", "knowledge"}, the two parts apart so either can be ablated."""
    rationales = rationales or {}
    prompts = [knowledge_messages(ex, rationales.get(ex.id)) for ex in examples]

    async def one(client: TeacherClient, k: int) -> tuple[dict | None, int]:
        ex, messages = examples[k], prompts[k]
        for attempt in range(config.knowledge_attempts):
            reply = await client.complete(messages)
            parsed, problem = knowledge_problem(reply, ex)
            if problem is None:
                return {**key(ex), "summary": parsed[0], "knowledge": parsed[1]}, attempt
            messages = messages + [{"role": "assistant", "content": reply}, repair_message(problem)]
        return None, config.knowledge_attempts - 1

    results, usage = _run(config, len(examples), one, "knowledge")
    counts: dict[str, Counter] = defaultdict(lambda: Counter(valid=0, invalid=0, reasked=0, from_rationale=0))
    for ex, (row, reasked) in zip(examples, results):
        counts[ex.task]["valid" if row else "invalid"] += 1
        counts[ex.task]["reasked"] += reasked
        counts[ex.task]["from_rationale"] += ex.id in rationales
    return Taught("knowledge", [row for row, _ in results if row], counts, usage)


def generate_rationales(examples: Sequence[Example], config: TeacherConfig, out_dir: str | Path,
                        data_dir: str | Path | None = None) -> dict:
    """`ask_rationales` written to <out_dir>/rationales.jsonl (+ rationales_counts.json); returns the counts."""
    return ask_rationales(examples, config, data_dir).write(out_dir)


def generate_knowledge(examples: Sequence[Example], config: TeacherConfig, out_dir: str | Path,
                       rationales: Mapping[str, str] | None = None) -> dict:
    """`ask_knowledge` written to <out_dir>/knowledge.jsonl (+ knowledge_counts.json); returns the counts."""
    return ask_knowledge(examples, config, rationales=rationales).write(out_dir)


def _run(config: TeacherConfig, total: int, one: Callable[[TeacherClient, int], Awaitable], what: str):
    """Run `one` for every example under one client and cache; the first hard failure is raised
    after the requests already in flight have finished (and been cached)."""

    async def main():
        cache = ResponseCache(config.cache_path)
        client = TeacherClient(config, cache)
        with tqdm(total=total, desc=f"teacher {what}", unit="q", disable=None) as bar:

            async def tracked(k: int):
                result = await one(client, k)
                u = client.usage
                bar.set_postfix(sent=u.requests, cached=u.cached, usd=f"{u.cost_usd:.4f}", refresh=False)
                bar.update()
                return result

            try:
                results = await asyncio.gather(*(tracked(k) for k in range(total)), return_exceptions=True)
            finally:
                await client.aclose()
                cache.close()
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results, client.usage

    return asyncio.run(main())
