"""Turn training examples into teacher data: rationales.jsonl and knowledge.jsonl.

All prompts are built before the first request (bad input fails for free); every answer lands in
the cache as it arrives; the output files are written atomically once everything is answered, so
rerunning the same command after a crash re-derives them from the cache and pays only for the rest."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from tqdm import tqdm

from skintern.data import Example, extract_answer, is_correct
from skintern.files import write_json, write_jsonl
from skintern.teacher.cache import ResponseCache
from skintern.teacher.client import TeacherClient
from skintern.teacher.config import TeacherConfig
from skintern.teacher.prompts import (clean_rationale, knowledge_messages, knowledge_problem, load_template,
                                      rationale_messages, repair_message)


def generate_rationales(examples: Sequence[Example], config: TeacherConfig, out_dir: str | Path,
                        data_dir: str | Path | None = None) -> dict:
    """n_samples CoT rationales per example, kept only when their answer is the gold one.

    Writes <out_dir>/rationales.jsonl ({"task","index","rationale","target","sample"}) and
    rationales_counts.json; returns those counts (kept/dropped per task, token usage, cost)."""
    template = load_template(config.prompt_template) if config.prompt_template else None
    prompts = [rationale_messages(ex, Path(data_dir) if data_dir else None, template) for ex in examples]

    async def one(client: TeacherClient, k: int) -> list[dict]:
        ex = examples[k]
        texts = await asyncio.gather(*(client.complete(prompts[k], sample=s) for s in range(config.n_samples)))
        rows = []
        for s, text in enumerate(texts):
            rationale = clean_rationale(text)
            ok = rationale is not None and is_correct(extract_answer(rationale, ex.kind, ex.options), ex)
            rows.append({"task": ex.task, "index": ex.index, "rationale": rationale, "target": ex.answer,
                         "sample": s, "kept": ok})
        return rows

    results, usage = _run(config, len(examples), one, "rationales")
    counts: dict[str, Counter] = defaultdict(lambda: Counter(kept=0, dropped=0))
    kept = []
    for row in (row for result in results for row in result):
        ok = row.pop("kept")
        counts[row["task"]]["kept" if ok else "dropped"] += 1
        if ok:
            kept.append(row)
    return _finish(Path(out_dir), "rationales", kept, counts, usage)


def generate_knowledge(examples: Sequence[Example], config: TeacherConfig, out_dir: str | Path) -> dict:
    """SKIntern symbolic knowledge per example, re-asked up to knowledge_attempts times when invalid.

    Writes <out_dir>/knowledge.jsonl ({"task","index","summary","knowledge"}) and
    knowledge_counts.json (valid / invalid / reasked per task, usage, cost)."""
    prompts = [knowledge_messages(ex) for ex in examples]

    async def one(client: TeacherClient, k: int) -> tuple[dict | None, int]:
        ex, messages = examples[k], prompts[k]
        for attempt in range(config.knowledge_attempts):
            reply = await client.complete(messages)
            parsed, problem = knowledge_problem(reply, ex)
            if problem is None:
                return {"task": ex.task, "index": ex.index, "summary": parsed[0], "knowledge": parsed[1]}, attempt
            messages = messages + [{"role": "assistant", "content": reply}, repair_message(problem)]
        return None, config.knowledge_attempts - 1

    results, usage = _run(config, len(examples), one, "knowledge")
    counts: dict[str, Counter] = defaultdict(lambda: Counter(valid=0, invalid=0, reasked=0))
    for ex, (row, reasked) in zip(examples, results):
        counts[ex.task]["valid" if row else "invalid"] += 1
        counts[ex.task]["reasked"] += reasked
    return _finish(Path(out_dir), "knowledge", [row for row, _ in results if row], counts, usage)


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


def _finish(out_dir: Path, what: str, rows: list[dict], counts: dict[str, Counter], usage) -> dict:
    summary = {"tasks": {task: dict(c) for task, c in counts.items()}, "usage": usage.as_dict(),
               "path": str(out_dir / f"{what}.jsonl")}
    for key in {k for c in counts.values() for k in c}:
        summary[key] = sum(c[key] for c in counts.values())
    write_jsonl(out_dir / f"{what}.jsonl", rows)
    write_json(out_dir / f"{what}_counts.json", summary)
    return summary
