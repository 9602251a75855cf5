"""The data of one run, shared by every method: training items with a correct teacher rationale, their
knowledge, the test items of every eval dataset with its domain, and BBH's task descriptions and few-shot
prompts. Train items come from built-in benchmarks and user sources (`skintern.sources`), mixed."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from skintern import data as D
from skintern.errors import SkinternError, in_field
from skintern.evaluate import EvalConfig
from skintern.knowledge import KnowledgeRecord, KnowledgeStore
from skintern.schema import SettingError, check_range
from skintern.sources import Source, load_source
from skintern.teacher import import_rationales


@dataclass
class InternalizationConfig:
    """The `internalization:` section: the internalization check of a SKIntern run (README, "Internalization
    check"). A top-level section, not a SKIntern setting, because its dev set leaves the training data of every
    method of a compare, so that the methods stay comparable."""

    enabled: bool = False
    """Hold out a dev set and score the SKIntern student of every stage on it, with that stage's own prompt and
    with the bare question. Off: the training data are exactly as without this section."""
    dev_size: int = 16
    """Training items (with a rationale and teacher knowledge) held out as the dev set. The check generates
    dev_size x (2 x decay stages + 2) answers: 128 on configs/compare-cpu.yaml against its 156 test queries per
    method, an estimated 3.5 min (at the measured 1.2-2.1 s per query) on a 16-19 min SKIntern run, about +20 %,
    before the time saved by training every method on 64 items instead of 80."""
    dev_seed: int = 0
    """Seed of the dev draw; independent of the run's seed, so every seed of a compare holds out the same items."""

    def __post_init__(self):
        check_range("dev_size", self.dev_size, 2)


@dataclass
class RunData:
    data_dir: Path | None
    """The built-in benchmarks' folder (None when the run uses user sources only)."""
    train_pool: list[D.Example]
    """Every train item of the configured sources (minus those repeating a test question)."""
    train: list[D.Example]
    """The items methods train on: a correct teacher rationale (and knowledge if required)."""
    rationales: dict[str, str]
    """Example id -> the teacher's rationale."""
    tests: dict[str, list[D.Example]]
    """Dataset -> test items."""
    descriptions: dict[str, str]
    """BBH task -> its description."""
    fewshot: dict[str, str]
    """BBH task -> its 3-shot CoT prompt."""
    knowledge: KnowledgeStore = field(default_factory=KnowledgeStore)
    import_table: str = ""
    domains: dict[str, str] = field(default_factory=dict)
    """Test dataset -> in | out: which average (ID, OOD) it counts towards."""
    dev: list[D.Example] = field(default_factory=list)
    """Items of the internalization check, left out of `train` and `train_pool` (empty when it is off)."""

    def description(self, ex: D.Example) -> str:
        if ex.description:
            return ex.description
        return self.descriptions.get(ex.task, "") if ex.dataset == "bbh" else ""


@dataclass
class _Train:
    """What one train source adds: its items, their rationales and knowledge, and a line of the import table."""

    pool: list[D.Example]
    rationales: dict[str, str]
    knowledge: list[KnowledgeRecord]
    table: str


def load_run_data(data: D.DataConfig, evaluation: EvalConfig, internalization: InternalizationConfig | None = None) -> RunData:
    builtins = [s for s in [*data.train, *evaluation.datasets] if isinstance(s, str) and s in D.DATASETS]
    data_dir = D.resolve_data_dir(data.data_dir) if builtins else None
    sources = {s.name: load_source(s) for s in data.train if isinstance(s, D.SourceConfig)}
    tests, domains = _tests(data, evaluation, data_dir, sources)
    bbh = D.bbh_tasks(data_dir) if "bbh" in builtins else []
    for name in sources:
        if name in bbh:
            raise SkinternError(f"data.train: source name {name!r} is also a BBH task; pick another (knowledge is keyed by task)")
    parts = [_train_source(s, data, data_dir, sources) for s in data.train]
    pool = [ex for part in parts for ex in part.pool]
    pool, leaked = _without_test_questions(pool, tests)
    if leaked:
        print(f"left out {leaked} train items whose question is also a test question", flush=True)
    store = KnowledgeStore(record for part in parts for record in part.knowledge)
    rationales = {k: v for part in parts for k, v in part.rationales.items()}
    train = [ex for ex in pool if ex.id in rationales]
    if data.require_knowledge:
        train = [ex for ex in train if (ex.task, ex.index) in store]
    if not train:
        raise SkinternError("data.train: no usable training item (a correct teacher rationale"
                            + (", and knowledge: data.require_knowledge" if data.require_knowledge else "") + ")")
    dev = held_out_dev(train, store, internalization) if internalization and internalization.enabled else []
    if dev:
        held = {ex.id for ex in dev}
        pool, train = [ex for ex in pool if ex.id not in held], [ex for ex in train if ex.id not in held]
    return RunData(
        data_dir=data_dir,
        train_pool=pool,
        train=train,
        rationales=rationales,
        tests=tests,
        descriptions={t: D.task_description(data_dir, t) for t in bbh},
        fewshot={t: D.cot_prompt(data_dir, t) for t in bbh},
        knowledge=store,
        import_table="\n".join(part.table for part in parts),
        domains=domains,
        dev=dev,
    )


def held_out_dev(train: list[D.Example], store: KnowledgeStore, cfg: InternalizationConfig) -> list[D.Example]:
    """`cfg.dev_size` training items with teacher knowledge (so every stage's prompt can be built for them), drawn
    with `cfg.dev_seed`, in training order; at least one item with knowledge stays to train on."""
    covered = [ex for ex in train if (ex.task, ex.index) in store]
    if cfg.dev_size >= len(covered):
        raise SettingError("internalization.dev_size", f"expected fewer than the {len(covered)} training items "
                                                       f"with teacher knowledge, got {cfg.dev_size}")
    drawn = {ex.id for ex in random.Random(cfg.dev_seed).sample(covered, cfg.dev_size)}
    return [ex for ex in covered if ex.id in drawn]


def _tests(data: D.DataConfig, evaluation: EvalConfig, data_dir: Path | None,
           sources: dict[str, Source]) -> tuple[dict[str, list[D.Example]], dict[str, str]]:
    """Test items and domain of every eval dataset: a built-in benchmark, a train source's carved test part, or a
    source listed for testing only."""
    tests, domains = {}, {}
    for source in evaluation.datasets:
        name = D.source_name(source)
        limit = evaluation.per_dataset.get(name, evaluation.per_task)
        if isinstance(source, str) and source in D.DATASETS:
            tasks = evaluation.tasks.get(name, data.tasks if name == "bbh" else None)
            with in_field(f"eval.tasks.{name}" if name in evaluation.tasks else "data.tasks", D.UnknownTaskError):
                tests[name] = D.load_benchmark(name, data_dir, tasks=tasks, limit_per_task=limit, split="test")
            domains[name] = D.BUILTIN_DOMAINS[name]
            continue
        loaded = sources[name] if isinstance(source, str) else load_source(source)
        items = loaded.test_part(as_test_source=not isinstance(source, str))
        tasks = evaluation.tasks.get(name)
        if tasks is not None:
            items = [ex for ex in items if ex.task in {f"{name}/{t}" for t in tasks}]
        tests[name] = D.first_per_task(items, limit) if limit else items
        if not tests[name]:
            raise SkinternError(f"eval.datasets: source {name!r} has no test items for the requested tasks")
        domains[name] = loaded.config.domain
    return tests, domains


def _train_source(source: str | D.SourceConfig, data: D.DataConfig, data_dir: Path | None,
                  sources: dict[str, Source]) -> _Train:
    if source == "bbh":
        with in_field("data.tasks", D.UnknownTaskError):
            pool = D.load_bbh(data_dir, "train", data.tasks)
        if data.train_per_task:
            pool = D.first_per_task(pool, data.train_per_task)
        cot_path = Path(data.teacher_cot) if data.teacher_cot else data_dir / "bbh/teacher/code-davinci-002-cot.jsonl"
        imported = import_rationales(cot_path, pool)
        knowledge_path = Path(data.knowledge) if data.knowledge else data_dir / "bbh/teacher/knowledge.jsonl"
        store = KnowledgeStore.load(knowledge_path) if knowledge_path.is_file() or data.knowledge else KnowledgeStore()
        if not imported.by_id:
            raise SkinternError(f"{cot_path}: no usable training item (correct teacher rationale) for tasks {data.tasks or 'all'}")
        return _Train(pool, imported.by_id, store.records(), imported.table())
    if source == "gsm8k":
        pool = D.load_benchmark("gsm8k", data_dir, limit_per_task=data.train_per_task, split="train")
        solutions = D.gsm8k_solutions(data_dir, "train")
        return _Train(pool, {ex.id: solutions[ex.index] for ex in pool}, [],
                      _table_line("gsm8k", len(pool), len(pool), 0))
    loaded = sources[source.name]
    pool = loaded.train_part()
    rationales = {ex.id: loaded.rationales[ex.id] for ex in pool if ex.id in loaded.rationales}
    if not rationales:
        raise SkinternError(f"data.train: source {source.name!r} has no train item with a rationale that states its gold "
                            "answer (map fields.rationale or give a rationales: file)")
    keys = {(ex.task, ex.index) for ex in pool}
    return _Train(pool, rationales, [k for k in loaded.knowledge if (k.task, k.index) in keys],
                  _table_line(source.name, len(pool), len(rationales), sum(ex.id in loaded.wrong for ex in pool)))


def _table_line(name: str, items: int, kept: int, wrong: int) -> str:
    return f"{name:<44} kept {kept:>6} of {items} train items ({wrong} state a wrong answer, {items - kept - wrong} have none)"


def _without_test_questions(pool: list[D.Example], tests: dict[str, list[D.Example]]) -> tuple[list[D.Example], int]:
    """BBH repeats a few questions across its train/test split; such train items would leak the test item."""
    seen = {" ".join(ex.question.split()) for examples in tests.values() for ex in examples}
    kept = [ex for ex in pool if " ".join(ex.question.split()) not in seen]
    return kept, len(pool) - len(kept)
