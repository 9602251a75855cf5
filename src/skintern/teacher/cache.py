"""Persistent response cache: every teacher answer is committed the moment it arrives, so a
killed run loses nothing and a restarted one never pays for the same request twice."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY, model TEXT NOT NULL, request TEXT NOT NULL, text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, created REAL NOT NULL, finish_reason TEXT)"""


@dataclass(frozen=True)
class Answer:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    """Why the server stopped ("length": at max_tokens); None in rows cached before it was kept."""


def request_key(base_url: str, model: str, messages: list[dict] | str, params: dict) -> str:
    """Stable hash of everything that determines an answer (params include the sample index).

    `messages` is a chat request's messages or a completions request's prompt text.
    The endpoint is part of it: two servers may serve different weights under one model name.
    Entries written before the endpoint was keyed simply never match, so they are asked again."""
    request = {"base_url": base_url.rstrip("/"), "model": model, "messages": messages, "params": params}
    blob = json.dumps(request, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    """SQLite in WAL mode, autocommit: one committed row per response."""

    def __init__(self, path: str | Path):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable across a killed process; WAL keeps it consistent
        self._db.execute(_SCHEMA)
        if "finish_reason" not in {row[1] for row in self._db.execute("PRAGMA table_info(responses)")}:
            self._db.execute("ALTER TABLE responses ADD COLUMN finish_reason TEXT")  # a cache from before it was kept

    def get(self, key: str) -> Answer | None:
        row = self._db.execute(
            "SELECT text, prompt_tokens, completion_tokens, finish_reason FROM responses WHERE key = ?", (key,)
        ).fetchone()
        return Answer(*row) if row else None

    def put(self, key: str, model: str, request: dict, answer: Answer) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO responses (key, model, request, text, prompt_tokens, completion_tokens, created, "
            "finish_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (key, model, json.dumps(request, ensure_ascii=False), answer.text,
             answer.prompt_tokens, answer.completion_tokens, time.time(), answer.finish_reason),
        )

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        self._db.close()
