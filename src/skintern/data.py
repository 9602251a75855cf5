"""Benchmark loading and answer scoring: one Example type and one notion of "correct" for every dataset.

Every dataset (BBH, BB-sub, AGIEval, ARC-E/C, GSM8K) becomes a list of `Example`s whose gold
`answer` is already in canonical form, so scoring a model is `is_correct(extract_answer(...), ex)`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Callable, Iterable, Sequence

from skintern.errors import SkinternError
from skintern.files import read_json, read_jsonl, read_text
from skintern.schema import check_nonempty, check_range

DATASETS = ("bbh", "bbsub", "agieval", "arc-easy", "arc-challenge", "gsm8k")
ANSWER_KINDS = ("choice", "yes_no", "true_false", "validity", "number", "text")
DEFAULT_DATA_DIR = "../shared/data"
SPLITS = ("train", "test")

_WORD_KINDS = {
    "yes_no": {"yes": "Yes", "no": "No"},
    "true_false": {"true": "True", "false": "False"},
    "validity": {"valid": "valid", "invalid": "invalid"},
}
_CHOICE_RE = re.compile(r"\(([A-Z])\)")
_NUMBER_RE = re.compile(r"-?(?:\d[\d,]*(?:\.\d+)?|\.\d+)")
_PHRASE_RE = re.compile(r"the answer is:?\s*(.*)", re.IGNORECASE)
_SENTENCE_RE = re.compile(r"(.*?)(?:[.!?](?=\s|$)|$)")
_BRACKETS = set("()[]{}<>")


@dataclass
class DataConfig:
    """The `data:` section: where the benchmarks and the teacher's outputs are, and what trains."""

    data_dir: str | None = None
    """Default: $SKINTERN_DATA_DIR, else ../shared/data."""
    tasks: list[str] | None = None
    """BBH tasks to train on (and to test on in-domain); None = all 27."""
    train_per_task: int | None = None
    """Cap on BBH train items per task (the first N of the split)."""
    teacher_cot: str | None = None
    """Rationales JSONL; default: <data_dir>/bbh/teacher/code-davinci-002-cot.jsonl."""
    knowledge: str | None = None
    """Knowledge JSONL; default: <data_dir>/bbh/teacher/knowledge.jsonl."""
    require_knowledge: bool = False
    """Train every method only on items that have teacher knowledge (fair comparisons)."""

    def __post_init__(self):
        check_nonempty("tasks", self.tasks)
        if self.train_per_task is not None:
            check_range("train_per_task", self.train_per_task, 1)


@dataclass(frozen=True)
class Example:
    """One benchmark item; `answer` is canonical (see `normalize_answer`) so equality is scoring."""

    dataset: str
    task: str
    index: int
    question: str
    answer: str
    kind: str
    options: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.dataset}/{self.task}/{self.index}"


# ---------------------------------------------------------------- locating data


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Explicit argument beats $SKINTERN_DATA_DIR beats the default, so tests and CLI agree."""
    chosen = data_dir if data_dir is not None else os.environ.get("SKINTERN_DATA_DIR") or DEFAULT_DATA_DIR
    path = Path(chosen).expanduser()
    if not path.is_dir():
        raise SkinternError(f"data dir not found: {path} (pass --data-dir or set SKINTERN_DATA_DIR)")
    return path


def _select(available: Sequence[str], tasks: Sequence[str] | None, what: str) -> list[str]:
    """Validate requested task names early, with a hint, instead of failing on a missing file."""
    if tasks is None:
        return list(available)
    if isinstance(tasks, str):
        tasks = [tasks]
    for task in tasks:
        if task not in available:
            hint = ", ".join(available[:5]) + (", ..." if len(available) > 5 else "")
            raise SkinternError(f"unknown {what} task {task!r}; valid tasks include: {hint} ({len(available)} in all)")
    return list(tasks)


def _file_tasks(folder: Path, suffix: str) -> list[str]:
    """Task names of a one-file-per-task dataset."""
    if not folder.is_dir():
        raise SkinternError(f"{folder}: folder not found")
    return sorted(p.name[: -len(suffix)] for p in folder.glob(f"*{suffix}"))


# ---------------------------------------------------------------- BBH-format files


def _bbh_format_rows(path: Path) -> list[dict]:
    """Accept both {"examples": [...]} and a bare list, each item {"input", "target"} strings."""
    data = read_json(path)
    rows = data.get("examples") if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise SkinternError(f"{path}: expected a JSON list or an object with an 'examples' list")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise SkinternError(f"{path}: example {i}: expected an object with 'input' and 'target'")
        for field in ("input", "target"):
            if not isinstance(row.get(field), str) or not row[field].strip():
                raise SkinternError(f"{path}: example {i}: field {field!r} must be a non-empty string")
    return rows


def _options_in(question: str) -> tuple[str, ...]:
    """Option texts of an "Options:\\n(A) ..." block, for matching answers given as option text."""
    block = question.rsplit("Options:", 1)[-1] if "Options:" in question else ""
    return tuple(text.strip() for _, text in re.findall(r"^\(([A-Z1-9])\)\s?(.*)$", block, re.MULTILINE))


def _bbh_format_examples(path: Path, dataset: str, task: str, kind: str | None = None) -> list[Example]:
    """Examples of one BBH-format file; `kind` None means infer it from all the file's targets.

    A forced "choice" kind promises lettered targets, so anything else is an error; an inferred kind
    keeps the rare broken target as is (it can never be matched) so split sizes stay as published.
    """
    rows = _bbh_format_rows(path)
    forced = kind == "choice"
    kind = kind or answer_kind(r["target"] for r in rows)
    out = []
    for i, row in enumerate(rows):
        answer = normalize_answer(row["target"], kind)
        if forced and not _CHOICE_RE.fullmatch(answer):
            target = row["target"]
            raise SkinternError(f"{path}: example {i}: target {target!r} is not an option label like '(A)' or '(1)'")
        options = _options_in(row["input"]) if kind == "choice" else ()
        out.append(Example(dataset, task, i, row["input"], answer, kind, options))
    return out


def bbh_tasks(data_dir: str | os.PathLike | None) -> list[str]:
    """Task names from split.json, the file that defines the benchmark."""
    return sorted(_bbh_split(resolve_data_dir(data_dir)))


def _bbh_split(root: Path) -> dict:
    path = root / "bbh" / "split.json"
    split = read_json(path)
    if not isinstance(split, dict) or not split:
        raise SkinternError(f"{path}: expected an object {{task: {{'train': [...], 'test': [...]}}}}")
    return split


def load_bbh(data_dir: str | os.PathLike | None, split: str, tasks: Sequence[str] | None = None) -> list[Example]:
    """BBH examples of one split, in file order per task; kinds are inferred from each whole task file."""
    if split not in SPLITS:
        raise SkinternError(f"unknown BBH split {split!r}; expected one of {', '.join(SPLITS)}")
    root = resolve_data_dir(data_dir)
    split_path = root / "bbh" / "split.json"
    splits = _bbh_split(root)
    out: list[Example] = []
    for task in _select(sorted(splits), tasks, "BBH"):
        indices = splits[task].get(split) if isinstance(splits[task], dict) else None
        if not isinstance(indices, list):
            raise SkinternError(f"{split_path}: task {task!r}: field {split!r} must be a list of indices")
        examples = _bbh_format_examples(root / "bbh" / f"{task}.json", "bbh", task)
        for idx in indices:
            if isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx < len(examples):
                raise SkinternError(f"{split_path}: task {task!r}: index {idx!r} out of range 0..{len(examples) - 1}")
        out += [examples[idx] for idx in sorted(indices)]
    if not out:
        raise SkinternError(f"{split_path}: split {split!r} has no examples for the requested tasks")
    return out


# ---------------------------------------------------------------- other benchmarks


def _load_bbsub(root: Path, split: str, tasks: Sequence[str] | None) -> list[Example]:
    folder = root / "bbsub"
    out = []
    for task in _select(_file_tasks(folder, ".json"), tasks, "BB-sub"):
        out += _bbh_format_examples(folder / f"{task}.json", "bbsub", task, "choice")
    return out


def _load_arc(name: str) -> Callable[[Path, str, Sequence[str] | None], list[Example]]:
    task = {"arc-easy": "ARC-Easy", "arc-challenge": "ARC-Challenge"}[name]

    def load(root: Path, split: str, tasks: Sequence[str] | None) -> list[Example]:
        _select([task], tasks, name)
        return _bbh_format_examples(root / "arc" / f"{task}-Test.json", name, task, "choice")

    return load


def _agieval_example(path: Path, task: str, i: int, row: dict) -> Example:
    """AGIEval puts passage, question and "(A)text" options in separate fields; join them BBH-style."""
    where = f"{path}: record {i + 1}"
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise SkinternError(f"{where}: field 'question' must be a non-empty string")
    passage = row.get("passage")
    text = f"{passage}\n{question}" if isinstance(passage, str) and passage.strip() else question
    raw_options = row.get("options")
    if raw_options is None:
        answer = row.get("answer")
        if not isinstance(answer, str) or not answer.strip():
            raise SkinternError(f"{where}: field 'answer' must be a non-empty string when 'options' is null")
        return Example("agieval", task, i, text, normalize_answer(answer, "text"), "text")
    if not isinstance(raw_options, list) or not all(isinstance(o, str) for o in raw_options):
        raise SkinternError(f"{where}: field 'options' must be a list of strings like '(A)text' or null")
    options = tuple(re.sub(r"^\s*\([A-Z]\)\s*", "", o).strip() for o in raw_options)
    label = str(row.get("label")).strip()
    if label not in [chr(65 + k) for k in range(len(options))]:
        raise SkinternError(f"{where}: field 'label' must be one option letter, got {row.get('label')!r}")
    lines = "\n".join(f"({chr(65 + k)}) {o}" for k, o in enumerate(options))
    return Example("agieval", task, i, f"{text}\nOptions:\n{lines}", f"({label})", "choice", options)


def _load_agieval(root: Path, split: str, tasks: Sequence[str] | None) -> list[Example]:
    folder = root / "agieval"
    out = []
    for task in _select(_file_tasks(folder, ".jsonl"), tasks, "AGIEval"):
        path = folder / f"{task}.jsonl"
        out += [_agieval_example(path, task, i, row) for i, row in enumerate(read_jsonl(path, required=("question",)))]
    return out


def _load_gsm8k(root: Path, split: str, tasks: Sequence[str] | None) -> list[Example]:
    """GSM8K gold is the number after "####"; the worked solution before it is not needed for scoring."""
    if split not in SPLITS:
        raise SkinternError(f"unknown GSM8K split {split!r}; expected one of {', '.join(SPLITS)}")
    _select(["gsm8k"], tasks, "GSM8K")
    path = root / "gsm8k" / f"{split}.jsonl"
    out = []
    for i, row in enumerate(read_jsonl(path, required=("question", "answer"))):
        answer = str(row["answer"])
        if "####" not in answer or not _NUMBER_RE.search(answer.rsplit("####", 1)[1]):
            raise SkinternError(f"{path}: record {i + 1}: field 'answer' must end with '#### <number>'")
        gold = normalize_answer(answer.rsplit("####", 1)[1], "number")
        out.append(Example("gsm8k", "gsm8k", i, str(row["question"]), gold, "number"))
    return out


def _load_bbh_split(root: Path, split: str, tasks: Sequence[str] | None) -> list[Example]:
    return load_bbh(root, split, tasks)


_LOADERS: dict[str, Callable[[Path, str, Sequence[str] | None], list[Example]]] = {
    "bbh": _load_bbh_split,
    "bbsub": _load_bbsub,
    "agieval": _load_agieval,
    "arc-easy": _load_arc("arc-easy"),
    "arc-challenge": _load_arc("arc-challenge"),
    "gsm8k": _load_gsm8k,
}


def first_per_task(examples: Sequence[Example], n: int) -> list[Example]:
    """The first `n` examples of each task, in file order: a reproducible subset."""
    seen: dict[str, int] = {}
    kept = []
    for ex in examples:
        seen[ex.task] = seen.get(ex.task, 0) + 1
        if seen[ex.task] <= n:
            kept.append(ex)
    return kept


def load_benchmark(
    name: str,
    data_dir: str | os.PathLike | None,
    tasks: Sequence[str] | None = None,
    limit_per_task: int | None = None,
    split: str = "test",
) -> list[Example]:
    """One entry point for every benchmark; `limit_per_task` keeps the first N per task so subsets are reproducible."""
    if name not in _LOADERS:
        raise SkinternError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    if limit_per_task is not None and limit_per_task < 1:
        raise SkinternError(f"limit_per_task must be a positive integer, got {limit_per_task}")
    root = resolve_data_dir(data_dir)
    examples = _LOADERS[name](root, split, tasks)
    if limit_per_task is not None:
        examples = first_per_task(examples, limit_per_task)
    if not examples:
        raise SkinternError(f"{root}: dataset {name!r} has no examples for the requested tasks")
    return examples


# ---------------------------------------------------------------- CoT prompts


def _prompt_lines(data_dir: str | os.PathLike | None, task: str) -> tuple[Path, list[str], int]:
    """Lines of a BBH CoT prompt file and the position of its "-----" separator."""
    path = resolve_data_dir(data_dir) / "bbh" / "cot-prompts" / f"{task}.txt"
    if not path.is_file():
        raise SkinternError(f"{path}: no CoT prompt for BBH task {task!r}")
    lines = read_text(path).splitlines()
    sep = next((k for k, line in enumerate(lines) if line.strip() == "-----"), None)
    if sep is None or sep + 1 >= len(lines) or not lines[sep + 1].strip():
        raise SkinternError(f"{path}: expected a '-----' line followed by the task description")
    return path, lines, sep


def task_description(data_dir: str | os.PathLike | None, task: str) -> str:
    """The one-line task description the BBH prompt files carry after the canary block."""
    _, lines, sep = _prompt_lines(data_dir, task)
    return lines[sep + 1].strip()


def cot_prompt(data_dir: str | os.PathLike | None, task: str) -> str:
    """The standard BBH 3-shot CoT prompt (description line + 3 worked Q/A), without the canary block."""
    path, lines, sep = _prompt_lines(data_dir, task)
    text = "\n".join(lines[sep + 1 :]).strip()
    if "Q:" not in text:
        raise SkinternError(f"{path}: expected worked 'Q: ... A: ...' examples after the task description")
    return text


# ---------------------------------------------------------------- answers


def answer_kind(targets: Iterable[str]) -> str:
    """Infer a task's answer kind from all its gold targets.

    Up to 5% odd targets are tolerated, because real files have a few broken items (BBH ruin_names
    has two targets that are option texts, not letters) and they must not turn a task into free text.
    """
    values = [t.strip() for t in targets]
    if not values:
        raise SkinternError("cannot infer an answer kind from zero targets")
    tests: dict[str, Callable[[str], bool]] = {
        "choice": lambda v: bool(_CHOICE_RE.fullmatch(v)),
        **{kind: (lambda v, words=words: v.lower() in words) for kind, words in _WORD_KINDS.items()},
        "number": lambda v: bool(re.fullmatch(r"-?\d+", v)),
    }
    for kind, test in tests.items():
        if sum(map(test, values)) >= 0.95 * len(values):
            return kind
    return "text"


def _normalize_number(text: str) -> str | None:
    """Last number in `text` as a plain decimal ("1,234.0" -> "1234"), or None if there is none."""
    found = _NUMBER_RE.findall(text)
    if not found:
        return None
    try:
        value = Decimal(found[-1].replace(",", ""))
    except InvalidOperation:
        return None
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def _normalize_choice(text: str) -> str | None:
    """"(b)", "B", "B." or "option (B), the moon" -> "(B)"; naming no option or several -> None.

    Numbered options (some ARC items use "(1)".."(4)") map to letters, so "(2)" and "(B)" agree.
    """
    text = text.strip().strip("*\"'").strip()
    bare = re.fullmatch(r"\(?([A-Za-z1-9])\)?[.:]?", text)
    marks = [bare.group(1)] if bare else re.findall(r"\(([A-Za-z1-9])\)", text)
    labels = {f"({chr(64 + int(m)) if m.isdigit() else m.upper()})" for m in marks}
    return labels.pop() if len(labels) == 1 else None


def _normalize_text(text: str) -> str:
    """Free text: lowercase, single spaces between words, none around symbols (LaTeX spacing and $ do not
    matter); Dyck closers one per token so "])" and "] )" agree."""
    text = text.strip().rstrip(".").strip()
    boxed = re.fullmatch(r"\\boxed\{(.*)\}", text.replace("$", "").strip())
    text = (boxed.group(1) if boxed else text).replace("$", "").replace("\\!", "")
    text = re.sub(r"\\[dt]frac", r"\\frac", text)
    compact = "".join(text.split())
    if compact and set(compact) <= _BRACKETS:
        return " ".join(compact)
    return re.sub(r" ?([^\w\s]) ?", r"\1", " ".join(text.lower().split()))


def normalize_answer(text: str, kind: str) -> str:
    """Canonical form of an answer of `kind`; unrecognisable input is returned trimmed so it simply mismatches."""
    if kind not in ANSWER_KINDS:
        raise SkinternError(f"unknown answer kind {kind!r}; expected one of {', '.join(ANSWER_KINDS)}")
    if kind == "choice":
        return _normalize_choice(text) or text.strip()
    if kind in _WORD_KINDS:
        word = re.sub(r"[^a-z]", "", text.lower())
        return _WORD_KINDS[kind].get(word, text.strip())
    if kind == "number":
        return _normalize_number(text) or text.strip()
    return _normalize_text(text)


def _answer_span(text: str) -> str | None:
    """What follows the LAST "the answer is", up to the end of that sentence (a decimal point is not an end)."""
    matches = list(_PHRASE_RE.finditer(text))
    if not matches:
        return None
    span = matches[-1].group(1).strip()
    return _SENTENCE_RE.match(span).group(1).strip().strip("*\"'` ")


def _match_option(text: str, options: Sequence[str]) -> str | None:
    """The option whose full text occurs last in `text` (case-insensitive, whole words)."""
    best, best_pos = None, -1
    for k, option in enumerate(options):
        if not option.strip():
            continue
        for m in re.finditer(rf"(?<!\w){re.escape(option.strip().rstrip('.'))}(?!\w)", text, re.IGNORECASE):
            if m.start() > best_pos:
                best, best_pos = f"({chr(65 + k)})", m.start()
    return best


def _extract_choice(text: str, span: str | None, options: Sequence[str]) -> str | None:
    valid = {f"({chr(65 + k)})" for k in range(len(options))} if options else None
    if span is not None:
        found = _normalize_choice(span) or _match_option(span, options)
        return found if found and (valid is None or found in valid) else None
    letters = [f"({m})" for m in _CHOICE_RE.findall(text) if valid is None or f"({m})" in valid]
    return letters[-1] if letters else _match_option(text, options)


def _extract_word(text: str, span: str | None, kind: str) -> str | None:
    words = _WORD_KINDS[kind]
    pattern = rf"\b({'|'.join(words)})\b"
    if span is not None:
        found = {words[w.lower()] for w in re.findall(pattern, span, re.IGNORECASE)}
        return found.pop() if len(found) == 1 else None
    found = re.findall(pattern, text, re.IGNORECASE)
    return words[found[-1].lower()] if found else None


def _extract_number(text: str, span: str | None) -> str | None:
    if span is not None:
        return _normalize_number(span)
    marked = re.findall(r"####\s*(-?[\d,.]+)", text)
    return _normalize_number(marked[-1] if marked else text)


def extract_answer(text: str, kind: str, options: Sequence[str] = ()) -> str | None:
    """The model's final answer in canonical form, or None when it gave none we can read."""
    if kind not in ANSWER_KINDS:
        raise SkinternError(f"unknown answer kind {kind!r}; expected one of {', '.join(ANSWER_KINDS)}")
    span = _answer_span(text)
    if kind == "choice":
        return _extract_choice(text, span, options)
    if kind in _WORD_KINDS:
        return _extract_word(text, span, kind)
    if kind == "number":
        return _extract_number(text, span)
    if span is None:
        lines = [line for line in text.splitlines() if line.strip()]
        span = lines[-1] if lines else ""
    return _normalize_text(span) or None


def is_correct(prediction: str | None, example: Example) -> bool:
    """Compare canonical forms, so a raw "b" or an already-extracted "(B)" score the same."""
    return prediction is not None and normalize_answer(prediction, example.kind) == example.answer
