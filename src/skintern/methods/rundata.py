"""The data of one run, shared by every method: training items with a correct teacher rationale, their
knowledge, the test items of every eval dataset, and BBH's task descriptions and few-shot prompts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from skintern import data as D
from skintern.errors import SkinternError
from skintern.evaluate import EvalConfig
from skintern.knowledge import KnowledgeStore
from skintern.teacher import import_rationales


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

    def description(self, ex: D.Example) -> str:
        return self.descriptions.get(ex.task, "") if ex.dataset == "bbh" else ""


def load_run_data(data: D.DataConfig, evaluation: EvalConfig) -> RunData:
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
    bbh = D.bbh_tasks(data_dir)
    return RunData(
        data_dir=data_dir,
        train_pool=pool,
        train=train,
        rationales=imported.by_id,
        tests=tests,
        descriptions={t: D.task_description(data_dir, t) for t in bbh},
        fewshot={t: D.cot_prompt(data_dir, t) for t in bbh},
        knowledge=store,
        import_table=imported.table(),
    )


def _without_test_questions(pool: list[D.Example], tests: dict[str, list[D.Example]]) -> tuple[list[D.Example], int]:
    """BBH repeats a few questions across its train/test split; such train items would leak the test item."""
    seen = {" ".join(ex.question.split()) for examples in tests.values() for ex in examples}
    kept = [ex for ex in pool if " ".join(ex.question.split()) not in seen]
    return kept, len(pool) - len(kept)
