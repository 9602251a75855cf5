"""Long steps that used to print nothing show a progress bar on stderr: knowledge compression and example retrieval."""

from __future__ import annotations

from skintern.compression import _Compressor
from skintern.data import Example
from skintern.retrieval import ExampleRetriever


class Halves(_Compressor):
    name, cache = "halves", None

    def _compress_uncached(self, texts, rate):
        for text in texts:
            yield text[: len(text) // 2]


def test_compression_counts_the_distinct_texts_it_compresses(capsys):
    assert Halves().compress_many(["abcd", "efgh", "abcd", "  "], 0.5) == ["ab", "ef", "ab", "  "]
    err = capsys.readouterr().err
    assert "compress (keep 0.5)" in err and "2/2" in err
    assert Halves().compress_many(["  "], 0.5) == ["  "]  # nothing to compress: no bar
    assert capsys.readouterr().err == ""


def test_retrieval_counts_the_queries_it_ranks(capsys):
    pool = [Example("bbh", "t", i, q, "Yes", "yes_no") for i, q in enumerate(["red apples", "green pears", "red wine"])]
    hits = ExampleRetriever(pool, embedder="tfidf").top_k_many(pool, 1)
    assert [[h.index for h in found] for found in hits] == [[2], [0], [0]]
    err = capsys.readouterr().err
    assert "retrieve top-1" in err and "3/3" in err
