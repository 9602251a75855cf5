"""The data of one run, shared by every method: training items with a correct teacher rationale, their
knowledge, the test items of every eval dataset, and BBH's task descriptions and few-shot prompts."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from skintern import data as D
from skintern.errors import SkinternError
from skintern.evaluate import EvalConfig
from skintern.knowledge import KnowledgeStore
from skintern.schema import SettingError, check_range
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
    data_dir: Path
    train_pool: list[D.Example]
    """Every BBH train item of the configured tasks (minus those repeating a test question)."""
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
    dev: list[D.Example] = field(default_factory=list)
    """Items of the internalization check, left out of `train` and `train_pool` (empty when it is off)."""

    def description(self, ex: D.Example) -> str:
        return self.descriptions.get(ex.task, "") if ex.dataset == "bbh" else ""


def load_run_data(data: D.DataConfig, evaluation: EvalConfig, internalization: InternalizationConfig | None = None) -> RunData:
    data_dir = D.resolve_data_dir(data.data_dir)
    tests = {}
    for name in evaluation.datasets:
        tasks = evaluation.tasks.get(name, data.tasks if name == "bbh" else None)
        limit = evaluation.per_dataset.get(name, evaluation.per_task)
        tests[name] = D.load_benchmark(name, data_dir, tasks=tasks, limit_per_task=limit, split="test")
    pool = D.load_bbh(data_dir, "train", data.tasks)
    if data.train_per_task:
        pool = D.first_per_task(pool, data.train_per_task)
    pool, leaked = _without_test_questions(pool, tests)
    if leaked:
        print(f"left out {leaked} train items whose question is also a test question", flush=True)
    cot_path = Path(data.teacher_cot) if data.teacher_cot else data_dir / "bbh/teacher/code-davinci-002-cot.jsonl"
    imported = import_rationales(cot_path, pool)
    knowledge_path = Path(data.knowledge) if data.knowledge else data_dir / "bbh/teacher/knowledge.jsonl"
    store = KnowledgeStore.load(knowledge_path) if knowledge_path.is_file() or data.knowledge else KnowledgeStore()
    train = [ex for ex in pool if ex.id in imported.by_id]
    if data.require_knowledge:
        train = [ex for ex in train if (ex.task, ex.index) in store]
    if not train:
        raise SkinternError(f"{cot_path}: no usable training item (correct teacher rationale) for tasks {data.tasks or 'all'}")
    dev = held_out_dev(train, store, internalization) if internalization and internalization.enabled else []
    if dev:
        held = {ex.id for ex in dev}
        pool, train = [ex for ex in pool if ex.id not in held], [ex for ex in train if ex.id not in held]
    bbh = D.bbh_tasks(data_dir)
    return RunData(
        data_dir=data_dir,
        train_pool=pool,
        train=train,
        dev=dev,
        rationales=imported.by_id,
        tests=tests,
        descriptions={t: D.task_description(data_dir, t) for t in bbh},
        fewshot={t: D.cot_prompt(data_dir, t) for t in bbh},
        knowledge=store,
        import_table=imported.table(),
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


def _without_test_questions(pool: list[D.Example], tests: dict[str, list[D.Example]]) -> tuple[list[D.Example], int]:
    """BBH repeats a few questions across its train/test split; such train items would leak the test item."""
    seen = {" ".join(ex.question.split()) for examples in tests.values() for ex in examples}
    kept = [ex for ex in pool if " ".join(ex.question.split()) not in seen]
    return kept, len(pool) - len(kept)
