"""Achieved keep-rate of self-info compression over every shared teacher knowledge record, per schedule rate:
mean, spread and share within +-0.05 of the rate (`keep_rate`, in the scorer's own tokens), and the share of
outputs that keep the whole structure (line breaks, both section headers, every "N." list marker).

    python benchmarks/compression_keep_rate.py [--scorer smollm2-135m] [--cache .bench-cache.sqlite]

With --cache, token scores (and compressions, keyed by selection rule) are kept on disk, so a rerun, or a run
of another checkout's selection (PYTHONPATH=that/src), re-selects without re-scoring. Scoring every record with
SmolLM2-135M takes roughly 15-30 min on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from skintern import data as D
from skintern.compression import CompressionCache, SelfInformationCompressor, keep_rate
from skintern.knowledge import KnowledgeStore
from skintern.student import load_student

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_compression import structure_kept  # noqa: E402  (the test's definition of an intact structure)

RATES = (0.2, 1 / 3, 0.5, 2 / 3, 0.8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scorer", default="smollm2-135m", help="student alias or local model folder")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--cache", default=None, help="CompressionCache file, reused across runs")
    args = ap.parse_args()
    path = D.resolve_data_dir(args.data_dir) / "bbh" / "teacher" / "knowledge.jsonl"
    texts = [r.text() for r in KnowledgeStore.load(path)]
    student = load_student(args.scorer)
    cache = CompressionCache(args.cache) if args.cache else None
    compressor = SelfInformationCompressor(student.model, student.tokenizer, cache=cache, name=f"self-info:{args.scorer}")
    print(f"{len(texts)} records, scorer and tokenizer {args.scorer}")
    print(f"{'rate':>6} {'mean':>6} {'std':>6} {'min':>6} {'max':>6} {'within':>7} {'structure':>9}")
    for rate in RATES:
        outs = compressor.compress_many(texts, rate)
        achieved = np.array([keep_rate(t, out, student.tokenizer) for t, out in zip(texts, outs)])
        within = np.mean(np.abs(achieved - rate) <= 0.05)
        kept = np.mean([structure_kept(t, out) for t, out in zip(texts, outs)])
        print(f"{rate:6.3f} {achieved.mean():6.3f} {achieved.std():6.3f} {achieved.min():6.3f} "
              f"{achieved.max():6.3f} {within:7.1%} {kept:9.1%}")


if __name__ == "__main__":
    main()
