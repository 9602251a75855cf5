"""Benchmark loading and answer scoring: one Example type and one notion of "correct" for every dataset.

Every dataset (BBH, BB-sub, AGIEval, ARC-E/C, GSM8K) becomes a list of `Example`s whose gold
`answer` is already in canonical form, so scoring a model is `is_correct(extract_answer(...), ex)`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Callable, Iterable, Sequence

from skintern.errors import SkinternError
from skintern.files import read_json, read_jsonl, read_text
from skintern.schema import SettingError, check_choice, check_nonempty, check_range

DATASETS = ("bbh", "bbsub", "agieval", "arc-easy", "arc-challenge", "gsm8k")
TRAIN_DATASETS = ("bbh", "gsm8k")
"""Built-in benchmarks that can train: BBH with its teacher files, GSM8K with its own worked solutions."""
DOMAINS = ("in", "out")
BUILTIN_DOMAINS = {"bbh": "in", "gsm8k": "in", "bbsub": "out", "agieval": "out", "arc-easy": "out", "arc-challenge": "out"}
"""The protocol's tags (SKIntern / CasCoD): BBH and GSM8K are in-domain, the rest out-of-domain."""
SOURCE_FORMATS = ("auto", "jsonl", "json", "csv", "parquet", "disk")
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
class FieldMap:
    """Which field of a user source's rows holds what; None: the source has no such field."""

    question: str = "question"
    answer: str | None = "answer"
    """None: the answer is the one the rationale states ("... the answer is X", "#### X", else its last line)."""
    options: str | None = None
    """A list of option texts, or a mapping letter -> text; the answer is a letter or an option's text."""
    rationale: str | None = None
    """A worked solution ending in the answer: the CoT the student learns."""
    summary: str | None = None
    """The learning summary part of the item's knowledge."""
    knowledge: str | None = None
    """The supplementary knowledge part of the item's knowledge."""
    id: str | None = None
    """A unique id per row, for rationale/knowledge files; None: the row number (0-based)."""
    task: str | None = None
    """Groups rows into tasks for per-task tables; None: the whole source is one task."""
    description: str | None = None
    """A per-row task description (a constant one is `SourceConfig.description`)."""
    messages: str | None = None
    """Chat rows: a list of {role, content} turns, the user turn the question, the assistant turn the rationale
    ending in the answer. Used when set, or when the rows have this `messages` field and no question field."""

    def __post_init__(self):
        for key in ("question", "answer", "options", "rationale", "summary", "knowledge", "id", "task", "description",
                    "messages"):
            value = getattr(self, key)
            if value is not None and not value.strip():
                raise SettingError(key, "expected a field name, got an empty string")
        if (self.summary is None) != (self.knowledge is None):
            raise SettingError("summary" if self.summary is None else "knowledge",
                               "knowledge has two parts: map both summary and knowledge, or neither")


@dataclass
class SourceConfig:
    """A user's own task: a file, a `save_to_disk` folder or a hub dataset, read through Hugging Face `datasets`."""

    name: str
    """Names the source in results and reports; unique, not a built-in benchmark's name."""
    path: str | None = None
    """A .jsonl/.json/.csv/.parquet file, or a folder written by `Dataset.save_to_disk`."""
    hub: str | None = None
    """A hub dataset id instead of `path` (needs the hub; offline, point `path` at local files)."""
    format: str = "auto"
    """auto (from the suffix; a folder is `disk`) | jsonl | json | csv | parquet | disk."""
    split: str = "train"
    """The split to read of a hub dataset or a saved DatasetDict."""
    fields: FieldMap = field(default_factory=FieldMap)
    description: str | None = None
    """One task description for every row (or `fields.description` per row)."""
    answer_kind: str | None = None
    """choice | yes_no | true_false | validity | number | text; None: inferred from the answers."""
    domain: str = "in"
    """in | out: which average (ID or OOD) this source's test accuracy counts towards."""
    limit: int | None = None
    """Use only the first N items (of the train part as a train source, of the test part as a test source)."""
    test_fraction: float | None = None
    """Carve this share of the rows out as the test part (named by this source's name in eval.datasets)."""
    seed: int = 0
    """Seed of the train/test carving."""
    rationales: str | None = None
    """A JSONL file of {"id", "rationale"} rows for this source's items (in addition to fields.rationale)."""
    knowledge: str | None = None
    """A JSONL file of {"id", "summary", "knowledge"} rows for this source's items."""

    def __post_init__(self):
        if not self.name.strip() or "/" in self.name:
            raise SettingError("name", f"expected a name without '/', got {self.name!r}")
        if self.name in DATASETS:
            raise SettingError("name", f"{self.name!r} is a built-in benchmark; name it by its bare name or pick another")
        if (self.path is None) == (self.hub is None):
            raise SettingError("path", f"source {self.name!r}: set exactly one of path (local files) and hub (a hub id)")
        check_choice("format", self.format, SOURCE_FORMATS)
        if self.answer_kind is not None:
            check_choice("answer_kind", self.answer_kind, ANSWER_KINDS)
            if self.fields.options is not None and self.answer_kind != "choice":
                raise SettingError("answer_kind", f"rows with options (fields.options) have choice answers, got {self.answer_kind!r}")
        check_choice("domain", self.domain, DOMAINS)
        if self.limit is not None:
            check_range("limit", self.limit, 1)
        if self.test_fraction is not None:
            check_range("test_fraction", self.test_fraction, 0, 1, low_open=True, high_open=True)


def source_name(source: str | SourceConfig) -> str:
    return source if isinstance(source, str) else source.name


def check_unique_sources(key: str, sources: Sequence[str | SourceConfig]) -> None:
    """Results, predictions and knowledge are keyed by source name, so two sources of one list must differ."""
    names = [source_name(s) for s in sources]
    for name in names:
        if names.count(name) > 1:
            raise SettingError(key, f"source {name!r} is listed twice")


@dataclass
class DataConfig:
    """The `data:` section: where the benchmarks and the teacher's outputs are, and what trains."""

    data_dir: str | None = None
    """Default: $SKINTERN_DATA_DIR, else ../shared/data."""
    train: list[str | SourceConfig] = field(default_factory=lambda: ["bbh"])
    """Training sources: built-in bbh (data.tasks, teacher_cot, knowledge) or gsm8k (its worked solutions), and
    user sources, mixed."""
    tasks: list[str] | None = None
    """BBH tasks to train on (and to test on in-domain); None = all 27."""
    train_per_task: int | None = None
    """Cap on built-in train items per task (the first N of the split)."""
    teacher_cot: str | None = None
    """Rationales JSONL; default: <data_dir>/bbh/teacher/code-davinci-002-cot.jsonl."""
    knowledge: str | None = None
    """Knowledge JSONL; default: <data_dir>/bbh/teacher/knowledge.jsonl."""
    require_knowledge: bool = False
    """Train every method only on items that have teacher knowledge (fair comparisons)."""

    def __post_init__(self):
        check_nonempty("train", self.train)
        for source in self.train:
            if isinstance(source, str):
                check_choice("train", source, TRAIN_DATASETS)
        check_unique_sources("train", self.train)
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
    description: str = ""
    """The task description a user source gives its rows (BBH's come from its prompt files)."""

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


class UnknownTaskError(SkinternError):
    """A requested task the dataset does not have; the caller, which knows the config field, names it."""


def _select(available: Sequence[str], tasks: Sequence[str] | None, what: str) -> list[str]:
    """Validate requested task names early, with a hint, instead of failing on a missing file."""
    if tasks is None:
        return list(available)
    if isinstance(tasks, str):
        tasks = [tasks]
    for task in tasks:
        if task not in available:
            hint = ", ".join(available[:5]) + (", ..." if len(available) > 5 else "")
            raise UnknownTaskError(f"unknown {what} task {task!r}; valid tasks include: {hint} ({len(available)} in all)")
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
        for name in ("input", "target"):
            if not isinstance(row.get(name), str) or not row[name].strip():
                raise SkinternError(f"{path}: example {i}: field {name!r} must be a non-empty string")
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


def _gsm8k_rows(root: Path, split: str) -> list[tuple[Path, int, dict]]:
    if split not in SPLITS:
        raise SkinternError(f"unknown GSM8K split {split!r}; expected one of {', '.join(SPLITS)}")
    path = root / "gsm8k" / f"{split}.jsonl"
    rows = []
    for i, row in enumerate(read_jsonl(path, required=("question", "answer"))):
        answer = str(row["answer"])
        if "####" not in answer or not _NUMBER_RE.search(answer.rsplit("####", 1)[1]):
            raise SkinternError(f"{path}: record {i + 1}: field 'answer' must end with '#### <number>'")
        rows.append((path, i, row))
    return rows


def _load_gsm8k(root: Path, split: str, tasks: Sequence[str] | None) -> list[Example]:
    """GSM8K gold is the number after "####"; the worked solution before it is its rationale (`gsm8k_solutions`)."""
    _select(["gsm8k"], tasks, "GSM8K")
    return [Example("gsm8k", "gsm8k", i, str(row["question"]), normalize_answer(str(row["answer"]).rsplit("####", 1)[1], "number"),
                    "number") for _, i, row in _gsm8k_rows(root, split)]


def gsm8k_solutions(data_dir: str | os.PathLike | None, split: str) -> dict[int, str]:
    """Item index -> its worked solution as a CoT: calculator annotations `<<48/2=24>>` dropped, the `#### N`
    line dropped (the training target ends in the answer sentence instead)."""
    root = resolve_data_dir(data_dir)
    return {i: re.sub(r"<<[^>]*>>", "", str(row["answer"]).rsplit("####", 1)[0]).strip()
            for _, i, row in _gsm8k_rows(root, split)}


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
    tolerated = 0.05 * len(values)
    for kind, test in tests.items():
        misses = 0
        for value in values:
            misses += not test(value)
            if misses > tolerated:  # stop at the first kind's failure, large sources have 100,000s of targets
                break
        else:
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


def stated_answer(text: str) -> str | None:
    """The answer a worked solution states, raw: after its last "the answer is", else after "#### ", else None."""
    span = _answer_span(text)
    if span is None:
        marked = re.findall(r"####\s*(.+)", text)
        span = marked[-1].strip() if marked else None
    return span or None


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
