"""`skintern run`, `train` and `eval`: the recipe of one method.

load the run's data -> load the student -> build the method -> fit -> evaluate -> write the entry

Every step leaves its output in the run folder, so re-running the same command after a kill skips what
is finished and resumes what is not (training checkpoints, partial predictions). Sweeps over methods and
seeds are in `skintern.sweep`."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
from pathlib import Path

import peft
import torch
import transformers

from skintern import __version__
from skintern.config import RunConfig, config_from_dict, load_config
from skintern.errors import SkinternError, in_field
from skintern.evaluate import EvalResult, GenerationCaps, evaluate
from skintern.files import atomic_write_bytes, changed_settings, check_writable_dir, fingerprint, read_json, read_jsonl, write_json
from skintern.flops import model_shape
from skintern.internalization import check_internalization
from skintern.methods import COST_REFERENCE, METHODS, UNTRAINED_BASELINE, Context, Method, SKIntern
from skintern.methods.base import TrainPlan
from skintern.methods.rundata import RunData, load_run_data
from skintern.prompts import cot_target
from skintern.report import AGAINST_COMPARISON, domain_groups, kept_runs, render_report, run_label
from skintern.results import DatasetScore, Entry, Internalization, QueryFlops, Results, load_entry, load_results, write_results
from skintern.retrieval import ExampleRetriever
from skintern.schema import from_dict, to_dict
from skintern.sources import file_digests
from skintern.stats import compare_methods
from skintern.student import Student, check_student_name, load_student
from skintern.train import leave_process_group, load_trained_weights, resolve_precision, with_lora


def build_method(name: str, cfg: RunConfig, rd: RunData, student: Student, run_dir: Path) -> Method:
    caps = GenerationCaps.from_data(student.tokenizer, [cot_target(rd.rationales[ex.id], ex.answer) for ex in rd.train],
                                    [ex.answer for ex in [*rd.train, *(t for tests in rd.tests.values() for t in tests)]])
    ctx = Context(data=rd, student=student, train=cfg.train, retrieval=cfg.retrieval, teacher=cfg.teacher,
                  seed=cfg.seed, run_dir=run_dir, caps=caps)
    return METHODS[name](cfg.settings(name), ctx)


def predictions_path(run_dir: Path, method: str, dataset: str) -> Path:
    return run_dir / "predictions" / f"{method}-{dataset}.jsonl"


def evaluate_method(method: Method, model, cfg: RunConfig, out_dir: Path, weights: str) -> Entry:
    """Score `model` with the method's own inference passes on every test dataset; one results entry.

    `weights` says which weights the model carries; saved predictions made under other weights or settings
    are not reused."""
    student = method.ctx.student
    generate = method.ctx.caps.generator(cfg.eval, model, student.tokenizer, student.prompt_format.stop_strings)
    shape = model_shape(model.config) if method.student_answers else None
    evals, results = {}, []
    for name, examples in method.ctx.data.tests.items():
        res: EvalResult = evaluate(lambda batch: method.infer(batch, generate), examples,
                                   predictions_path(out_dir, method.name, name), batch_size=cfg.eval.batch_size, shape=shape,
                                   key={"method": method.name, "weights": weights, "settings": prediction_settings(cfg)})
        evals[name] = DatasetScore(accuracy=res.accuracy, n=res.n, per_task=res.per_task, hit_cap=res.hit_cap,
                                   no_answer=res.no_answer)
        results.append(res)
    n = sum(r.n for r in results) or 1
    avg = lambda f: sum(f(r) * r.n for r in results) / n  # noqa: E731
    cost = dict(
        prompt_tokens_per_query=avg(lambda r: r.prompt_tokens_per_query),
        generated_tokens_per_query=avg(lambda r: r.generated_tokens_per_query),
        flops_per_query=QueryFlops(**{k: avg(lambda r: r.flops_per_query[k]) for k in ("prefill", "generation")}),
        wall_time_per_query_s=avg(lambda r: r.wall_time_per_query_s),
        max_new_tokens=generate.max_new_tokens,
    ) if method.student_answers else {}  # the teacher's answers: the student's cost is not theirs, so none is given
    return Entry(method=method.name, student=student.name, eval=evals, extras=method.result_extras() or None, **cost)


REPLACES_WEIGHTS = {"openai": "the endpoint", "llamacpp": "the GGUF file"}
"""Backends whose model answers in place of the student's weights."""


def untrained_weights(cfg: RunConfig) -> str:
    """What answers when no trained weights do: the endpoint under `eval.backend: openai`, the GGUF file under
    `llamacpp`, else the student as loaded."""
    if cfg.eval.backend == "openai":
        return f"served: {cfg.eval.openai.model} at {cfg.eval.openai.base_url}"
    if cfg.eval.backend == "llamacpp":
        return f"gguf: {fingerprint(cfg.eval.llamacpp.model_path)}"
    return f"untrained {cfg.student.model}"


def run_settings(cfg: RunConfig) -> dict:
    """What a finished entry depends on: everything but the run's name, folder, method list and ablation grid, the
    internalization section while it is off and the eval.openai / eval.llamacpp sections while unset (they change
    nothing then, so runs from before them keep their entries), and where training is logged (`train.report_to`:
    a tracker changes no result); plus the content of user sources' files (`source_files`, only when there are any).
    `train.precision` is held as what it resolves to on this machine, as in `train.training_key`."""
    skip = ("name", "output_dir", "method", "compare", "ablate") + (() if cfg.internalization.enabled else ("internalization",))
    settings = {k: v for k, v in cfg.to_dict().items() if k not in skip}
    settings["train"] = {k: v for k, v in settings["train"].items() if k != "report_to"}
    settings["train"]["precision"] = resolve_precision(cfg.train.precision)  # entries trained in bf16 are not fp32's
    settings["eval"] = {k: v for k, v in settings["eval"].items() if not (k in REPLACES_WEIGHTS and v is None)}
    digests = file_digests([*cfg.data.train, *cfg.eval.datasets])
    if digests:
        settings["source_files"] = digests
    return settings


def prediction_settings(cfg: RunConfig) -> dict:
    """What one saved prediction depends on besides the weights: the settings, but not which test items are chosen
    (a prediction is per item, so a larger test set only adds items)."""
    settings = run_settings(cfg)
    settings["eval"] = {k: v for k, v in settings["eval"].items()
                        if k not in ("datasets", "tasks", "per_task", "per_dataset", "before_training")}
    return settings


def config_digest(cfg: RunConfig) -> str:
    return hashlib.sha256(json.dumps(run_settings(cfg), sort_keys=True).encode()).hexdigest()[:16]


def seed_folder(run_dir: Path, seed: int, seeds: list[int]) -> Path:
    """Where a compare over `seeds` keeps the run of `seed`: `run_dir` itself for one seed, else its seed-<s>/."""
    return run_dir if len(seeds) == 1 else run_dir / f"seed-{seed}"


def entry_path(run_dir: Path, method: str) -> Path:
    return run_dir / "entries" / f"{method}.json"


def copy_entry(source_dir: Path, target_dir: Path, method: str, cfg: RunConfig, reused_from_seed: int | None = None) -> None:
    """Copy a finished entry of `method` and its predictions from one run folder into another, as `cfg`'s entry (the
    caller has checked that they hold for `cfg`). The entry is written last: a kill leaves none without its predictions."""
    entry = load_entry(entry_path(source_dir, method))
    for dataset in entry.eval:
        atomic_write_bytes(predictions_path(target_dir, method, dataset),
                           predictions_path(source_dir, method, dataset).read_bytes())
    entry.config_digest, entry.reused_from_seed = config_digest(cfg), reused_from_seed
    target = entry_path(target_dir, method)
    write_json(target.with_name(f"{method}.key.json"), run_settings(cfg))
    write_json(target, entry.to_dict())


def run_method(name: str, cfg: RunConfig, rd: RunData, run_dir: Path) -> Entry:
    """Load a fresh student, train it with method `name` (if it trains) and evaluate it; a finished entry is
    not redone (evaluations are the slow part), but one finished under another config is refused."""
    path = entry_path(run_dir, name)
    if path.is_file():  # made under `cfg`: `check_finished_entries` ran first
        return load_entry(path)
    student = load_student(cfg.student.model, cfg.student.dtype, cfg.student.prompt_format)
    method = build_method(name, cfg, rd, student, run_dir)
    fitted = method.fit()
    weights = METHODS[name].weights_dir(run_dir, cfg.settings(name)) / "final"
    entry = evaluate_method(method, fitted.model, cfg, run_dir,
                            fingerprint(weights) if fitted.stats is not None else untrained_weights(cfg))
    if fitted.stats is not None:
        entry.train, entry.train_time_s = fitted.stats.to_dict(), fitted.stats.seconds
    entry.config_digest = config_digest(cfg)
    write_json(path.with_name(f"{name}.key.json"), run_settings(cfg))
    write_json(path, entry.to_dict())
    return entry


def check_finished_entries(cfg: RunConfig) -> None:
    """Refuse, before any work, a run folder holding an entry finished under other settings than `cfg`'s (say, the
    precision `auto` resolved to on another machine): finished entries are reused, and one report must not mix
    settings. Call it for every run folder a command will write in, first."""
    digest, settings = config_digest(cfg), run_settings(cfg)
    for path in sorted((cfg.run_dir / "entries").glob("*.json")):
        if path.name.endswith(".key.json") or load_entry(path).config_digest == digest:
            continue
        changed = "; ".join(changed_settings(path.with_name(f"{path.stem}.key.json"), settings)[:3])
        raise SkinternError(f"{path}: finished with a different config ({changed or 'settings changed'}); "
                            f"pick another `name` or remove {cfg.run_dir}")


def methods_to_run(cfg: RunConfig, compare: bool) -> list[str]:
    if compare:
        return list(dict.fromkeys(cfg.compare.methods))
    before = [UNTRAINED_BASELINE] if cfg.eval.before_training and cfg.method != UNTRAINED_BASELINE else []
    return before + [cfg.method]


def dry_run(cfg: RunConfig, compare: bool = False) -> str:
    """The plan of `run` (or `compare`), from the config and the data alone: every file is read and checked,
    no model is loaded and nothing is written."""
    rd, plans = checked_data(cfg, compare)
    seeds = cfg.compare.seeds if compare else [cfg.seed]
    lines = [f"run folder: {cfg.run_dir}" + (f" (seed-<s>/ for seeds {', '.join(map(str, seeds))})" if len(seeds) > 1 else ""),
             f"student: {cfg.student.model}; train: {cfg.train.finetune}, lr {cfg.train.learning_rate:g}, "
             f"batch {cfg.train.batch_size} x {cfg.train.grad_accum}, max_length {cfg.train.max_length}"
             + (f", max_steps {cfg.train.max_steps}" if cfg.train.max_steps > 0 else ""),
             "test items: " + ", ".join(f"{name} {len(items)}" for name, items in rd.tests.items()),
             *([f"internalization check: {len(rd.dev)} dev items held out of every method's training"] if rd.dev else []),
             "method          trains  items  pairs  epochs  est. training tokens"]
    for name in methods_to_run(cfg, compare):
        if name not in plans:
            lines.append(f"{name:<15} no")
            continue
        plan = plans[name]
        lines.append(f"{name:<15} yes     {plan.items:>5}  {plan.pairs:>5}  {plan.epochs:>6g}  {plan.tokens:>20,}")
    lines += [text for name in methods_to_run(cfg, compare) if (text := METHODS[name].describe(cfg.settings(name)))]
    return "\n".join(lines)


def paired_comparisons(seed_runs: list[tuple[Path, int]], entries: list[Entry], domains: dict[str, str] | None) -> dict | None:
    """Paired differences (bootstrap CI over items, McNemar p) from the saved predictions of every (run folder,
    seed) (of an entry's `seeds` where it lists them): each method against std-cot, and SKIntern against the best
    other trained method by pooled accuracy; the ID/OOD groups follow the test datasets' `domains` tags."""
    rows = {e.method: [row for ds in e.eval for row in
                       seeded_predictions([(d, s) for d, s in seed_runs if e.seeds is None or s in e.seeds], e.method, ds)]
            for e in entries}
    groups = domain_groups(domains)
    out = {}
    if COST_REFERENCE in rows:
        out[COST_REFERENCE] = compare_methods(rows, COST_REFERENCE, groups=groups)
    baselines = [e.method for e in entries if METHODS[e.method].trains and e.method != SKIntern.name]
    if SKIntern.name in rows and baselines:
        pooled = {m: sum(r["correct"] for r in rows[m]) / max(len(rows[m]), 1) for m in baselines}
        best = max(baselines, key=pooled.get)
        out["best_baseline"] = compare_methods({best: rows[best], SKIntern.name: rows[SKIntern.name]}, best, groups=groups)
    return out or None


def seeded_predictions(seed_runs: list[tuple[Path, int]], method: str, dataset: str) -> list[dict]:
    """The saved per-item predictions of `method` on `dataset` in each (run folder, seed), each row with its seed:
    what the paired statistics pair on (item id, seed)."""
    return [dict(row, seed=seed) for run_dir, seed in seed_runs
            for row in read_jsonl(predictions_path(run_dir, method, dataset), required=("id", "dataset", "correct"))]


def saved_prediction_rows(results_path: Path, results: Results, entry: Entry) -> list[dict]:
    """The per-item predictions `entry` of the results.json at `results_path` was built from, each row with its
    seed: a single run's from the folder's predictions/, a multi-seed compare's from its seed-<s>/ folders, an
    ablation's from the variant folders its entries name."""
    folder = Path(results_path).parent
    seeds = results.seeds or [results.seed]
    places = ([(folder / where, int(s)) for s, where in entry.prediction_dirs.items()] if entry.prediction_dirs else
              [(seed_folder(folder, s, seeds), s) for s in entry.seeds or seeds])
    rows = []
    for dataset, score in entry.eval.items():
        for run_dir, _ in places:
            if not (path := predictions_path(run_dir, entry.method, dataset)).is_file():
                raise SkinternError(f"{results_path}: no predictions of {entry.method} on {dataset} at {path}, expected "
                                    "the per-item predictions the results were built from (an ablation's results "
                                    "written before they named their variant folders: rerun `skintern ablate`, which "
                                    "reuses the finished variants, or pass ablate/<variant>/results.json)")
        found = seeded_predictions(places, entry.method, dataset)
        accuracy = sum(bool(row["correct"]) for row in found) / max(len(found), 1)
        if abs(accuracy - score.accuracy) > 1e-6:
            raise SkinternError(f"{results_path}: the saved predictions of {entry.method} on {dataset} score "
                                f"{accuracy:.4f}, the results say {score.accuracy:.4f}; expected the predictions the "
                                "results were built from")
        rows += found
    return rows


def paired_against(sources: list[tuple[Path, Results]], merged: Results, reference: str,
                   methods: list[str] | None = None) -> dict:
    """Paired differences of every run of `merged` (`report.merge_results` of `sources`, keeping `methods`) against
    the run labelled `reference`, from each run's saved predictions, paired on (item id, seed): the comparisons of
    `skintern report --against`."""
    labels = [run_label(run, merged) for run in merged.runs]
    if reference not in labels:
        raise SkinternError(f"--against: no run labelled {reference!r}, expected one of {', '.join(labels)}")
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise SkinternError(f"--against: several runs are labelled {', '.join(repeated)}; give their results.json "
                            "different names")
    originals = [(path, results, run) for path, results in sources for run in kept_runs(results, methods)]
    rows = {label: saved_prediction_rows(path, results, run) for label, (path, results, run) in zip(labels, originals)}
    seeds = {label: {row["seed"] for row in found} for label, found in rows.items()}
    for label, own in seeds.items():
        if not own & seeds[reference]:
            raise SkinternError(f"--against {reference}: {label} ran on seed {', '.join(map(str, sorted(own)))} and "
                                f"{reference} on {', '.join(map(str, sorted(seeds[reference])))}, expected a seed in "
                                "common to pair on")
    key = COST_REFERENCE if reference == COST_REFERENCE else AGAINST_COMPARISON
    return {key: compare_methods(rows, reference, groups=domain_groups(merged.domains))}


def provenance(cfg: RunConfig) -> dict:
    """What produced a run besides its config: the resolved embedder, compressor and scorer, library versions,
    device, training precision and the project's git commit."""
    skintern_settings = cfg.settings(SKIntern.name)
    return {
        "embedder": ExampleRetriever.resolve_embedder(cfg.retrieval.embedder, cfg.retrieval.embedder_path),
        "compressor": skintern_settings.compressor,
        "scorer": skintern_settings.scorer_model or skintern_settings.llmlingua2_model or f"the student ({cfg.student.model})",
        "versions": {"skintern": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
                     "peft": peft.__version__},
        "device": f"cuda ({torch.cuda.get_device_name()})" if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)",
        "precision": resolve_precision(cfg.train.precision),
        "git_commit": code_commit(),
    }


CODE_PATHS = ("src", "pyproject.toml")
"""What `code_commit` calls "+dirty" when changed: the code, not results written into the checkout (docs/results/)."""


@functools.cache
def code_commit() -> str | None:
    """The project's git commit ("+dirty" when the tracked files of CODE_PATHS differ from it; None outside a
    checkout) when this process first asked. `run` asks before it trains, so its results name the code they were
    produced with, not a commit made while a long run was going."""
    repo = Path(__file__).resolve().parents[2]
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS],
                           capture_output=True, text=True)
    return (commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")) if commit.returncode == 0 else None


def checked_data(cfg: RunConfig, compare: bool) -> tuple[RunData, dict[str, TrainPlan]]:
    """Everything `run` (and its dry run) checks before a model is loaded: the output folder, the student's name,
    the data, what each method reads itself (`Method.check`), and for a compare that every trained method sees
    the same items the same number of times (SKIntern's stages split the epochs the baselines train) unless
    compare.allow_unequal_budgets. Returns the data and each trained method's plan."""
    check_writable_dir(cfg.output_dir, "output_dir")
    with in_field("student.model"):
        check_student_name(cfg.student.model)
    trained = [m for m in methods_to_run(cfg, compare) if METHODS[m].trains]
    if cfg.eval.backend in REPLACES_WEIGHTS and trained:
        raise SkinternError(f"eval.backend: {cfg.eval.backend} scores {REPLACES_WEIGHTS[cfg.eval.backend]}, not what "
                            f"{', '.join(trained)} would train; run method prompt, or score it with `skintern eval`")
    rd = load_run_data(cfg.data, cfg.eval, cfg.internalization)
    for m in methods_to_run(cfg, compare):
        METHODS[m].check(cfg.settings(m), rd, cfg.teacher)
    plans = {m: METHODS[m].plan(cfg.settings(m), rd, cfg.train) for m in methods_to_run(cfg, compare) if METHODS[m].trains}
    budgets = {m: plan.budget for m, plan in plans.items()}
    if compare and len(set(budgets.values())) > 1 and not cfg.compare.allow_unequal_budgets:
        hint = ("set data.require_knowledge: true so every method trains on the items with knowledge"
                if len({p.items for p in plans.values()}) > 1 else
                f"make {SKIntern.name}'s stage epochs add up to train.epochs")
        raise SkinternError(f"compare: unequal training budgets ({'; '.join(f'{m} {b}' for m, b in budgets.items())}); "
                            f"{hint}, or set compare.allow_unequal_budgets: true")
    return rd, plans


def run(cfg: RunConfig, compare: bool = False) -> Path:
    """The main job; returns the path of results.json. `compare` runs every method of `compare.methods`."""
    rd, plans = checked_data(cfg, compare)
    check_finished_entries(cfg)
    code_commit()  # pinned now: the provenance written at the end names the code this run started with
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"teacher rationales kept (correct answer only):\n{rd.import_table}", flush=True)
    print(f"training items: {len(rd.train)}; " + ", ".join(f"{k}: {len(v)} test items" for k, v in rd.tests.items()), flush=True)
    entries, internalization, methods = [], None, methods_to_run(cfg, compare)
    for name in methods:
        print(f"== {name}", flush=True)
        entry = run_method(name, cfg, rd, run_dir)
        if compare and name in plans:
            entry.budget = {"items": plans[name].items, "pairs": plans[name].pairs, "epochs": plans[name].epochs}
        entries.append(entry)
        internalization = internalization or internalization_when_ready(cfg, rd, run_dir, methods)
    schedules = [e.extras["schedule"] for e in entries if e.extras and "schedule" in e.extras]
    results = Results(runs=entries, name=cfg.name, student=cfg.student.model, seed=cfg.seed, config=cfg.to_dict(),
                      schedule=schedules[0] if schedules else None,
                      comparisons=paired_comparisons([(run_dir, cfg.seed)], entries, rd.domains), provenance=provenance(cfg),
                      internalization=internalization,
                      domains=rd.domains)
    path = write_results(run_dir / "results.json", results)
    render_report(results, run_dir, title=f"skintern {'compare' if compare else 'run'}: {cfg.name}")
    return path


def internalization_when_ready(cfg: RunConfig, rd: RunData, run_dir: Path, methods: list[str]) -> Internalization | None:
    """The internalization check as soon as the entries of the methods it reads (SKIntern, and Std-CoT when `methods`
    has it) are finished in the run folder, whatever their place in `methods`, not after the last method: a long
    compare stopped later still has it. Saved in the run folder (internalization.json) keyed on the config, so later
    calls and reruns read it; None until then, or when off."""
    if not cfg.internalization.enabled or SKIntern.name not in methods:
        return None
    if not all(entry_path(run_dir, name).is_file() for name in {SKIntern.name} | ({COST_REFERENCE} & set(methods))):
        return None
    if (saved := saved_internalization(run_dir, cfg)) is not None:
        return saved
    section = internalization_check(cfg, rd, run_dir, methods)
    write_json(internalization_path(run_dir), {"config_digest": config_digest(cfg), "section": to_dict(section, drop_none=True)})
    return section


def internalization_path(run_dir: Path) -> Path:
    return run_dir / "internalization.json"


def saved_internalization(run_dir: Path, cfg: RunConfig) -> Internalization | None:
    """The check saved in `run_dir` under `cfg`'s settings (`internalization_when_ready`); None if there is none."""
    path = internalization_path(run_dir)
    if path.is_file() and (saved := read_json(path)).get("config_digest") == config_digest(cfg):
        return from_dict(Internalization, saved["section"], str(path), strict=False)
    return None


def internalization_check(cfg: RunConfig, rd: RunData, run_dir: Path, methods: list[str]) -> Internalization | None:
    """The internalization check of the run's trained SKIntern stages, on a fresh (untrained) student, with the
    Std-CoT student as the reference when `methods` has it; None when the check is off or SKIntern did not run."""
    if not cfg.internalization.enabled or SKIntern.name not in methods:
        return None
    print("== internalization check", flush=True)
    scored = [SKIntern.name] + ([COST_REFERENCE] if COST_REFERENCE in methods else [])
    retrained = {name: same for name in scored if (same := restore_weights(name, cfg, rd, run_dir)) is not None}
    student = load_student(cfg.student.model, cfg.student.dtype, cfg.student.prompt_format)
    method = build_method(SKIntern.name, cfg, rd, student, run_dir)
    reference = ((COST_REFERENCE, METHODS[COST_REFERENCE].weights_dir(run_dir, cfg.settings(COST_REFERENCE)) / "final")
                 if COST_REFERENCE in methods else None)
    section = check_internalization(method, cfg, prediction_settings(cfg), reference)
    section.retrained = retrained or None
    return section


def restore_weights(name: str, cfg: RunConfig, rd: RunData, run_dir: Path) -> bool | None:
    """Retrain a finished method whose weights are not on this machine (weights stay where they were made; entries
    and predictions travel), under the same settings and seed. Returns whether the retrain reproduced, byte for
    byte, the weights its evaluation recorded; None when the weights were here."""
    weights = METHODS[name].weights_dir(run_dir, cfg.settings(name)) / "final"
    if weights.is_dir():
        return None
    print(f"== {name}: {weights} is not on this machine; retraining it for the internalization check", flush=True)
    student = load_student(cfg.student.model, cfg.student.dtype, cfg.student.prompt_format)
    build_method(name, cfg, rd, student, run_dir).fit()
    keys = [Path(f"{predictions_path(run_dir, name, dataset)}.key.json") for dataset in load_entry(entry_path(run_dir, name)).eval]
    recorded = {read_json(key).get("weights") for key in keys if key.is_file()}
    same = recorded == {fingerprint(weights)}
    if not same:
        print(f"skintern: warning: the retrained {name} weights differ from those its evaluation recorded "
              f"({', '.join(sorted(map(str, recorded))) or 'none recorded'}); the check scores the retrained ones", flush=True)
    return same


def internalization_of_run(source: str, overrides: list[str] | None = None) -> Path:
    """`skintern internalization`: the check on a finished run's stage weights (a run folder, whose results.json
    holds its config, or the run's config file); writes the section into its results.json and redraws the report.
    Refused unless the run trained under this very config with the check on: otherwise the dev items trained."""
    given = Path(source)
    if given.is_dir():
        run_dir = given
        results = load_results(run_dir / "results.json")
        if results.config is None:
            raise SkinternError(f"{run_dir / 'results.json'}: no config recorded; pass the run's config file instead")
        cfg = config_from_dict(results.config, str(run_dir / "results.json"))
    else:
        cfg = load_config(given, overrides)
        run_dir = cfg.run_dir
        results = load_results(run_dir / "results.json")
    if not cfg.internalization.enabled:
        raise SkinternError(f"{source}: internalization.enabled is off in this run's config, so its training "
                            "included the dev items; rerun with internalization.enabled: true")
    trained = {e.method: e.config_digest for e in results.runs}
    if trained.get(SKIntern.name) != config_digest(cfg):
        raise SkinternError(f"{run_dir}: no SKIntern entry trained under this config (rerun it with this config)")
    rd = load_run_data(cfg.data, cfg.eval, cfg.internalization)
    results.internalization = internalization_check(cfg, rd, run_dir, [e.method for e in results.runs])
    path = write_results(run_dir / "results.json", results)
    compare = any(e.budget for e in results.runs)
    render_report(results, run_dir, title=f"skintern {'compare' if compare else 'run'}: {cfg.name}")
    return path


def train_only(cfg: RunConfig) -> Path:
    """`skintern train`: fit the configured method and leave its weights in the run folder, no evaluation.

    Under `accelerate launch` every process runs this; `Trainer` shards the batches across them."""
    if not METHODS[cfg.method].trains:
        raise SkinternError(f"method: {cfg.method!r} does not train")
    check_writable_dir(cfg.output_dir, "output_dir")
    rd = load_run_data(cfg.data, cfg.eval, cfg.internalization)
    student = load_student(cfg.student.model, cfg.student.dtype, cfg.student.prompt_format)
    build_method(cfg.method, cfg, rd, student, cfg.run_dir).fit()
    leave_process_group()
    return METHODS[cfg.method].weights_dir(cfg.run_dir, cfg.settings(cfg.method)) / "final"


def evaluate_trained(cfg: RunConfig, weights: str | None = None) -> Entry:
    """`skintern eval`: load the student with a run's trained weights and evaluate it the method's way.

    Writes predictions under runs/<name>/eval/; a SKIntern student gets the Std-CoT (question-only) prompt.
    Under `eval.backend: openai` (llamacpp) the endpoint (the GGUF file) answers in place of the weights: none are read."""
    cls = METHODS[cfg.method]
    served = cfg.eval.backend in REPLACES_WEIGHTS
    path = Path(weights) if weights else cls.weights_dir(cfg.run_dir, cfg.settings(cfg.method)) / "final"
    if cls.trains and not served and not path.is_dir():
        raise SkinternError(f"trained weights not found: {path} (train with `skintern run` first or pass --weights)")
    check_writable_dir(cfg.output_dir, "output_dir")
    rd = load_run_data(cfg.data, cfg.eval, cfg.internalization)
    student = load_student(cfg.student.model, cfg.student.dtype, cfg.student.prompt_format)
    model = student.model
    if cls.trains and not served:
        model = with_lora(model, cfg.train)
        load_trained_weights(model, path)
    method = build_method(cfg.method, cfg, rd, student, cfg.run_dir)
    return evaluate_method(method, model, cfg, cfg.run_dir / "eval",
                           fingerprint(path) if cls.trains and not served else untrained_weights(cfg))
