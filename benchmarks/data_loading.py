"""Time to load a large user source the way `skintern run` does: a 100,000-row JSONL task with its own field
names, a rationale file and a knowledge file keyed by id, and a held-out test file, read through the config
(`load_config` -> `load_run_data`: read with `datasets`, map fields, check rows, match rationales and knowledge
to items, drop train items that repeat a test question). Everything lives in a temp dir.

    PYTHONPATH=src python benchmarks/data_loading.py [--rows 100000]

Target: under 15 s on 2 CPU cores. Wall time counts other processes' share of the cores, so the CPU time
(this process, all its threads) and the load average are printed next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import yaml

from skintern.config import load_config
from skintern.methods.rundata import load_run_data


def write_source(folder: Path, rows: int) -> Path:
    """task.jsonl, rationales.jsonl, knowledge.jsonl, test.jsonl and the config naming them; returns the config."""
    def item(i: int) -> tuple[str, int]:
        return f"What is {i} plus {i * 7 % 13}, in a task about {['sums', 'totals', 'counts'][i % 3]}?", i + i * 7 % 13

    with (folder / "task.jsonl").open("w") as task, (folder / "rationales.jsonl").open("w") as rationales, \
            (folder / "knowledge.jsonl").open("w") as knowledge:
        for i in range(rows):
            question, answer = item(i)
            task.write(json.dumps({"qid": f"item-{i}", "prompt": question, "gold": answer, "topic": f"t{i % 20}"}) + "\n")
            rationales.write(json.dumps({"id": f"item-{i}", "rationale": f"We add {i} and {i * 7 % 13}, which makes "
                                         f"{answer}. So the answer is {answer}."}) + "\n")
            if i % 2 == 0:
                knowledge.write(json.dumps({"id": f"item-{i}", "summary": "1. Read both numbers.\n2. Add them.",
                                            "knowledge": "1. Addition is commutative.\n2. Carry tens."}) + "\n")
    with (folder / "test.jsonl").open("w") as test:
        for i in range(rows, rows + 1000):
            question, answer = item(i)
            test.write(json.dumps({"qid": f"item-{i}", "prompt": question, "gold": answer, "topic": f"t{i % 20}"}) + "\n")
    fields = {"question": "prompt", "answer": "gold", "id": "qid", "task": "topic"}
    config = {"name": "bench", "output_dir": str(folder / "runs"),
              "data": {"train": [{"name": "sums", "path": str(folder / "task.jsonl"), "fields": fields,
                                  "rationales": str(folder / "rationales.jsonl"),
                                  "knowledge": str(folder / "knowledge.jsonl")}]},
              "eval": {"datasets": [{"name": "sums-test", "path": str(folder / "test.jsonl"), "fields": fields}]}}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="skintern-bench-") as tmp:
        config = write_source(Path(tmp), args.rows)
        start, cpu = time.perf_counter(), time.process_time()
        cfg = load_config(config)
        rd = load_run_data(cfg.data, cfg.eval)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"{args.rows:,} rows: {len(rd.train):,} train items with a rationale, {len(rd.knowledge):,} with knowledge, "
          f"{len(rd.tests['sums-test']):,} test items")
    print(f"load time: {seconds:.1f} s wall, {cpu:.1f} s CPU (config -> datasets -> field mapping -> rationale/knowledge "
          f"matching); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
