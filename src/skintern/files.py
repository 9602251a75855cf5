"""Atomic writes and line-checked reads, so no command leaves a half-written file behind."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable

from skintern.errors import SkinternError

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write to a temp file in the same folder, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    return atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_text(path: str | os.PathLike) -> str:
    """A UTF-8 text file; anything else is one line naming the file and the first bad byte."""
    path = Path(path)
    if not path.is_file():
        raise SkinternError(f"{path}: file not found")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise SkinternError(f"{path}: not UTF-8 text (byte {e.start})") from None


def read_json(path: str | os.PathLike) -> Any:
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise SkinternError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None


def read_jsonl(path: str | os.PathLike, required: Iterable[str] = (), torn_tail: bool = False) -> list[dict]:
    """Read a JSONL file; a bad line or a record missing a `required` field is an error naming the line.

    `torn_tail`: a file appended to as work goes (a `.partial`) may end in a line a hard kill cut short; such a
    last line (no newline after it, not valid JSON) is dropped with a warning instead, and only that one."""
    return [row for _, row in numbered_jsonl(path, required, torn_tail)]


def numbered_jsonl(path: str | os.PathLike, required: Iterable[str] = (), torn_tail: bool = False) -> list[tuple[int, dict]]:
    """`read_jsonl` with each record's line number, for errors that name the line of a bad field."""
    path = Path(path)
    text = read_text(path)
    lines = text.split("\n")
    required = tuple(required)
    rows = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            if torn_tail and lineno == len(lines):  # the text does not end in a newline: a cut-off write
                print(f"skintern: warning: {path}:{lineno}: dropped a line cut short by a kill", file=sys.stderr)
                break
            raise SkinternError(f"{path}:{lineno}: malformed JSON line ({e.msg})") from None
        if not isinstance(row, dict):
            raise SkinternError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
        missing = [k for k in required if k not in row]
        if missing:
            raise SkinternError(f"{path}:{lineno}: missing field {missing[0]!r}")
        rows.append((lineno, row))
    return rows


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flatten(item, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): value}


def changed_settings(path: str | os.PathLike, key: dict) -> list[str]:
    """What differs between the key a result was made with (stored at `path`) and `key`, as "a.b: old -> new"
    lines; empty when they agree or nothing was stored yet."""
    path = Path(path)
    if not path.is_file():
        return []
    old, new = _flatten(read_json(path)), _flatten(key)
    return [f"{k}: {old.get(k, '(unset)')!r} -> {new.get(k, '(unset)')!r}" for k in sorted(old.keys() | new.keys())
            if old.get(k) != new.get(k)]


def fingerprint(target: str | os.PathLike) -> str:
    """A digest of a file's bytes, or of every file's name and bytes in a folder: which weights or data a result
    was made with."""
    target, digest = Path(target), hashlib.sha256()
    files = [target] if target.is_file() else sorted(p for p in target.rglob("*") if p.is_file())
    for path in files:
        if path != target:
            digest.update(str(path.relative_to(target)).encode())
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def check_writable_dir(path: str | os.PathLike, key: str) -> None:
    """Fail before any work when `path` cannot become a folder we write in (a file on the way, no permission,
    a read-only file system); `key` names the setting in the error."""
    path = Path(path).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise SkinternError(f"{key}: {path} cannot be a folder: {existing} is a file")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".skintern-probe-")
    except OSError as e:
        raise SkinternError(f"{key}: cannot write in {existing} ({e.strerror})") from None
    os.close(fd)
    os.unlink(probe)


def check_item_row(row: dict, where: str, texts: Iterable[str]) -> None:
    """A teacher-file row about one benchmark item: 'task' a non-empty string, 'index' a non-negative integer and
    every field of `texts` a non-empty string; a bad one is an error naming the line (`where`) and the field."""
    if not isinstance(row["task"], str) or not row["task"].strip():
        raise SkinternError(f"{where}: field 'task' must be a non-empty string, got {row['task']!r}")
    if isinstance(row["index"], bool) or not isinstance(row["index"], int) or row["index"] < 0:
        raise SkinternError(f"{where}: field 'index' must be a non-negative integer, got {row['index']!r}")
    for name in texts:
        if not isinstance(row[name], str) or not row[name].strip():
            raise SkinternError(f"{where}: field {name!r} must be a non-empty string, got {row[name]!r}")
