"""Render results.json into report.md, report.html and PNG plots, so a run can be read without code.

Markdown and HTML are built from the same sections (paragraphs, tables, images) so they never disagree.
Plots use matplotlib's Agg canvas directly (no pyplot state), and every file is written atomically.
"""

from __future__ import annotations

import dataclasses
import html
import io
import itertools
import os
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from skintern.errors import SkinternError
from skintern.files import atomic_write_bytes, atomic_write_text
from skintern.methods import COST_REFERENCE, UNTRAINED_BASELINE, SKIntern
from skintern.methods.cascod import CasCoD
from skintern.methods.kard import KARD
from skintern.paper import ABLATIONS, TABLE_1, Direction, PaperTable, directions
from skintern.results import Entry, Internalization, Results
from skintern.stats import resolvable_difference, seed_std

UNTAGGED_DOMAINS = {"bbh": "in", "bbsub": "out", "agieval": "out", "arc-easy": "out", "arc-challenge": "out"}
"""The groups of results.json written before runs stored their datasets' tags (`Results.domains`)."""
ABLATION_COMPARISON = "ablation_base"
"""results.json `comparisons` key of `skintern ablate`'s variants against the config as written."""
AGAINST_COMPARISON = "against"
"""results.json `comparisons` key of `skintern report --against`, when its reference is not std-cot."""
_MISSING = "–"


# ---------------------------------------------------------------- merging


def kept_runs(results: Results, methods: list[str] | None) -> list[Entry]:
    """The runs of `results` a report keeps: those whose method or label (an ablation's variant name) is in
    `methods` (all when None), in their order."""
    return [run for run in results.runs if methods is None or run.method in methods or run.label in methods]


def _staged(run: Entry) -> bool:
    """Whether `run` trained in stages (its training record or its extras say so): the run a schedule describes."""
    return bool((run.train or {}).get("stages")) or "schedule" in (run.extras or {})


def named_apart(loaded: list[tuple[Path, Results]]) -> list[tuple[Path, Results]]:
    """`loaded` (path, results) with names that tell them apart in a merged report: results that
    share a name (each seed of a multi-seed compare is "seed-43") take the shortest tail of their folder path
    that no other of them shares, "epochs-12-seeds/seed-43" beside "evidence-cpu/seed-43"."""
    counts = Counter(results.name for _, results in loaded)
    named = []
    for path, results in loaded:
        if results.name and counts[results.name] > 1:
            folders = [p.resolve().parent.parts for p, r in loaded if r.name == results.name]
            own = path.resolve().parent.parts
            depth = next((n for n in range(1, len(own) + 1)
                          if sum(parts[-n:] == own[-n:] for parts in folders) == 1), len(own))
            results = dataclasses.replace(results, name="/".join(own[-depth:]))
        named.append((path, results))
    return named


def merge_results(results: list[Results], methods: list[str] | None = None) -> Results:
    """Several results.json as one report (a compare plus its ablation runs, say), runs in the order given,
    only those of `methods` if given.

    A method that occurs in more than one of them is labelled with its run name, "skintern [no-knowledge]".
    The schedule section is kept only when a single input has one, since it describes one run, and only while
    that input keeps a run trained in stages: a report of its Std-CoT alone has no schedule to show."""
    if methods is not None:
        found = {name for r in results for run in r.runs for name in (run.method, run.label)}
        missing = [name for name in methods if name not in found]
        if missing:
            raise SkinternError(f"--methods: no run of method or label {', '.join(missing)} in the results given "
                                f"(they have {', '.join(sorted(n for n in found if n))})")
        results = [dataclasses.replace(r, runs=kept, schedule=r.schedule if any(_staged(run) for run in kept) else None)
                   for r in results if (kept := kept_runs(r, methods))]
    if len(results) == 1:
        return results[0]
    names = [r.name or f"results {i + 1}" for i, r in enumerate(results)]
    counts = Counter(run.method for r in results for run in r.runs)
    runs = []
    for name, one in zip(names, results):
        for run in one.runs:
            run = dataclasses.replace(run, student=run.student or one.student,
                                      seeds=list(_seeds_of(run, one)) or None)
            if counts[run.method] > 1 and not run.label:
                run.label = f"{run.method} [{name}]"
            runs.append(run)
    students = {r.student for r in results}
    schedules = [r.schedule for r in results if r.schedule]
    tagged = any(r.domains is not None for r in results)  # then untagged inputs bring the groups they had
    domains = {d: tag for r in results for d, tag in (UNTAGGED_DOMAINS if r.domains is None else r.domains).items()}
    return Results(runs=runs, name=" + ".join(names), student=students.pop() if len(students) == 1 else None,
                   schedule=schedules[0] if len(schedules) == 1 else None, domains=domains if tagged else None)


# ---------------------------------------------------------------- numbers


def domain_groups(domains: Mapping[str, str] | None) -> dict[str, tuple[str, ...]]:
    """{"ID": in-domain datasets, "OOD": out-of-domain ones}, from the tags a run stored (`Results.domains`);
    results of older releases (None) keep the groups they were reported with."""
    tags = UNTAGGED_DOMAINS if domains is None else domains
    return {"ID": tuple(d for d, tag in tags.items() if tag == "in"), "OOD": tuple(d for d, tag in tags.items() if tag == "out")}


def dataset_columns(results: Results) -> list[str]:
    """Datasets present in any run: in-domain first, then out-of-domain, then the rest as found."""
    seen = {d: None for run in results.runs for d in run.eval}
    groups = domain_groups(results.domains)
    known = [d for d in groups["ID"] + groups["OOD"] if d in seen]
    return known + [d for d in seen if d not in known]


def _first_in_domain(results: Results) -> str | None:
    """The dataset of the per-task table and plot: the first in-domain one present."""
    seen = {d for run in results.runs for d in run.eval}
    return next((d for d in domain_groups(results.domains)["ID"] if d in seen), None)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _accuracy(run: Entry, dataset: str) -> float | None:
    entry = run.eval.get(dataset)
    return None if entry is None else entry.accuracy


def _group_avg(run: Entry, group: tuple[str, ...]) -> float | None:
    return _mean([_accuracy(run, d) for d in group if d in run.eval])


def _group_spread(run: Entry, group: tuple[str, ...]) -> float | None:
    """Spread over seeds of the group average: the sample std of the per-seed means over the group's
    datasets (None unless every dataset of the group present has the same two or more seeds)."""
    per_seed = [run.eval[d].per_seed or [] for d in group if d in run.eval]
    if not per_seed or len({len(accs) for accs in per_seed}) != 1 or len(per_seed[0]) < 2:
        return None
    return seed_std([statistics.fmean(seed) for seed in zip(*per_seed)])


def _total_flops(run: Entry) -> float | None:
    return run.flops_per_query.total if run.flops_per_query else None


def run_label(run: Entry, results: Results) -> str:
    """The run's own label if it has one, else the method, plus the student when it differs from the report's."""
    if run.label:
        return run.label
    if run.student and run.student != results.student:
        return f"{run.method} ({run.student})"
    return run.method


def summary_table(results: Results) -> list[dict]:
    """One row per run: method, accuracy per dataset, ID/OOD averages with their spread over seeds and
    per-query cost (None when absent)."""
    datasets = dataset_columns(results)
    groups = domain_groups(results.domains)
    rows = []
    for run in results.runs:
        row: dict[str, Any] = {"method": run_label(run, results)}
        row.update({d: _accuracy(run, d) for d in datasets})
        row["id_avg"] = _group_avg(run, groups["ID"])
        row["ood_avg"] = _group_avg(run, groups["OOD"])
        row["id_std"] = _group_spread(run, groups["ID"])
        row["ood_std"] = _group_spread(run, groups["OOD"])
        row["prompt_tokens"] = run.prompt_tokens_per_query
        row["generated_tokens"] = run.generated_tokens_per_query
        row["flops_per_query"] = _total_flops(run)
        row["wall_time_s"] = run.wall_time_per_query_s
        rows.append(row)
    return rows


def _baseline_deltas(run: Entry, baseline: Entry) -> tuple[list[tuple[str, float]], list[str]]:
    """Accuracy change vs the untrained student where both saw the same items, and the datasets skipped."""
    deltas, skipped = [], []
    for dataset, entry in run.eval.items():
        base = baseline.eval.get(dataset)
        if base is None:
            continue
        if base.n == entry.n:
            deltas.append((dataset, entry.accuracy - base.accuracy))
        else:
            skipped.append(dataset)
    return deltas, skipped


def _baseline_for(run: Entry, results: Results, method: str = UNTRAINED_BASELINE) -> Entry | None:
    """The first run of `method` on the same student (the reference a run is compared with)."""
    student = run.student or results.student
    for candidate in results.runs:
        if candidate.method == method and (candidate.student or results.student) == student:
            return candidate
    return None


def _ratio(value: float | None, reference: float | None) -> str:
    return _MISSING if value is None or not reference else f"{value / reference:.2f}×"


# ---------------------------------------------------------------- document model


@dataclass(frozen=True)
class _Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class _Image:
    file: str
    alt: str


_Block = str | _Table | _Image


def _pct(value: float | None, std: float | None = None) -> str:
    if value is None:
        return _MISSING
    return f"{100 * value:.1f}" + (f" ± {100 * std:.1f}" if std is not None else "")


def _num(value: float | None, fmt: str) -> str:
    return _MISSING if value is None else format(value, fmt)


def _gflops(value: float | None) -> str:
    return _MISSING if value is None else f"{value / 1e9:,.2f}"


def _accuracy_table(results: Results) -> _Table:
    """One row per run; a Seeds column where the runs were not all trained on the same seeds, so a one-seed
    figure is not read as a mean beside the others."""
    datasets = dataset_columns(results)
    with_seeds = _mixed_seeds(results)
    headers = ["Method"] + (["Seeds"] if with_seeds else []) + datasets + ["ID avg", "OOD avg"]
    rows = []
    for run, row in zip(results.runs, summary_table(results)):
        std = run.accuracy_std or {}
        cells = [_pct(row[d], std.get(d) if row[d] is not None else None) for d in datasets]
        seeds = [", ".join(map(str, _seeds_of(run, results))) or _MISSING] if with_seeds else []
        rows.append([row["method"], *seeds, *cells, _pct(row["id_avg"], row["id_std"]),
                     _pct(row["ood_avg"], row["ood_std"])])
    return _Table(headers, rows)


def _has_spread(results: Results) -> bool:
    return any(run.accuracy_std for run in results.runs)


def _mixed_seeds(results: Results) -> bool:
    """Whether the runs were trained on different seeds (a combined compare's first-seed-only methods, an
    ablation's variants run on fewer seeds than the base)."""
    return len({_seeds_of(run, results) for run in results.runs}) > 1


def _seeds_of(run: Entry, results: Results) -> tuple[int, ...]:
    return tuple(run.seeds or ([] if results.seed is None else [results.seed]))


def _cost_table(results: Results) -> _Table:
    headers = ["Method", "Prompt tok/query", "Gen tok/query", "Prefill GFLOPs", "Generation GFLOPs",
               "Total GFLOPs", "Wall s/query", "Train time s"]
    references = [_baseline_for(run, results, COST_REFERENCE) for run in results.runs]
    with_ratios = any(references)
    if with_ratios:
        headers += [f"Prompt tok × {COST_REFERENCE}", f"FLOPs × {COST_REFERENCE}"]
    rows = []
    for run, reference in zip(results.runs, references):
        flops = run.flops_per_query
        ratios = [] if not with_ratios else [
            _ratio(run.prompt_tokens_per_query, reference and reference.prompt_tokens_per_query),
            _ratio(_total_flops(run), reference and _total_flops(reference)),
        ]
        rows.append([
            run_label(run, results),
            _num(run.prompt_tokens_per_query, ".1f"),
            _num(run.generated_tokens_per_query, ".1f"),
            _gflops(flops and flops.prefill),
            _gflops(flops and flops.generation),
            _gflops(_total_flops(run)),
            _num(run.wall_time_per_query_s, ".2f"),
            _num(run.train_time_s, ",.0f"),
            *ratios,
        ])
    return _Table(headers, rows)


def _cost_against_costly_lines(results: Results) -> list[str]:
    """SKIntern's inference cost per query as a fraction of the methods that pay for knowledge in the prompt (KARD)
    or for a second pass (CasCoD): the saving the method claims."""
    lines = []
    for run in results.runs:
        if run.method != SKIntern.name:
            continue
        parts = [f"{_ratio(run.prompt_tokens_per_query, costly.prompt_tokens_per_query)} the prompt tokens and "
                 f"{_ratio(_total_flops(run), _total_flops(costly))} the FLOPs of {costly.method}"
                 for costly in (_baseline_for(run, results, name) for name in (KARD.name, CasCoD.name)) if costly]
        if parts:
            lines.append(f"{run_label(run, results)} per query: " + "; ".join(parts) + ".")
    return lines


def _delta_lines(results: Results) -> list[str]:
    lines = []
    for run in results.runs:
        baseline = _baseline_for(run, results)
        if run.method == UNTRAINED_BASELINE or baseline is None:
            continue
        deltas, skipped = _baseline_deltas(run, baseline)
        text = ", ".join(f"{d} {100 * v:+.1f} pp" for d, v in deltas) or "no dataset scored on the same items"
        if skipped:
            text += f" (not comparable, different n: {', '.join(skipped)})"
        lines.append(f"- {run_label(run, results)}: {text}")
    return lines


def _per_task(results: Results, dataset: str) -> tuple[list[str], list[tuple[str, dict]]]:
    """Task names (first-seen order) and (label, per_task) for runs that report tasks for `dataset`."""
    runs = [(run_label(r, results), r.eval[dataset].per_task) for r in results.runs if dataset in r.eval]
    runs = [(label, tasks) for label, tasks in runs if tasks]
    tasks = list({t: None for _, per_task in runs for t in per_task})
    return tasks, runs


def _per_task_table(tasks: list[str], runs: list[tuple[str, dict]]) -> _Table:
    rows = [[task] + [_pct(per_task.get(task)) for _, per_task in runs] for task in tasks]
    return _Table(["Task"] + [label for label, _ in runs], rows)


def _schedule_table(schedule: dict) -> _Table:
    """The stages; where recorded, with the keep-rate the compressed knowledge achieved (mean, student tokens)
    and the examples the prompts kept under train.max_length (mean)."""
    achieved = any("achieved_keep_rate" in stage for stage in schedule["stages"])
    kept = any("achieved_num_examples" in stage for stage in schedule["stages"])
    rows = [[
        str(stage.get("stage", i)),
        f"{stage['knowledge_keep_rate']:.2f}",
        *([_num(stage.get("achieved_keep_rate"), ".2f")] if achieved else []),
        f"{stage['num_examples']:g}",
        *([_num(stage.get("achieved_num_examples"), ".2f")] if kept else []),
        _num(stage.get("epochs"), ".2g"),
        "yes" if stage.get("final") else "no",
    ] for i, stage in enumerate(schedule["stages"])]
    headers = ["Stage", "Knowledge keep-rate", *(["Achieved keep-rate"] if achieved else []), "Examples",
               *(["Examples kept (mean)"] if kept else []), "Epochs", "Final"]
    return _Table(headers, rows)


def _schedule_summary(schedule: dict) -> str:
    """The schedule's parameters; results of older releases have K decay stages and N examples instead of T and K."""
    if "T" in schedule:
        parts = " + ".join(schedule.get("knowledge_parts", [])) or "none"
        return (f"Progressive schedule ({schedule.get('pattern', 'linear')}, T = {schedule['T']} steps, "
                f"K = {schedule.get('K')} examples picked {schedule.get('examples_pick', 'top')}, knowledge: {parts}).")
    params = ", ".join(f"{k} = {schedule[k]}" for k in ("K", "N") if k in schedule)
    return f"Progressive schedule ({params})." if params else "Progressive schedule."


# ---------------------------------------------------------------- plots


def _save(fig: Figure, path: Path) -> Path:
    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def _label_offsets(points: list[tuple[float, float, float]], points_per_y: float) -> list[int]:
    """Vertical offsets (points) of labels written right of each (x, y, label width in x data units): above
    the point, unless that runs into the label of a higher point; then one line further down each time.
    Higher points are placed first, so close labels keep their points' top-to-bottom order and none sits
    next to the wrong point."""
    line = 11  # a fontsize-8 label's height, in points
    offsets = [4] * len(points)
    placed: list[int] = []
    for i in sorted(range(len(points)), key=lambda i: -points[i][1]):
        x, y, width = points[i]
        clashes = lambda dy: any(abs((y - points[j][1]) * points_per_y + dy - offsets[j]) < line
                                 and x < points[j][0] + points[j][2] and points[j][0] < x + width for j in placed)
        offsets[i] = next(dy for dy in itertools.count(4, -line - 4) if not clashes(dy))
        placed.append(i)
    return offsets


def _plot_accuracy_vs_flops(rows: list[dict], path: Path) -> Path:
    """One panel per domain, so labels of methods that tie across domains do not pile up; error bars show
    the spread over seeds where there is one."""
    panels = [(key, name) for key, name in (("id", "in-domain"), ("ood", "out-of-domain"))
              if any(r["flops_per_query"] and r[f"{key}_avg"] is not None for r in rows)]
    points = {key: sorted((r["flops_per_query"] / 1e9, 100 * r[f"{key}_avg"], 100 * (r[f"{key}_std"] or 0.0), r["method"])
                          for r in rows if r["flops_per_query"] and r[f"{key}_avg"] is not None) for key, _ in panels}
    height = 4.4
    tops = [y + err for panel in points.values() for _, y, err, _ in panel]
    bottoms = [y - err for panel in points.values() for _, y, err, _ in panel]
    # the panels share y; about 1.3 in of the figure height goes to titles and axis labels, 1.2 = y margins
    points_per_y = (height - 1.3) * 72 / (((max(tops) - min(bottoms)) or 1.0) * 1.2)
    fig = Figure(figsize=(5.2 * len(panels), height), layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, (key, name) in zip(axes, panels):
        panel = points[key]
        ax.errorbar([p[0] for p in panel], [p[1] for p in panel], yerr=[p[2] for p in panel], fmt="o", capsize=3)
        span = (max(p[0] for p in panel) - min(p[0] for p in panel) or 1.0) * 1.3  # with the x margins
        offsets = _label_offsets([(x, y, span * len(label) * 6 / 340) for x, y, _, label in panel], points_per_y)
        for (x, y, _, label), dy in zip(panel, offsets):
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, dy), fontsize=8)
        ax.margins(x=0.15, y=0.1)
        ax.set_xlabel("GFLOPs per query (prefill + generation)")
        ax.set_title(f"{name} average")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("Accuracy (%)")
    fig.suptitle("Accuracy vs inference cost")
    return _save(fig, path)


def _plot_per_task(tasks: list[str], runs: list[tuple[str, dict]], dataset: str, path: Path) -> Path:
    fig = Figure(figsize=(max(6.4, 0.5 * len(tasks) * len(runs) + 2), 4.8), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / len(runs)
    for j, (label, per_task) in enumerate(runs):
        xs = [i + (j - (len(runs) - 1) / 2) * width for i in range(len(tasks))]
        heights = [100 * per_task[t] if t in per_task else float("nan") for t in tasks]
        ax.bar(xs, heights, width=width, label=label)
    ax.set_xticks(range(len(tasks)), tasks, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("Accuracy (%)")
    ax.set_title(f"Per-task accuracy on {dataset}")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _plot_schedule(schedule: dict, path: Path) -> Path:
    stages = schedule["stages"]
    xs = [s.get("stage", i) for i, s in enumerate(stages)]
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(xs, [s["num_examples"] for s in stages], color="tab:orange", alpha=0.6, label="examples")
    ax.set_xticks(xs)
    ax.set_xlabel("Stage")
    ax.set_ylabel("Number of examples")
    rate_ax = ax.twinx()
    rate_ax.plot(xs, [s["knowledge_keep_rate"] for s in stages], "o-", label="knowledge keep-rate")
    rate_ax.set_ylabel("Knowledge keep-rate")
    rate_ax.set_ylim(0, 1.05)
    handles = ax.get_legend_handles_labels()[0] + rate_ax.get_legend_handles_labels()[0]
    rate_ax.legend(handles=handles, loc="upper right")
    ax.set_title("Progressive knowledge schedule")
    return _save(fig, path)


# ---------------------------------------------------------------- internalization check


def _internalization_blocks(section: Internalization) -> list[_Block]:
    """The per-stage dev accuracies with the stage's prompt and with the bare question, and the verdict."""
    rows = [[str(s.stage), f"{s.knowledge_keep_rate:.2f}", f"{s.num_examples:g}", _pct(s.stage_prompt_accuracy),
             _pct(s.bare_accuracy), f"{100 * s.gap:+.1f}", f"[{100 * s.gap_ci_low:+.1f}, {100 * s.gap_ci_high:+.1f}]"]
            for s in section.stages]
    reference = (f" {section.reference_method} (bare question, same items): {_pct(section.reference_accuracy)} %."
                 if section.reference_accuracy is not None else "")
    reference += f" The check took {section.seconds:,.0f} s." if section.seconds is not None else ""
    for name, same in (section.retrained or {}).items():
        reference += (f" {name}'s weights were retrained for the check (same settings and seed) and "
                      + ("reproduced its evaluated weights byte for byte." if same else
                         "differ from its evaluated weights: the check describes a retrain, not the evaluated student."))
    return [f"Accuracy (%) on {len(section.dev_ids)} dev items held out of every method's training, of each "
            "stage's student with the stage's own prompt and with the bare question (the inference prompt); gap = "
            "stage prompt - bare, with its paired bootstrap 95 % CI." + reference,
            _Table(["Stage", "Keep-rate", "Examples", "Stage prompt", "Bare question", "Gap pp", "95 % CI"], rows),
            internalization_verdict(section)]


GAP_CLOSED_MARGIN = 0.10
"""A stage's gap counts as closed only when its 95 % CI ends at most 10 points above 0. A CI that holds 0 but reaches
further (25 dev items give about +-20 points) cannot tell a closed gap from an open one: that verdict is
inconclusive, not "closed"."""


def internalization_verdict(section: Internalization) -> str:
    """One sentence on the last stage whose prompt is not the bare question (the final stage's gap is 0 by
    construction): shown when its gap closed (CI within GAP_CLOSED_MARGIN) and the bare-question accuracy rose from
    the first stage to the last; not shown when the gap stayed open (CI above 0) or the accuracy did not rise;
    inconclusive when the CI holds 0 but is too wide to call the gap closed."""
    stages = section.stages
    last = next((s for s in reversed(stages) if not s.bare_stage), stages[-1])
    rose = stages[-1].bare_accuracy > stages[0].bare_accuracy
    gap = f"({100 * last.gap:+.1f} pp, 95 % CI [{100 * last.gap_ci_low:+.1f}, {100 * last.gap_ci_high:+.1f}])"
    if last.gap_ci_low > 0:
        verdict, state = "not shown", f"had not closed {gap}"
    elif last.gap_ci_high <= GAP_CLOSED_MARGIN:
        verdict, state = ("shown" if rose else "not shown"), f"had closed {gap}"
    else:
        verdict = "inconclusive" if rose else "not shown"
        state = (f"{gap} cannot be told from 0 nor from a gap of {100 * GAP_CLOSED_MARGIN:.0f} pp or more: too few "
                 f"dev items (internalization.dev_size: {len(section.dev_ids)})")
    return (f"Internalization {verdict}: by stage {last.stage}, the last with knowledge or examples in its prompt, the "
            f"gap {state}, and the bare-question accuracy {'rose' if rose else 'did not rise'} from "
            f"{_pct(stages[0].bare_accuracy)} % (stage {stages[0].stage}) to {_pct(stages[-1].bare_accuracy)} % "
            f"(stage {stages[-1].stage}).")


def _plot_internalization(section: Internalization, path: Path) -> Path:
    xs = [s.stage for s in section.stages]
    prompt = [100 * s.stage_prompt_accuracy for s in section.stages]
    bare = [100 * s.bare_accuracy for s in section.stages]
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(xs, prompt, "o-", label="stage prompt (knowledge + examples)")
    ax.plot(xs, bare, "s-", label="bare question (inference prompt)")
    ax.fill_between(xs, bare, prompt, color="tab:gray", alpha=0.25, label="gap")
    if section.reference_accuracy is not None:
        ax.axhline(100 * section.reference_accuracy, color="tab:green", linestyle="--",
                   label=f"{section.reference_method} (bare question)")
    ax.set_xticks(xs)
    ax.set_xlabel("Stage")
    ax.set_ylabel("Dev accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.set_title(f"Internalization on {len(section.dev_ids)} held-out dev items")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)
@dataclass
class LossCurve:
    """One trained method's logged training losses, for the loss-curve plot."""

    label: str
    steps: list[float]
    """The optimizer step of each loss, counted over all stages."""
    losses: list[float]
    boundaries: list[int]
    """Optimizer steps at which one stage ends and the next begins (SKIntern); empty for one-call methods."""


def loss_curves(results: Results) -> list[LossCurve]:
    """Each trained method's losses (of the first seed in a combined compare, as its entry keeps them). A loss is
    logged every `train.logging_steps` optimizer steps of each training call (SKIntern: of each stage); without
    the config, a call's losses are spread evenly over its steps."""
    every = ((results.config or {}).get("train") or {}).get("logging_steps")
    curves = []
    for run in results.runs:
        calls = (run.train or {}).get("stages") or ([run.train] if run.train else [])
        steps, losses, boundaries, offset = [], [], [], 0
        for call in calls:
            n = len(call["losses"])
            steps += [offset + (i + 1) * (every or call["steps"] / n) for i in range(n)]
            losses += call["losses"]
            offset += call["steps"]
            boundaries.append(offset)
        if losses:
            seed = f" (seed {run.seeds[0]})" if run.seeds and len(run.seeds) > 1 else ""
            curves.append(LossCurve(run_label(run, results) + seed, steps, losses, boundaries[:-1]))
    return curves


def loss_curve_figure(curves: list[LossCurve]) -> Figure:
    """One panel per method (shared loss axis); dashed lines where a SKIntern stage ends."""
    fig = Figure(figsize=(3.6 * len(curves) + 0.8, 3.6), layout="constrained")
    axes = fig.subplots(1, len(curves), sharey=True, squeeze=False)[0]
    for ax, curve in zip(axes, curves):
        ax.plot(curve.steps, curve.losses, ".-", linewidth=1, markersize=3)
        for i, step in enumerate(curve.boundaries):
            ax.axvline(step, color="tab:gray", linestyle="--", linewidth=0.8, label="stage end" if i == 0 else None)
        if curve.boundaries:
            ax.legend(fontsize=8)
        ax.set_title(curve.label, fontsize=9)
        ax.set_xlabel("Optimizer step")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("Training loss")
    fig.suptitle("Training loss")
    return fig


# ---------------------------------------------------------------- rendering


def _sections(results: Results, images: dict[str, Path]) -> list[tuple[str, list[_Block]]]:
    """The report's content, independent of the output format."""
    present = dataset_columns(results)
    groups = {name: [d for d in group if d in present] for name, group in domain_groups(results.domains).items()}
    sections: list[tuple[str, list[_Block]]] = [
        ("Accuracy", ["Accuracy in percent. ID = in-domain (" + (", ".join(groups["ID"]) or "none") + "), OOD = "
                      "out-of-domain (" + (", ".join(groups["OOD"]) or "none") + "), averaged over the datasets present."
                      + (" a ± b: mean ± sample std over seeds." if _has_spread(results) else "")
                      + (" A figure without ± is one seed's." if _mixed_seeds(results) else ""),
                      _accuracy_table(results)]),
        ("Inference cost", [_cost_table(results), *_cost_against_costly_lines(results)]),
    ]
    budgets = [run for run in results.runs if run.budget]
    if budgets:
        sections.append(("Training budget", [
            "What each trained method saw: training items, prompt -> target pairs (two per item for the multi-task "
            "methods, one per stage for SKIntern) and passes over them (SKIntern: summed over its stages).",
            _Table(["Method", "Items", "Pairs", "Epochs", "Optimizer steps"],
                   [[run_label(run, results), f"{run.budget['items']:g}", f"{run.budget['pairs']:g}", f"{run.budget['epochs']:g}",
                     str((run.train or {}).get("steps", _MISSING))] for run in budgets])]))
    if results.comparisons:
        sections.append(("Paired differences", _comparison_blocks(results)))
    for key, table in ((COST_REFERENCE, TABLE_1), (ABLATION_COMPARISON, ABLATIONS)):
        found = directions((results.comparisons or {}).get(key, {}), table)
        if found:
            sections.append((f"Direction against the paper ({table.source})", _paper_blocks(found, table)))
    caps = _caps_table(results)
    if caps:
        sections.append(("Generation caps", [
            "Share of test items (%) whose generation stopped at the token cap (cut short) / that have no "
            "extractable answer. A high first share means the cap, not the model, decided the result.", caps]))
    deltas = _delta_lines(results)
    if deltas:
        sections.append(("Change vs the untrained student", [
            f"Accuracy change against method {UNTRAINED_BASELINE!r} on the same items (same dataset and n), "
            "in percentage points.", "\n".join(deltas)]))
    dataset = _first_in_domain(results)
    tasks, runs = _per_task(results, dataset) if dataset else ([], [])
    if tasks:
        sections.append((f"Per-task accuracy ({dataset})", [_per_task_table(tasks, runs)]))
    if results.schedule:
        sections.append(("Schedule", [_schedule_summary(results.schedule), _schedule_table(results.schedule)]))
    if results.internalization:
        sections.append(("Internalization check", _internalization_blocks(results.internalization)))
    if images:
        sections.append(("Plots", [_Image(p.name, p.stem.replace("_", " ")) for p in images.values()]))
    if results.provenance:
        sections.append(("Provenance", ["\n".join(f"- {k}: {_flat(v)}" for k, v in results.provenance.items())]))
    return sections


def _flat(value: Any) -> str:
    return ", ".join(f"{k} {v}" for k, v in value.items()) if isinstance(value, dict) else str(value)


def _caps_table(results: Results) -> _Table | None:
    datasets = dataset_columns(results)
    rows = [[run_label(run, results)] + [
        f"{100 * run.eval[d].hit_cap:.1f} / {100 * run.eval[d].no_answer:.1f}"
        if d in run.eval and run.eval[d].hit_cap is not None and run.eval[d].no_answer is not None else _MISSING
        for d in datasets] for run in results.runs]
    if all(cell == _MISSING for row in rows for cell in row[1:]):
        return None
    return _Table(["Method"] + [f"{d} cap / no answer" for d in datasets], rows)


def _comparison_blocks(results: Results) -> list[_Block]:
    """One table per reference: the method's accuracy minus the reference's on the same items, in percentage
    points, with the paired bootstrap 95 % CI (items resampled with all their seeds) and the exact McNemar p."""
    blocks: list[_Block] = []
    for key, comparison in results.comparisons.items():
        reference = comparison["reference"]
        rows = []
        for method, parts in comparison["methods"].items():
            for scope, found in [*parts["groups"].items(), *parts["datasets"].items()]:
                rows.append([method, scope, f"{100 * found['method_minus_reference']:+.1f}",
                             f"[{100 * found['ci_low']:+.1f}, {100 * found['ci_high']:+.1f}]",
                             f"{found['mcnemar_p']:.3f}", str(found["n_items"])])
        what = {"best_baseline": "the best other trained method", ABLATION_COMPARISON: "the config as written",
                AGAINST_COMPARISON: "chosen with --against"}.get(key, "plain CoT distillation")
        blocks += [f"Against {reference} ({what}): accuracy difference in points, 95 % CI, McNemar p."
                   + (" Each pair is taken on the seeds both runs have." if _mixed_seeds(results) else ""),
                   _Table(["Method", "Data", "Δ pp", "95 % CI", "McNemar p", "Items"], rows)]
    blocks.append(_resolution_line(results))
    return blocks


def _paper_blocks(found: list[Direction], table: PaperTable) -> list[_Block]:
    rows = [[d.label, d.scope, f"{d.ours_pp:+.1f} [{d.ci_pp[0]:+.1f}, {d.ci_pp[1]:+.1f}]", d.paper_row,
             f"{d.paper_pp:+.1f}", ", ".join(d.paper_datasets), d.verdict] for d in found]
    return [f"Each of our paired differences (points, 95 % CI) beside the paper's difference to its row "
            f"{table.reference!r} ({table.source}, mean of 3 runs) on the same test sets: ours pools a group's items, "
            "the paper's figure averages its datasets. A sign is compared only where our CI excludes 0.",
            _Table(["Ours", "Data", "Ours Δ pp [95 % CI]", "Paper row", "Paper Δ pp", "Paper datasets", "Direction"],
                   rows)]


def _resolution_line(results: Results) -> str:
    """How small a difference the test set can tell apart, from its item counts alone."""
    parts = []
    for name, group in domain_groups(results.domains).items():
        n = max((sum(run.eval[d].n for d in group if d in run.eval) for run in results.runs), default=0)
        if n:
            parts.append(f"{name} ±{100 * resolvable_difference(n):.1f} pp on {n} items")
    return ("Smallest difference these test sets resolve (paired test, 95 % confidence, 80 % power, methods at "
            "50 % accuracy with independent errors): " + "; ".join(parts) + ".")


def _md_table(table: _Table) -> str:
    lines = ["| " + " | ".join(table.headers) + " |", "|" + "---|" * len(table.headers)]
    lines += ["| " + " | ".join(row) + " |" for row in table.rows]
    return "\n".join(lines)


def _md_block(block: _Block) -> str:
    if isinstance(block, _Table):
        return _md_table(block)
    if isinstance(block, _Image):
        return f"![{block.alt}]({block.file})"
    return block


def _to_markdown(title: str, sections: Iterable[tuple[str, list[_Block]]]) -> str:
    parts = [f"# {title}"]
    for heading, blocks in sections:
        parts.append(f"## {heading}")
        parts += [_md_block(b) for b in blocks]
    return "\n\n".join(parts) + "\n"


def _html_table(table: _Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>\n" for row in table.rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>"


def _html_block(block: _Block) -> str:
    if isinstance(block, _Table):
        return _html_table(block)
    if isinstance(block, _Image):
        return f'<img src="{html.escape(block.file)}" alt="{html.escape(block.alt)}">'
    lines = block.split("\n")
    if all(line.startswith("- ") for line in lines):
        return "<ul>" + "".join(f"<li>{html.escape(line[2:])}</li>" for line in lines) + "</ul>"
    return f"<p>{html.escape(block)}</p>"


_CSS = ("body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}"
        "th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}img{max-width:100%;display:block;margin:1em 0}")


def _to_html(title: str, sections: Iterable[tuple[str, list[_Block]]]) -> str:
    parts = [f"<h1>{html.escape(title)}</h1>"]
    for heading, blocks in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        parts += [_html_block(b) for b in blocks]
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f"<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def _default_title(results: Results) -> str:
    name = results.name or "results"
    return f"SKIntern report: {name}" + (f" (student: {results.student})" if results.student else "")


PLOT_NAMES = ("accuracy_vs_flops.png", "per_task.png", "schedule.png", "internalization.png", "loss_curves.png")


def _plots(results: Results, out_dir: Path) -> dict[str, Path]:
    """Draw the plots whose data is present; keys are the PNG file names (of PLOT_NAMES)."""
    written: dict[str, Path] = {}
    rows = summary_table(results)
    if any(r["flops_per_query"] for r in rows):
        written["accuracy_vs_flops.png"] = _plot_accuracy_vs_flops(rows, out_dir / "accuracy_vs_flops.png")
    dataset = _first_in_domain(results)
    tasks, runs = _per_task(results, dataset) if dataset else ([], [])
    if tasks:
        written["per_task.png"] = _plot_per_task(tasks, runs, dataset, out_dir / "per_task.png")
    if results.schedule and results.schedule.get("stages"):
        written["schedule.png"] = _plot_schedule(results.schedule, out_dir / "schedule.png")
    if results.internalization:
        written["internalization.png"] = _plot_internalization(results.internalization, out_dir / "internalization.png")
    curves = loss_curves(results)
    if curves:
        written["loss_curves.png"] = _save(loss_curve_figure(curves), out_dir / "loss_curves.png")
    return written


def render_report(results: Results | dict, out_dir: str | os.PathLike, title: str | None = None) -> dict[str, Path]:
    """Write report.md, report.html and the plots into out_dir; returns {"md", "html", "<png name>": path}.

    A plain dict is checked as a results.json would be, before anything is written."""
    if not isinstance(results, Results):
        results = Results.from_dict(results)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    title = title or _default_title(results)
    images = _plots(results, out_dir)
    sections = _sections(results, images)
    written = {
        "md": atomic_write_text(out_dir / "report.md", _to_markdown(title, sections)),
        "html": atomic_write_text(out_dir / "report.html", _to_html(title, sections)),
    }
    for stale in set(PLOT_NAMES) - set(images):  # an earlier report's plot this one does not show
        (out_dir / stale).unlink(missing_ok=True)
    return written | images
