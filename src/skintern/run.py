"""`skintern run CONFIG`: import teacher data, evaluate the untrained student, distill, evaluate
again on the same test items, and write `results.json` + `report.md` under `runs/<name>/`.

Every step leaves its output in the run folder, so re-running the same command after a kill
skips what is finished and resumes what is not (training checkpoints, partial predictions)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from skintern import data as D
from skintern.config import RunConfig
from skintern.errors import SkinternError
from skintern.evaluate import EvalResult, evaluate
from skintern.files import read_json, write_json
from skintern.flops import model_shape, query_flops
from skintern.prompts import cot_prompt, cot_target
from skintern.report import render_report
from skintern.student import Student, load_student
from skintern.teacher import import_rationales
from skintern.train import SFTExample, finetune


@dataclass
class RunData:
    data_dir: Path
    train: list[D.Example]  # BBH train items that have a correct teacher rationale
    rationales: dict[str, str]  # example id -> rationale
    tests: dict[str, list[D.Example]]  # dataset -> test items
    descriptions: dict[str, str]  # BBH task -> description
    import_table: str

    def description(self, ex: D.Example) -> str:
        return self.descriptions.get(ex.task, "")


def load_run_data(cfg: RunConfig) -> RunData:
    data_dir = D.resolve_data_dir(cfg.data.data_dir)
    train = D.load_bbh(data_dir, "train", cfg.data.tasks)
    if cfg.data.train_per_task:
        train = _cap_per_task(train, cfg.data.train_per_task)
    cot_path = Path(cfg.data.teacher_cot) if cfg.data.teacher_cot else data_dir / "bbh/teacher/code-davinci-002-cot.jsonl"
    imported = import_rationales(cot_path, train)
    kept = [ex for ex in train if ex.id in imported.by_id]
    if not kept:
        raise SkinternError(f"{cot_path}: no correct teacher rationale for any train item of {', '.join(cfg.data.tasks)}")
    tests = {}
    for name in cfg.eval.datasets:
        tasks = cfg.eval.tasks.get(name, cfg.data.tasks if name == "bbh" else None)
        tests[name] = D.load_benchmark(name, data_dir, tasks=tasks, limit_per_task=cfg.eval.per_task, split="test")
    descriptions = {t: D.task_description(data_dir, t) for t in D.bbh_tasks(data_dir)}
    return RunData(data_dir, kept, imported.by_id, tests, descriptions, imported.table())


def _cap_per_task(examples: list[D.Example], cap: int) -> list[D.Example]:
    seen: dict[str, int] = {}
    out = []
    for ex in examples:
        seen[ex.task] = seen.get(ex.task, 0) + 1
        if seen[ex.task] <= cap:
            out.append(ex)
    return out


def std_cot_examples(rd: RunData) -> list[SFTExample]:
    return [
        SFTExample(ex.id, cot_prompt(rd.description(ex), ex.question), cot_target(rd.rationales[ex.id], ex.answer))
        for ex in rd.train
    ]


def evaluate_all(student: Student, rd: RunData, cfg: RunConfig, method: str, run_dir: Path) -> dict:
    """Evaluate on every configured dataset with the question-only CoT prompt; one results.json entry."""
    evals, results = {}, []
    for name, examples in rd.tests.items():
        res: EvalResult = evaluate(
            student.model,
            student.tokenizer,
            examples,
            lambda ex: cot_prompt(rd.description(ex), ex.question),
            run_dir / "predictions" / f"{method}-{name}.jsonl",
            batch_size=cfg.eval.batch_size,
            max_new_tokens=cfg.eval.max_new_tokens,
        )
        evals[name] = res.summary()
        results.append(res)
    return run_entry(method, student, evals, results)


def run_entry(method: str, student: Student, evals: dict, results: list[EvalResult]) -> dict:
    """One entry of results.json: accuracy per dataset plus the measured inference cost per query."""
    n = sum(r.n for r in results) or 1
    avg = lambda attr: sum(getattr(r, attr) * r.n for r in results) / n  # noqa: E731
    prompt_tokens, generated = avg("prompt_tokens_per_query"), avg("generated_tokens_per_query")
    flops = query_flops(model_shape(student.model.config), prompt_tokens, generated)
    return {
        "method": method,
        "student": student.name,
        "eval": evals,
        "prompt_tokens_per_query": prompt_tokens,
        "generated_tokens_per_query": generated,
        "flops_per_query": {"prefill": flops["prefill"], "generation": flops["generation"]},
        "wall_time_per_query_s": avg("wall_time_per_query_s"),
    }


def run(cfg: RunConfig) -> Path:
    """The main job; returns the path of results.json."""
    if cfg.method != "std-cot":
        raise SkinternError(f"method: `skintern run` supports 'std-cot' here, got {cfg.method!r}")
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    rd = load_run_data(cfg)
    print(f"teacher rationales kept (correct answer only):\n{rd.import_table}", flush=True)
    for name, examples in rd.tests.items():
        print(f"test set {name}: {len(examples)} items", flush=True)
    student = load_student(cfg.student.model, cfg.student.dtype)
    runs = []
    if cfg.eval.before_training:
        runs.append(_cached_entry(run_dir / "entries" / "prompt.json", lambda: evaluate_all(student, rd, cfg, "prompt", run_dir)))
    start = time.perf_counter()
    model, stats = finetune(
        student.model, student.tokenizer, std_cot_examples(rd), cfg.train, run_dir / "train" / cfg.method, seed=cfg.seed, desc=cfg.method
    )
    student.model = model
    entry = _cached_entry(run_dir / "entries" / f"{cfg.method}.json", lambda: evaluate_all(student, rd, cfg, cfg.method, run_dir))
    entry["train"] = stats.to_dict()
    entry.setdefault("train_time_s", stats.seconds if stats.seconds else time.perf_counter() - start)
    runs.append(entry)
    results = {"name": cfg.name, "student": cfg.student.model, "seed": cfg.seed, "config": cfg.to_dict(), "runs": runs}
    path = write_json(run_dir / "results.json", results)
    render_report(results, run_dir, title=f"skintern run: {cfg.name}")
    return path


def _cached_entry(path: Path, compute) -> dict:
    """Evaluations are the slow part: keep each finished entry so a resumed run does not redo it."""
    if path.is_file():
        return read_json(path)
    entry = compute()
    write_json(path, entry)
    return entry
