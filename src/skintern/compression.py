"""Token-level compression of the teacher's knowledge to a keep-rate, as SKIntern's schedule asks.

`SelfInformationCompressor` is LLMLingua-style: a local causal LM scores every token by its
self-information -log p(token | prefix) and the most predictable tokens are dropped, in order,
until round(rate * n) tokens remain. The structure the student learns to follow is kept first: the
two section headers (whole), line breaks and the list markers that open a line ("1.", "2)", "-").
It counts against that budget, so the keep-rate is the one the schedule asks for; where a rate is
too low for all of it (0.2, for over half the records in SmolLM2 tokens), the last list markers go first.
Results and token scores go to a `CompressionCache` (SQLite) so every (scorer, text, rate) is
computed once, across runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import sqlite3
import time
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from skintern.errors import SkinternError
from skintern.student import load_student

SECTION_HEADERS = ("Learning summary:", "Supplementary knowledge:")  # as `KnowledgeRecord.text()` writes them
# The structure compression keeps first, most important first: the section headers (whole), line breaks,
# then the list markers that open a line. Numbers elsewhere are scored like any other token.
FORCED_RES = (
    re.compile("^(?:" + "|".join(map(re.escape, SECTION_HEADERS)) + ")", re.MULTILINE),
    re.compile(r"\n"),
    re.compile(r"^[ \t]*(?:\d+[.)]|[-*•])(?=[ \t])", re.MULTILINE),
)
# Part of every cached compression's key, so outputs of an older rule (v1 forced every number on top of
# the budget) are never returned; bump the version when the selection changes in any other way.
SELECTION_RULE = "v2:" + "|".join(r.pattern for r in FORCED_RES)
MAX_BATCH_TOKENS = 2048  # bounds the (batch, length, vocab) logits tensor of one scoring forward
DRIFT_ROUNDS = 8  # re-selections allowed to cancel re-tokenisation drift
COMPRESSOR_KINDS = ("self-info", "llmlingua2")


def check_rate(rate: float) -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1:
        raise SkinternError(f"compression rate: expected a number in (0, 1], got {rate!r}")
    return float(rate)


def count_tokens(text: str, tokenizer) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def keep_rate(original: str, compressed: str, tokenizer) -> float:
    """Fraction of the original's tokens left, both counted by the same tokenizer."""
    n = count_tokens(original, tokenizer)
    if n == 0:
        raise SkinternError("keep_rate: the original text has no tokens")
    return count_tokens(compressed, tokenizer) / n


# ---------------------------------------------------------------- cache


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode("utf-8")).hexdigest()


_LOCK_WAIT_S = 60


class _CacheLocked(SkinternError):
    """Another process holds the cache's lock past SQLite's own wait."""


class CompressionCache:
    """Compressed texts (and token scores) on disk; SQLite keeps concurrent runs from corrupting it."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Switching a new file to WAL needs an exclusive lock and SQLite answers "locked" at once,
        # without waiting, when another process (a second rank) is creating the same cache: retry.
        deadline = time.monotonic() + _LOCK_WAIT_S
        while True:
            try:
                with self._db() as db:
                    db.execute("PRAGMA journal_mode=WAL")
                    db.execute("CREATE TABLE IF NOT EXISTS compressed (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                    db.execute("CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                return
            except _CacheLocked:
                if time.monotonic() > deadline:
                    raise SkinternError(f"{self.path}: compression cache stayed locked for {_LOCK_WAIT_S} s") from None
                time.sleep(0.05)

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """One short-lived connection per call, so the cache is safe across processes and threads."""
        try:
            db = sqlite3.connect(self.path, timeout=60)
        except sqlite3.Error as e:
            raise SkinternError(f"{self.path}: cannot open compression cache ({e})") from None
        try:
            with db:
                yield db
        except sqlite3.OperationalError as e:
            if "locked" in str(e):
                raise _CacheLocked(f"{self.path}: compression cache is locked by another process ({e})") from None
            raise SkinternError(f"{self.path}: compression cache is not a usable SQLite file ({e})") from None
        except sqlite3.DatabaseError as e:
            raise SkinternError(f"{self.path}: compression cache is not a usable SQLite file ({e})") from None
        finally:
            db.close()

    def _get(self, table: str, key: str) -> str | None:
        with self._db() as db:
            row = db.execute(f"SELECT value FROM {table} WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _put(self, table: str, key: str, value: str) -> None:
        with self._db() as db:
            db.execute(f"INSERT OR REPLACE INTO {table} (key, value) VALUES (?, ?)", (key, value))

    def get(self, scorer: str, rate: float, text: str, rule: str = "") -> str | None:
        return self._get("compressed", _digest(scorer, rule, round(rate, 3), text))

    def put(self, scorer: str, rate: float, text: str, compressed: str, rule: str = "") -> None:
        self._put("compressed", _digest(scorer, rule, round(rate, 3), text), compressed)

    def get_scores(self, scorer: str, text: str) -> list[float] | None:
        value = self._get("scores", _digest(scorer, text))
        return None if value is None else json.loads(value)

    def put_scores(self, scorer: str, text: str, scores: Sequence[float]) -> None:
        self._put("scores", _digest(scorer, text), json.dumps(list(scores)))

    def size(self) -> int:
        """Number of cached compressed texts (a method, not __len__, so an empty cache is still truthy)."""
        with self._db() as db:
            return db.execute("SELECT COUNT(*) FROM compressed").fetchone()[0]


# ---------------------------------------------------------------- token selection


def select_tokens(scores: Sequence[float], priority: Sequence[int], budget: int) -> list[int]:
    """The `budget` positions to keep, in text order. Forced structure comes first, so it counts against
    the budget: class by class (`forced_priorities`), each in text order, so structure that does not
    fit loses its last markers whole; free tokens follow, highest score first."""
    priority = np.asarray(priority)
    free_order = np.where(priority == len(FORCED_RES), -np.asarray(scores, dtype=float), 0.0)
    order = np.lexsort((free_order, priority))  # stable: ties stay in text order
    return sorted(order[:budget].tolist())


def forced_priorities(text: str, offsets: Sequence[tuple[int, int]]) -> list[int]:
    """Per token, the index in FORCED_RES of the first structure it overlaps (section header, line
    break, list marker), or len(FORCED_RES) for a free token, which is kept by score."""
    spans = [[m.span() for m in pattern.finditer(text)] for pattern in FORCED_RES]
    return [
        next((k for k, found in enumerate(spans) if any(s < end and start < e for s, e in found)), len(spans))
        for start, end in offsets
    ]


class _Compressor:
    """compress/compress_many over a cache; subclasses implement `_compress_uncached`."""

    name: str
    cache: CompressionCache | None
    rule = ""  # the selection rule's version, part of the cache key

    def compress(self, text: str, rate: float) -> str:
        return self.compress_many([text], rate)[0]

    def compress_many(self, texts: Sequence[str], rate: float) -> list[str]:
        rate = check_rate(rate)
        if rate == 1.0:
            return list(texts)
        done: dict[str, str] = {}
        for text in dict.fromkeys(texts):
            hit = self.cache.get(self.name, rate, text, self.rule) if self.cache is not None else None
            if hit is not None:
                done[text] = hit
            elif not text.strip():
                done[text] = text
        todo = [t for t in dict.fromkeys(texts) if t not in done]
        pairs = tqdm(zip(todo, self._compress_uncached(todo, rate)), total=len(todo), desc=f"compress (keep {rate:g})",
                     unit="text", disable=not todo)
        for text, compressed in pairs:
            done[text] = compressed
            if self.cache is not None:
                self.cache.put(self.name, rate, text, compressed, self.rule)
        return [done[t] for t in texts]

    def _compress_uncached(self, texts: list[str], rate: float) -> Iterable[str]:
        """The compressed texts in order, yielded as they are done (a progress bar counts them)."""
        raise NotImplementedError


class SelfInformationCompressor(_Compressor):
    """Drop the tokens a local causal LM finds most predictable (lowest -log p(token | prefix))."""

    rule = SELECTION_RULE

    def __init__(self, model, tokenizer, cache: CompressionCache | None = None, name: str | None = None):
        if not getattr(tokenizer, "is_fast", False):
            raise SkinternError("self-info compression needs a fast tokenizer (one with offset mappings)")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.cache = cache
        self.name = name or f"self-info:{getattr(model.config, 'name_or_path', '')}"
        self._scores: dict[str, list[float]] = {}

    def _compress_uncached(self, texts: list[str], rate: float) -> Iterator[str]:
        encodings = [self._encode(t) for t in texts]
        self._score_missing(texts, [ids for ids, _ in encodings])
        for text, (ids, offsets) in zip(texts, encodings):
            yield self._compress_one(text, ids, offsets, rate)

    def _encode(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return enc["input_ids"], [tuple(o) for o in enc["offset_mapping"]]

    def _compress_one(self, text: str, ids: list[int], offsets: list[tuple[int, int]], rate: float) -> str:
        """Select round(rate*n) tokens, then re-select until the re-tokenised output has that many."""
        priority = forced_priorities(text, offsets)
        budget = max(round(rate * len(ids)), 1)
        scores = self._scores[text]
        target, best, best_gap = budget, text, math.inf
        for _ in range(DRIFT_ROUNDS):
            out = self._render(ids, offsets, text, select_tokens(scores, priority, target))
            gap = count_tokens(out, self.tokenizer) - budget
            if abs(gap) < abs(best_gap):
                best, best_gap = out, gap
            if gap == 0:
                break
            new_target = min(max(target - gap, 1), len(ids))
            if new_target == target:
                break
            target = new_target
        return best

    def _render(self, ids: list[int], offsets: list[tuple[int, int]], text: str, keep: list[int]) -> str:
        """Decode each run of consecutive kept tokens together (byte-level pieces stay whole) and
        keep words apart: a space goes between runs where the dropped gap held whitespace or where
        two word fragments would otherwise glue into a new word."""
        runs: list[list[int]] = []
        for i in keep:
            if runs and runs[-1][-1] == i - 1:
                runs[-1].append(i)
            else:
                runs.append([i])
        out, end = "", 0
        for run in runs:
            piece = self.tokenizer.decode([ids[i] for i in run], clean_up_tokenization_spaces=False)
            gap = text[end : offsets[run[0]][0]]
            if out and piece and not out[-1].isspace() and not piece[0].isspace():
                if any(c.isspace() for c in gap) or (out[-1].isalnum() and piece[0].isalnum()):
                    out += " "
            out += piece
            end = offsets[run[-1]][1]
        return out

    def _score_missing(self, texts: list[str], all_ids: list[list[int]]) -> None:
        """Fill the score memo from the disk cache, then score the rest with batched forwards."""
        missing = []
        for text, ids in zip(texts, all_ids):
            if text in self._scores:
                continue
            stored = self.cache.get_scores(self.name, text) if self.cache is not None else None
            if stored is not None and len(stored) == len(ids):
                self._scores[text] = stored
            else:
                missing.append((text, ids))
        for (text, _), scores in zip(missing, self._score_ids([ids for _, ids in missing])):
            self._scores[text] = scores
            if self.cache is not None:
                self.cache.put_scores(self.name, text, scores)

    def _score_ids(self, all_ids: list[list[int]]) -> list[list[float]]:
        """Self-information of every token. Texts longer than the model's context are cut into
        windows that restart after the start token; a token with no prefix at all scores +inf (kept)."""
        start = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.tokenizer.eos_token_id
        prefix = [] if start is None else [start]
        width = min(getattr(self.model.config, "max_position_embeddings", None) or 1024, 1024) - len(prefix)
        pieces = [(b, lo, ids[lo : lo + width]) for b, ids in enumerate(all_ids) for lo in range(0, len(ids), width)]
        pieces.sort(key=lambda piece: len(piece[2]))
        out = [[math.inf] * len(ids) for ids in all_ids]
        with tqdm(total=sum(len(chunk) for _, _, chunk in pieces), desc="compress: score tokens", unit="tok",
                  disable=not pieces) as bar:
            for batch in _batches(pieces):
                for (b, lo, chunk), values in zip(batch, self._forward(prefix, [chunk for _, _, chunk in batch])):
                    out[b][lo + 1 - len(prefix) : lo + len(chunk)] = values
                    bar.update(len(chunk))
        return out

    @torch.no_grad()
    def _forward(self, prefix: list[int], chunks: list[list[int]]) -> list[list[float]]:
        """-log p(token | prefix) for each scorable token of each chunk, in one padded forward."""
        rows = [prefix + chunk for chunk in chunks]
        length = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        device = next(self.model.parameters()).device
        input_ids = torch.tensor([r + [pad] * (length - len(r)) for r in rows], device=device)
        mask = torch.tensor([[1] * len(r) + [0] * (length - len(r)) for r in rows], device=device)
        logits = self.model(input_ids=input_ids, attention_mask=mask).logits[:, :-1].float()
        info = logits.logsumexp(-1) - logits.gather(-1, input_ids[:, 1:, None])[..., 0]
        return [info[i, : len(r) - 1].tolist() for i, r in enumerate(rows)]


def _batches(pieces: list[tuple[int, int, list[int]]]) -> Iterator[list[tuple[int, int, list[int]]]]:
    """Consecutive groups whose padded size stays under MAX_BATCH_TOKENS (pieces sorted by length)."""
    batch: list[tuple[int, int, list[int]]] = []
    for piece in pieces:
        if batch and len(piece[2]) * (len(batch) + 1) > MAX_BATCH_TOKENS:
            yield batch
            batch = []
        batch.append(piece)
    if batch:
        yield batch


class LLMLingua2Compressor(_Compressor):
    """Microsoft's LLMLingua-2 token classifier, through the optional `llmlingua` package."""

    def __init__(self, model_path: str, cache: CompressionCache | None = None, name: str | None = None):
        try:
            from llmlingua import PromptCompressor
        except ImportError:
            raise SkinternError("llmlingua2 compression needs the llmlingua package: `pip install llmlingua`") from None
        self.compressor = PromptCompressor(model_name=str(model_path), use_llmlingua2=True, device_map="cpu")
        self.cache = cache
        self.name = name or f"llmlingua2:{model_path}"

    def _compress_uncached(self, texts: list[str], rate: float) -> Iterator[str]:
        return (self._compress_one(t, rate) for t in texts)

    def _compress_one(self, text: str, rate: float) -> str:
        result = self.compressor.compress_prompt(
            [text], rate=rate, force_tokens=["\n", ".", ")"], force_reserve_digit=False, drop_consecutive=True
        )
        return result["compressed_prompt"]


def build_compressor(kind: str, *, model=None, tokenizer=None, model_path=None, cache_path=None) -> _Compressor:
    """A compressor from config: "self-info" takes a loaded model+tokenizer or a local model folder;
    "llmlingua2" takes the folder of a local LLMLingua-2 token-classification model."""
    cache = CompressionCache(cache_path) if cache_path is not None else None
    if kind == "self-info":
        if model is None or tokenizer is None:
            if model_path is None:
                raise SkinternError("compression kind 'self-info': pass model and tokenizer, or model_path")
            model, tokenizer = _load_causal_lm(model_path)
        return SelfInformationCompressor(model, tokenizer, cache=cache)
    if kind == "llmlingua2":
        if model_path is None:
            raise SkinternError("compression kind 'llmlingua2': model_path (a local LLMLingua-2 model folder) is required")
        return LLMLingua2Compressor(model_path, cache=cache)
    raise SkinternError(f"compression kind: expected one of {', '.join(COMPRESSOR_KINDS)}, got {kind!r}")


def _load_causal_lm(model_path: str | os.PathLike):
    """The scorer model from a local folder or a student alias, via the student loader's cache."""
    student = load_student(str(model_path))
    return student.model, student.tokenizer
