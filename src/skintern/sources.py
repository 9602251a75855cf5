"""User sources: a user's own task read through Hugging Face `datasets` (JSONL, JSON, CSV, Parquet, a
`save_to_disk` folder or a hub id) and mapped onto `Example`s, with the rationales and knowledge its fields
or side files carry.

Every row is checked before anything trains: a bad one is one error naming the source, the row and the field.
A user source's tasks are named "<source>" or "<source>/<task>", so the knowledge store's (task, index)
keys of two sources never collide, and an item's index is its row number in the source."""

from __future__ import annotations

import functools
import os
import random
import socket
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import datasets

from skintern.data import (SourceConfig, Example, answer_kind, extract_answer, is_correct, normalize_answer,
                           stated_answer)
from skintern.errors import SkinternError
from skintern.files import fingerprint
from skintern.knowledge import KnowledgeRecord

_SUFFIX_FORMATS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
_BUILDERS = {"jsonl": "json", "json": "json", "csv": "csv", "parquet": "parquet"}
_LABEL = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass
class Source:
    """One user source, read and checked: every row as an Example, and what it brings for training."""

    config: SourceConfig
    items: list[Example]
    """Every row, in file order (index = row number)."""
    test_indices: frozenset[int]
    """Rows carved out as the test part (empty without a test_fraction)."""
    rationales: dict[str, str]
    """Example id -> a rationale that states the gold answer (or states none)."""
    knowledge: list[KnowledgeRecord]
    wrong: frozenset[str] = frozenset()
    """Example ids whose every rationale states another answer than the gold one (left out of training)."""
    ids: tuple[str, ...] = ()
    """Each row's id (fields.id, else its row number), by index: the key of rationale and knowledge side files."""

    def train_part(self) -> list[Example]:
        part = [ex for ex in self.items if ex.index not in self.test_indices]
        return part[: self.config.limit] if self.config.limit else part

    def test_part(self, as_test_source: bool) -> list[Example]:
        """The carved test part, or every row of a source listed only for testing (capped by its limit)."""
        part = [ex for ex in self.items if ex.index in self.test_indices] if self.test_indices else list(self.items)
        return part[: self.config.limit] if as_test_source and self.config.limit else part


# ---------------------------------------------------------------- reading rows through `datasets`


def _where(cfg: SourceConfig) -> str:
    return f"source {cfg.name!r} ({cfg.path or cfg.hub})"


def _format(cfg: SourceConfig, path: Path) -> str:
    if cfg.format != "auto":
        return cfg.format
    if path.is_dir():
        return "disk"
    fmt = _SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise SkinternError(f"{_where(cfg)}: cannot tell the format from the suffix {path.suffix!r}; set format: "
                            f"jsonl, json, csv, parquet or disk")
    return fmt


def _check_text(cfg: SourceConfig, path: Path) -> None:
    """`datasets` reports bad bytes and empty files as arrow errors; name the line of the first bad byte instead."""
    data = path.read_bytes()
    if not data.strip():
        raise SkinternError(f"{_where(cfg)}: the source has no rows")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise SkinternError(f"{_where(cfg)}: not UTF-8 text (line {line}, byte {e.start})") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _hub_reachable() -> bool:
    """One short connection to the hub's host: unreachable, `datasets` would retry for half a minute instead."""
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or (443 if endpoint.scheme == "https" else 80)),
                                 timeout=3).close()
    except OSError:
        return False
    return True


def _read_dataset(cfg: SourceConfig) -> datasets.Dataset:
    """The source's rows as one Dataset, kept in memory (nothing cached on disk, so nothing goes stale)."""
    datasets.disable_progress_bars()
    if cfg.hub is not None:
        offline = os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"
        if offline or not _hub_reachable():
            state = "offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)" if offline else "unreachable"
            raise SkinternError(f"{_where(cfg)}: the hub is {state}; save the dataset to local files (.jsonl, .csv, "
                                f".parquet or a save_to_disk folder) and set path:")
        try:
            return datasets.load_dataset(cfg.hub, split=cfg.split)
        except Exception as e:  # noqa: BLE001 - any hub failure is one line with the way out
            raise SkinternError(f"{_where(cfg)}: cannot load from the hub ({_first_line(e)}); offline, save the dataset "
                                f"to local files and set path: to them") from None
    path = Path(cfg.path).expanduser()
    if not path.exists():
        raise SkinternError(f"{_where(cfg)}: file not found: {path}")
    fmt = _format(cfg, path)
    try:
        if fmt == "disk":
            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.DatasetDict):
                if cfg.split not in loaded:
                    raise SkinternError(f"{_where(cfg)}: no split {cfg.split!r} (has {', '.join(loaded)}); set split:")
                loaded = loaded[cfg.split]
            return loaded
        if fmt != "parquet":
            _check_text(cfg, path)
        with tempfile.TemporaryDirectory(prefix="skintern-source-") as cache:
            return datasets.load_dataset(_BUILDERS[fmt], data_files=str(path), split="train", cache_dir=cache,
                                         keep_in_memory=True)
    except SkinternError:
        raise
    except Exception as e:  # noqa: BLE001 - malformed files raise many arrow/pandas types; report one line
        raise SkinternError(f"{_where(cfg)}: cannot read as {fmt} ({_first_line(e)})") from None


# ---------------------------------------------------------------- rows -> examples


def _text(value: Any) -> str | None:
    """A cell as text: numbers and booleans as written, empty and null (and lists, mappings) as None."""
    if type(value) is str:
        return value.strip() or None
    if value is None or isinstance(value, (list, dict)):
        return None
    return str(value).strip() or None


def _chat_turns(value: Any, where: str, name: str) -> tuple[str | None, str | None]:
    """(the first user turn, the last assistant turn) of a list of {role, content} messages."""
    if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
        raise SkinternError(f"{where}: field {name!r} must be a list of {{role, content}} turns")
    user = next((_text(m.get("content")) for m in value if m.get("role") == "user"), None)
    assistant = next((_text(m.get("content")) for m in reversed(value) if m.get("role") == "assistant"), None)
    return user, assistant


def _options(value: Any, where: str, name: str) -> tuple[str, ...]:
    """A list of option texts, or a mapping letter -> text (in letter order; an arrow struct fills absent letters with None)."""
    if isinstance(value, dict):
        value = [v for _, v in sorted(value.items()) if v is not None]
    if not isinstance(value, list) or not value or not all(_text(v) for v in value):
        raise SkinternError(f"{where}: field {name!r} must be a non-empty list of option texts or a letter -> text mapping")
    if len(value) > len(_LABEL):
        raise SkinternError(f"{where}: field {name!r} has {len(value)} options, at most {len(_LABEL)} are supported")
    return tuple(_text(v) for v in value)


def _choice_label(answer: str, options: tuple[str, ...], where: str, name: str) -> str:
    """The answer as "(B)": given as a label ("B", "(b)") or as an option's text."""
    labels = [f"({_LABEL[k]})" for k in range(len(options))]
    label = normalize_answer(answer, "choice")
    if label in labels:
        return label
    for k, option in enumerate(options):
        if option.lower() == answer.strip().lower():
            return labels[k]
    raise SkinternError(f"{where}: field {name!r}: answer {answer!r} is not among the row's options ({', '.join(options)})")


@dataclass
class _Row:
    question: str
    answer: str
    options: tuple[str, ...]
    task: str
    description: str
    rationale: str | None
    summary: str | None
    knowledge: str | None
    id: str


def _rows(cfg: SourceConfig, table: dict[str, list], n: int) -> list[_Row]:
    """Each row's mapped fields, checked: the question and the answer must be there, options must hold the answer."""
    f, where = cfg.fields, _where(cfg)
    chat = f.messages or ("messages" if f.question not in table and "messages" in table else None)
    wanted = {"question": None if chat else f.question, "messages": chat, "options": f.options, "rationale": f.rationale,
              "summary": f.summary, "knowledge": f.knowledge, "id": f.id, "task": f.task, "description": f.description}
    for key, column in wanted.items():
        if column is not None and column not in table:
            raise SkinternError(f"{where}: row 1: field {column!r} (fields.{key}) is missing; the rows have "
                                f"{', '.join(table)}")
    answer_column = f.answer if f.answer in table else None
    if answer_column is None and not (chat or f.rationale):
        raise SkinternError(f"{where}: row 1: field {f.answer!r} (fields.answer) is missing; the rows have {', '.join(table)}")
    rows, first_row = [], {}
    for i in range(n):
        at = f"{where}: row {i + 1}"

        def cell(column: str | None, required: bool = False) -> str | None:
            value = _text(table[column][i]) if column is not None else None
            if required and value is None:
                raise SkinternError(f"{at}: field {column!r} is missing or empty")
            return value

        if chat:
            question, rationale = _chat_turns(table[chat][i], at, chat)
            if question is None:
                raise SkinternError(f"{at}: field {chat!r} has no user turn (the question)")
        else:
            question, rationale = cell(f.question, required=True), None
        rationale = cell(f.rationale) or rationale
        if answer_column is not None:
            answer = cell(answer_column, required=True)
        else:
            answer = stated_answer(rationale) if rationale else None
            if answer is None:
                raise SkinternError(f"{at}: no answer: no field {f.answer!r} and the "
                                    f"{'assistant turn' if chat else 'rationale'} states none ('... the answer is X.')")
        options = _options(table[f.options][i], at, f.options) if f.options else ()
        if options:
            answer = _choice_label(answer, options, at, answer_column or "answer")
            if "Options:" not in question:
                question += "\nOptions:\n" + "\n".join(f"({_LABEL[k]}) {o}" for k, o in enumerate(options))
        summary, knowledge = cell(f.summary), cell(f.knowledge)
        if (summary is None) != (knowledge is None):
            raise SkinternError(f"{at}: field {f.summary if summary is None else f.knowledge!r} is missing or empty "
                                f"while {f.knowledge if summary is None else f.summary!r} is given (knowledge has two parts)")
        task = cell(f.task, required=True) if f.task else None
        item_id = cell(f.id, required=True) if f.id else str(i)
        if item_id in first_row:
            raise SkinternError(f"{at}: field {f.id!r}: duplicate id {item_id!r} (first at row {first_row[item_id] + 1})")
        first_row[item_id] = i
        rows.append(_Row(question, answer, options, f"{cfg.name}/{task}" if task else cfg.name,
                         cell(f.description) or cfg.description or "", rationale, summary, knowledge, item_id))
    return rows


def _kind(cfg: SourceConfig, rows: Sequence[_Row]) -> str:
    if cfg.answer_kind is not None:
        return cfg.answer_kind
    if any(r.options for r in rows):
        return "choice"
    return answer_kind(r.answer for r in rows)


def _side_file(cfg: SourceConfig, path: str, texts: tuple[str, ...], rows: dict[str, int]) -> list[tuple[int, tuple[str, ...]]]:
    """(row of the source, texts) of each line of a rationale/knowledge JSONL (read with `datasets`) keyed by item
    id; an id naming no item of the source is an error."""
    table_ds = _read_dataset(SourceConfig(name=cfg.name, path=path, format="jsonl"))
    table = table_ds.to_dict()
    for name in ("id", *texts):
        if name not in table:
            raise SkinternError(f"{path}: row 1: missing field {name!r}")
    columns = [table[name] for name in texts]
    out = []
    for i, raw_id in enumerate(table["id"]):
        row = rows.get(_text(raw_id) or "")
        if row is None:
            raise SkinternError(f"{path}: row {i + 1}: field 'id': {raw_id!r} matches no item of source {cfg.name!r}")
        values = tuple(column[i] for column in columns)
        for name, value in zip(texts, values):
            if type(value) is not str or not value.strip():
                raise SkinternError(f"{path}: row {i + 1}: field {name!r} must be a non-empty string, got {value!r}")
        out.append((row, values))
    return out


def _states_gold(rationale: str, ex: Example) -> bool:
    """A rationale that states an answer must state the gold one; one that states none is a worked solution."""
    return stated_answer(rationale) is None or is_correct(extract_answer(rationale, ex.kind, ex.options), ex)


def load_source(cfg: SourceConfig) -> Source:
    """Read, map and check a user source; nothing is written."""
    table_ds = _read_dataset(cfg)
    if len(table_ds) == 0:
        raise SkinternError(f"{_where(cfg)}: the source has no rows")
    rows = _rows(cfg, table_ds.to_dict(), len(table_ds))
    kind = _kind(cfg, rows)
    items = [Example(cfg.name, r.task, i, r.question, normalize_answer(r.answer, kind), kind, r.options, r.description)
             for i, r in enumerate(rows)]
    row_of = {r.id: i for i, r in enumerate(rows)}
    candidates: dict[int, list[str]] = {i: [r.rationale] for i, r in enumerate(rows) if r.rationale}
    knowledge = {i: (r.summary, r.knowledge) for i, r in enumerate(rows) if r.summary}
    if cfg.rationales:
        for i, (rationale,) in _side_file(cfg, cfg.rationales, ("rationale",), row_of):
            candidates.setdefault(i, []).append(rationale)
    if cfg.knowledge:
        seen: set[int] = set()
        for i, parts in _side_file(cfg, cfg.knowledge, ("summary", "knowledge"), row_of):
            if i in seen:
                raise SkinternError(f"{cfg.knowledge}: two knowledge rows for id {rows[i].id!r} of source {cfg.name!r}")
            seen.add(i)
            knowledge[i] = parts
    rationales, wrong = {}, set()
    for i, found in candidates.items():
        ex = items[i]
        good = next((r for r in found if _states_gold(r, ex)), None)
        if good:
            rationales[ex.id] = good
        else:
            wrong.add(ex.id)
    records = [KnowledgeRecord(items[i].task, i, summary, text) for i, (summary, text) in knowledge.items()]
    return Source(cfg, items, _carve(cfg, len(items)), rationales, records, frozenset(wrong), tuple(r.id for r in rows))


def _carve(cfg: SourceConfig, n: int) -> frozenset[int]:
    """A seeded random test part of `test_fraction` of the rows (at least one row each side)."""
    if cfg.test_fraction is None:
        return frozenset()
    if n < 2:
        raise SkinternError(f"{_where(cfg)}: test_fraction needs at least 2 rows to carve, the source has {n}")
    k = min(n - 1, max(1, round(cfg.test_fraction * n)))
    return frozenset(random.Random(cfg.seed).sample(range(n), k))



# ---------------------------------------------------------------- what a result was made from


def file_digests(sources: Sequence[str | SourceConfig]) -> dict[str, str]:
    """Content digests of the user sources' local files (source, side files), by "<name>.<key>": a user edits
    their files, and a result made from an older version must not be taken for one of the current files."""
    out = {}
    for source in sources:
        if isinstance(source, SourceConfig):
            for key in ("path", "rationales", "knowledge"):
                path = getattr(source, key)
                if path is not None and Path(path).exists():
                    stat = Path(path).stat()
                    out[f"{source.name}.{key}"] = _digest(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    return out


@functools.lru_cache(maxsize=64)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    """Keyed by size and modification time as well, so an edited file is hashed again."""
    return fingerprint(path)
