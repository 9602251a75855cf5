"""`skintern compare`: every method of `compare.methods` on the same data, once per seed of `compare.seeds`
(runs/<name>/seed-<s>/ when there are several), then one results.json with the mean and spread over seeds.
Methods of `compare.first_seed_only` run on the first seed alone.

A method that does not train is a greedy evaluation of the same student, so the seed cannot change it:
later seeds reuse the first seed's entry instead of evaluating again."""

from __future__ import annotations

import copy
from pathlib import Path

from skintern.config import RunConfig
from skintern.methods import METHODS
from skintern.report import render_report
from skintern.results import DatasetScore, QueryFlops, Results, load_results, write_results
from skintern.run import (check_finished_entries, copy_entry, entry_path, methods_to_run, paired_comparisons, provenance, run,
                          seed_folder)
from skintern.stats import seed_std


def seed_run_dir(cfg: RunConfig, seed: int) -> Path:
    """The run folder `compare` uses for `seed`: the config's own with one seed, else its seed-<s>/ subfolder."""
    return seed_folder(cfg.run_dir, seed, cfg.compare.seeds)


def compare_seeds(cfg: RunConfig) -> Path:
    """Every method once per seed, then one combined results.json; returns its path."""
    if len(cfg.compare.seeds) == 1:
        single = copy.deepcopy(cfg)
        single.seed = cfg.compare.seeds[0]
        return run(single, compare=True)
    seed_cfgs = []
    for seed in cfg.compare.seeds:
        one = copy.deepcopy(cfg)
        folder = seed_run_dir(cfg, seed)
        one.seed, one.output_dir, one.name = seed, str(folder.parent), folder.name
        if seed_cfgs:
            one.compare.methods = [m for m in cfg.compare.methods if m not in cfg.compare.first_seed_only]
        seed_cfgs.append(one)
    for one in seed_cfgs:  # every seed's folder before the first seed's hours of work
        check_finished_entries(one)
    per_seed = []
    for one in seed_cfgs:
        if one is not seed_cfgs[0]:
            reuse_untrained_entries(seed_cfgs[0], one)
        per_seed.append(load_results(run(one, compare=True)))
    combined = combine_seeds(per_seed)
    combined.name, combined.config, combined.provenance = cfg.name, cfg.to_dict(), provenance(cfg)
    combined.comparisons = paired_comparisons([(one.run_dir, one.seed) for one in seed_cfgs], combined.runs,
                                              combined.domains)
    path = write_results(cfg.run_dir / "results.json", combined)
    render_report(combined, cfg.run_dir, title=f"skintern compare: {cfg.name} ({len(per_seed)} seeds)")
    return path


def reuse_untrained_entries(first: RunConfig, cfg: RunConfig) -> None:
    """Copy the first seed's finished entries of methods that do not train, and their predictions (the paired
    statistics pair items by seed), into `cfg`'s run."""
    for name in methods_to_run(cfg, compare=True):
        if METHODS[name].trains or not entry_path(first.run_dir, name).is_file() or entry_path(cfg.run_dir, name).is_file():
            continue
        copy_entry(first.run_dir, cfg.run_dir, name, cfg, reused_from_seed=first.seed)  # the first seed's run checked it


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def combine_seeds(per_seed: list[Results]) -> Results:
    """Mean over seeds of every number, with the spread (sample std) of each accuracy; a method that ran on some
    seeds only (`compare.first_seed_only`) is averaged over those, listed in its entry's `seeds`."""
    seeds = [r.seed for r in per_seed]
    runs = []
    for first in per_seed[0].runs:
        ran = [(r.seed, e) for r in per_seed for e in r.runs if e.method == first.method]
        entries = [e for _, e in ran]
        merged = copy.deepcopy(first)
        merged.seeds = [seed for seed, _ in ran]
        merged.eval, merged.accuracy_std = {}, {}
        for ds, score in first.eval.items():
            accs = [e.eval[ds].accuracy for e in entries]
            shares = {key: [getattr(e.eval[ds], key) for e in entries] for key in ("hit_cap", "no_answer")}
            merged.eval[ds] = DatasetScore(
                accuracy=_mean(accs), n=score.n,
                per_task={t: _mean([e.eval[ds].per_task[t] for e in entries]) for t in score.per_task},
                per_seed=accs,
                **{key: _mean(v) for key, v in shares.items() if None not in v},
            )
            if (spread := seed_std(accs)) is not None:
                merged.accuracy_std[ds] = spread
        merged.accuracy_std = merged.accuracy_std or None
        for key in ("prompt_tokens_per_query", "generated_tokens_per_query", "wall_time_per_query_s", "train_time_s"):
            if getattr(first, key) is not None:
                setattr(merged, key, _mean([getattr(e, key) for e in entries]))
        if first.flops_per_query is not None:
            merged.flops_per_query = QueryFlops(prefill=_mean([e.flops_per_query.prefill for e in entries]),
                                                generation=_mean([e.flops_per_query.generation for e in entries]))
        runs.append(merged)
    head = per_seed[0]
    return Results(runs=runs, name=head.name, student=head.student, teacher=head.teacher, seed=head.seed, seeds=seeds,
                   config=head.config, schedule=head.schedule, domains=head.domains)

