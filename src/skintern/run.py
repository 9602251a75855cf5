"""`skintern run` and `skintern compare`: import teacher data, evaluate the untrained student,
distill with the configured method(s), evaluate on the same test items, and write
`results.json` + `report.md` under `runs/<name>/`.

Every step leaves its output in the run folder, so re-running the same command after a kill
skips what is finished and resumes what is not (training checkpoints, partial predictions)."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from skintern import data as D
from skintern.config import RunConfig
from skintern.errors import SkinternError
from skintern.evaluate import EvalResult, evaluate
from skintern.files import read_json, write_json
from skintern.flops import model_shape
from skintern.knowledge import KnowledgeStore
from skintern.methods import Context, Method, get_method
from skintern.report import render_report
from skintern.student import load_student
from skintern.teacher import import_rationales
from skintern.train import load_trained_weights, with_lora


@dataclass
class RunData:
    data_dir: Path
    train_pool: list[D.Example]  # every BBH train item of the configured tasks
    train: list[D.Example]  # the items methods train on: a correct teacher rationale (and knowledge if required)
    rationales: dict[str, str]  # example id -> rationale
    tests: dict[str, list[D.Example]]  # dataset -> test items
    descriptions: dict[str, str]  # BBH task -> description
    fewshot: dict[str, str]  # BBH task -> its 3-shot CoT prompt
    knowledge: KnowledgeStore = field(default_factory=KnowledgeStore)
    import_table: str = ""

    def description(self, ex: D.Example) -> str:
        return self.descriptions.get(ex.task, "") if ex.dataset == "bbh" else ""


def load_run_data(cfg: RunConfig) -> RunData:
    data_dir = D.resolve_data_dir(cfg.data.data_dir)
    tests = {}
    for name in cfg.eval.datasets:
        tasks = cfg.eval.tasks.get(name, cfg.data.tasks if name == "bbh" else None)
        limit = cfg.eval.per_dataset.get(name, cfg.eval.per_task)
        tests[name] = D.load_benchmark(name, data_dir, tasks=tasks, limit_per_task=limit, split="test")
    pool = D.load_bbh(data_dir, "train", cfg.data.tasks)
    if cfg.data.train_per_task:
        pool = D.first_per_task(pool, cfg.data.train_per_task)
    pool, leaked = _without_test_questions(pool, tests)
    if leaked:
        print(f"left out {leaked} train items whose question is also a test question", flush=True)
    cot_path = Path(cfg.data.teacher_cot) if cfg.data.teacher_cot else data_dir / "bbh/teacher/code-davinci-002-cot.jsonl"
    imported = import_rationales(cot_path, pool)
    knowledge_path = Path(cfg.data.knowledge) if cfg.data.knowledge else data_dir / "bbh/teacher/knowledge.jsonl"
    store = KnowledgeStore.load(knowledge_path) if knowledge_path.is_file() or cfg.data.knowledge else KnowledgeStore()
    train = [ex for ex in pool if ex.id in imported.by_id]
    if cfg.data.require_knowledge:
        train = [ex for ex in train if (ex.task, ex.index) in store]
    if not train:
        raise SkinternError(f"{cot_path}: no usable training item (correct teacher rationale) for tasks {cfg.data.tasks or 'all'}")
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


def evaluate_method(method: Method, rd: RunData, cfg: RunConfig, run_dir: Path) -> dict:
    """Evaluate with the method's own inference procedure on every dataset; one results.json entry."""
    student = method.ctx.student
    shape = model_shape(student.model.config)
    evals, results = {}, []
    for name, examples in rd.tests.items():
        res: EvalResult = evaluate(
            student.model,
            student.tokenizer,
            examples,
            method.prompt,
            run_dir / "predictions" / f"{method.name}-{name}.jsonl",
            batch_size=cfg.eval.batch_size,
            max_new_tokens=method.max_new_tokens or cfg.eval.max_new_tokens,
            second_pass=method.second_pass,
            shape=shape,
            backend=cfg.eval.backend,
        )
        evals[name] = res.summary()
        results.append(res)
    n = sum(r.n for r in results) or 1
    avg = lambda f: sum(f(r) * r.n for r in results) / n  # noqa: E731
    return {
        "method": method.name,
        "student": student.name,
        "eval": evals,
        "prompt_tokens_per_query": avg(lambda r: r.prompt_tokens_per_query),
        "generated_tokens_per_query": avg(lambda r: r.generated_tokens_per_query),
        "flops_per_query": {k: avg(lambda r: r.flops_per_query[k]) for k in ("prefill", "generation")},
        "wall_time_per_query_s": avg(lambda r: r.wall_time_per_query_s),
    }


def config_digest(cfg: RunConfig) -> str:
    """What a finished entry depends on: everything but the run's name, folder and method list."""
    settings = {k: v for k, v in cfg.to_dict().items() if k not in ("name", "output_dir", "method", "compare")}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def run_method(name: str, cfg: RunConfig, rd: RunData, run_dir: Path) -> dict:
    """Load a fresh student, train it with method `name` (if it trains) and evaluate it."""
    entry_path = run_dir / "entries" / f"{name}.json"
    if entry_path.is_file():  # evaluations are the slow part: a finished entry is not redone
        entry = read_json(entry_path)
        if entry.get("config_digest") != config_digest(cfg):
            raise SkinternError(f"{entry_path}: finished with a different config; pick another `name` or remove {run_dir}")
        return entry
    student = load_student(cfg.student.model, cfg.student.dtype)
    method = get_method(name)(Context(cfg=cfg, data=rd, student=student, run_dir=run_dir))
    stats = method.fit()
    entry = evaluate_method(method, rd, cfg, run_dir)
    if stats is not None:
        entry["train"] = stats.to_dict()
        entry["train_time_s"] = stats.seconds
    entry["config_digest"] = config_digest(cfg)
    write_json(entry_path, entry)
    return entry


def train_only(cfg: RunConfig) -> Path:
    """`skintern train`: fit the configured method and leave its weights in the run folder, no evaluation.

    Under `accelerate launch` every process runs this; `Trainer` shards the batches across them."""
    rd = load_run_data(cfg)
    student = load_student(cfg.student.model, cfg.student.dtype)
    method = get_method(cfg.method)(Context(cfg=cfg, data=rd, student=student, run_dir=cfg.run_dir))
    if not method.trains:
        raise SkinternError(f"method: {cfg.method!r} does not train")
    method.fit()
    return method.weights_dir / "final"


def evaluate_trained(cfg: RunConfig, weights: str | None = None) -> dict:
    """`skintern eval`: load the student with a run's trained weights and evaluate it the method's way.

    Writes predictions under runs/<name>/eval/; a SKIntern student gets the Std-CoT (question-only) prompt."""
    rd = load_run_data(cfg)
    student = load_student(cfg.student.model, cfg.student.dtype)
    method = get_method(cfg.method)(Context(cfg=cfg, data=rd, student=student, run_dir=cfg.run_dir))
    if method.trains:
        path = Path(weights) if weights else method.weights_dir / "final"
        if not path.is_dir():
            raise SkinternError(f"trained weights not found: {path} (train with `skintern run` first or pass --weights)")
        student.model = with_lora(student.model, cfg.train)
        load_trained_weights(student.model, path)
    return evaluate_method(method, rd, cfg, cfg.run_dir / "eval")


def methods_to_run(cfg: RunConfig, compare: bool) -> list[str]:
    if compare:
        return list(dict.fromkeys(cfg.compare.methods))
    before = ["prompt"] if cfg.eval.before_training and cfg.method != "prompt" else []
    return before + [cfg.method]


def run(cfg: RunConfig, compare: bool = False) -> Path:
    """The main job; returns the path of results.json. `compare` runs every method of `compare.methods`."""
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    rd = load_run_data(cfg)
    print(f"teacher rationales kept (correct answer only):\n{rd.import_table}", flush=True)
    print(f"training items: {len(rd.train)}; " + ", ".join(f"{k}: {len(v)} test items" for k, v in rd.tests.items()), flush=True)
    names = methods_to_run(cfg, compare)
    results = {"name": cfg.name, "student": cfg.student.model, "seed": cfg.seed, "config": cfg.to_dict(), "runs": []}
    for name in names:
        print(f"== {name}", flush=True)
        results["runs"].append(run_method(name, cfg, rd, run_dir))
    if "skintern" in names:
        from skintern.schedule import build_schedule

        results["schedule"] = build_schedule(cfg.schedule).to_dict()
    path = write_json(run_dir / "results.json", results)
    render_report(results, run_dir, title=f"skintern {'compare' if compare else 'run'}: {cfg.name}")
    return path


def compare_seeds(cfg: RunConfig) -> Path:
    """`skintern compare`: every method, once per seed (runs/<name>/seed-<s>/), then one combined results.json."""
    if len(cfg.compare.seeds) == 1:
        single = copy.deepcopy(cfg)
        single.seed = cfg.compare.seeds[0]
        return run(single, compare=True)
    seed_cfgs = []
    for seed in cfg.compare.seeds:
        one = copy.deepcopy(cfg)
        one.seed, one.output_dir, one.name = seed, str(cfg.run_dir), f"seed-{seed}"
        seed_cfgs.append(one)
    per_seed = []
    for one in seed_cfgs:
        if one is not seed_cfgs[0]:
            reuse_untrained_entries(seed_cfgs[0], one)
        per_seed.append(read_json(run(one, compare=True)))
    combined = combine_seeds(per_seed)
    combined.update(name=cfg.name, config=cfg.to_dict())
    path = write_json(cfg.run_dir / "results.json", combined)
    render_report(combined, cfg.run_dir, title=f"skintern compare: {cfg.name} ({len(per_seed)} seeds)")
    return path


def reuse_untrained_entries(first: RunConfig, cfg: RunConfig) -> None:
    """A method that does not train is a greedy evaluation of the same student, so the seed cannot change it:
    later seeds take the first seed's finished entry instead of evaluating again."""
    for name in methods_to_run(cfg, compare=True):
        source = first.run_dir / "entries" / f"{name}.json"
        target = cfg.run_dir / "entries" / f"{name}.json"
        if get_method(name).trains or not source.is_file() or target.is_file():
            continue
        entry = read_json(source)  # the first seed's run checked its config_digest
        entry.update(config_digest=config_digest(cfg), reused_from_seed=first.seed)
        write_json(target, entry)


def combine_seeds(per_seed: list[dict]) -> dict:
    """Mean over seeds of every number, with the spread (population std) of each accuracy."""
    import statistics

    out = {k: v for k, v in per_seed[0].items() if k != "runs"}
    out["seeds"] = [r["seed"] for r in per_seed]
    out["runs"] = []
    for i, first in enumerate(per_seed[0]["runs"]):
        entries = [r["runs"][i] for r in per_seed]
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        merged = dict(first)
        merged["seeds"] = out["seeds"]
        merged["eval"] = {}
        merged["accuracy_std"] = {}
        for ds, ev in first["eval"].items():
            accs = [e["eval"][ds]["accuracy"] for e in entries]
            merged["eval"][ds] = {
                "accuracy": mean(accs),
                "n": ev["n"],
                "per_task": {t: mean([e["eval"][ds]["per_task"][t] for e in entries]) for t in ev["per_task"]},
                "per_seed": accs,
            }
            merged["accuracy_std"][ds] = statistics.pstdev(accs)
        for key in ("prompt_tokens_per_query", "generated_tokens_per_query", "wall_time_per_query_s", "train_time_s"):
            if key in first:
                merged[key] = mean([e[key] for e in entries])
        merged["flops_per_query"] = {k: mean([e["flops_per_query"][k] for e in entries]) for k in ("prefill", "generation")}
        out["runs"].append(merged)
    return out
