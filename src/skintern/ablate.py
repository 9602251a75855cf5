"""`skintern ablate`: the paper's ablation grid (Tables 2 and 3) as variants of one base config.

Every variant is the base config with a few keys overridden (`ablate.variants`), run as its own one-method
compare in runs/<name>/ablate/<variant>/, so a stopped ablation resumes where it stopped: finished variants are
reused by `run`'s own resume (their entries are keyed on the settings that produced them). The base config is
the variant `base`; one results.json and report put the variants side by side, each with its paired difference
to `base` on the same test items."""

from __future__ import annotations

import copy
from pathlib import Path

from skintern.config import RunConfig, apply_dotted, config_from_dict
from skintern.errors import SkinternError
from skintern.files import atomic_write_bytes, read_jsonl
from skintern.methods import METHODS
from skintern.report import ABLATION_COMPARISON, domain_groups, render_report
from skintern.results import Results, load_entry, load_results, write_results
from skintern.run import (checked_data, config_digest, copy_entry, entry_path, internalization_path, predictions_path,
                          provenance, run, saved_internalization)
from skintern.stats import compare_methods
from skintern.sweep import seed_run_dir

BASE = "base"
"""The unmodified config: the reference of every variant's paired difference."""


def ablation_dir(cfg: RunConfig) -> Path:
    return cfg.run_dir / "ablate"


def variant_configs(cfg: RunConfig, only: list[str] | None = None) -> dict[str, RunConfig]:
    """`base` and every variant of `ablate.variants` (or those named in `only`, in the order named: the run order, so
    a user puts first the variants that matter most to them) as checked configs, before any run: a bad override fails
    here, naming the variant and the key."""
    grid = {BASE: {}, **cfg.ablate.variants}
    if only:
        unknown = [name for name in only if name not in grid]
        if unknown:
            raise SkinternError(f"ablate: unknown variant(s) {', '.join(unknown)} (known: {', '.join(grid)})")
        grid = {BASE: {}, **{name: grid[name] for name in only if name != BASE}}
    base = cfg.to_dict()
    out = {}
    for name, overrides in grid.items():
        raw = copy.deepcopy(base)
        for key, value in overrides.items():
            apply_dotted(raw, key, copy.deepcopy(value), f"ablate.variants.{name}")
        raw.update(name=name, output_dir=str(ablation_dir(cfg)), method=cfg.ablate.method)
        raw["compare"] = {"methods": [cfg.ablate.method], "seeds": [cfg.seed]}
        out[name] = config_from_dict(raw, f"ablate variant {name!r}")
    return out


def dry_run_ablation(cfg: RunConfig, only: list[str] | None = None) -> str:
    """Each variant's overrides and its method's plan, from the configs and the data alone."""
    variants = variant_configs(cfg, only)
    method = METHODS[cfg.ablate.method]
    lines = [f"ablation folder: {ablation_dir(cfg)}; method {cfg.ablate.method}, seed {cfg.seed}; "
             f"{len(variants)} variants, each against {BASE!r}"]
    for name, variant in variants.items():
        checked_data(variant, compare=True)
        overrides = cfg.ablate.variants.get(name, {})
        lines.append(f"\n== {name}: " + (", ".join(f"{k}={v}" for k, v in overrides.items()) or "the config as written"))
        lines.append(method.describe(variant.settings(cfg.ablate.method)))
    return "\n".join(lines)


def ablate(cfg: RunConfig, only: list[str] | None = None) -> Path:
    """Run every variant (finished ones are reused), then write the side-by-side results and report. With `only`,
    the results also hold the grid's other variants that an earlier command finished under their current settings,
    so an ablation run one variant per command still reports every finished variant."""
    variants = variant_configs(cfg, only)
    for variant in variants.values():
        checked_data(variant, compare=True)  # every variant's data and plan before the first model loads
    reuse_compare_entry(cfg, variants[BASE])
    per_variant = {name: load_results(run(variant, compare=True)) for name, variant in variants.items()}
    grid = variant_configs(cfg)
    for name, variant in grid.items():
        if name not in per_variant and (finished := finished_results(cfg, variant)) is not None:
            print(f"ablate: the results also hold {name}, finished earlier under the same settings", flush=True)
            variants[name], per_variant[name] = variant, finished
    order = [name for name in grid if name in per_variant]
    results = combine_variants(cfg, {n: variants[n] for n in order}, {n: per_variant[n] for n in order})
    path = write_results(ablation_dir(cfg) / "results.json", results)
    render_report(results, ablation_dir(cfg), title=f"skintern ablate: {cfg.name} ({len(order)} variants)")
    return path


def finished_results(cfg: RunConfig, variant: RunConfig) -> Results | None:
    """The results a finished `variant` wrote, if its entry (and, under `internalization.enabled`, its check) was
    made under the variant's current settings; None when it has not run, is unfinished or ran under other settings."""
    path = variant.run_dir / "results.json"
    if not path.is_file() or (cfg.internalization.enabled and saved_internalization(variant.run_dir, variant) is None):
        return None
    results = load_results(path)
    digest = config_digest(variant)
    entries = [e for e in results.runs if e.method == cfg.ablate.method]
    return results if entries and all(e.config_digest == digest for e in entries) else None


def reuse_compare_entry(cfg: RunConfig, base: RunConfig) -> None:
    """Give `base` the finished entry of the ablated method that `skintern compare` of this config made for the same
    seed, when it was made under the same settings (the config digest), so the ablation trains only its variants.
    Under `internalization.enabled` the compare's saved check must exist too: the base variant has no weights to
    check."""
    method = cfg.ablate.method
    compare_dir = seed_run_dir(cfg, cfg.seed)
    source = entry_path(compare_dir, method)
    if (entry_path(base.run_dir, method).is_file() or not source.is_file()
            or load_entry(source).config_digest != config_digest(base)):
        return
    if cfg.internalization.enabled:
        if saved_internalization(compare_dir, base) is None:
            return
        atomic_write_bytes(internalization_path(base.run_dir), internalization_path(compare_dir).read_bytes())
    copy_entry(compare_dir, base.run_dir, method, base)
    print(f"ablate: {BASE} reuses {source} (the compare's run under the same settings)", flush=True)


def combine_variants(cfg: RunConfig, variants: dict[str, RunConfig], per_variant: dict[str, Results]) -> Results:
    """One entry per variant, labelled with its name, and each variant's paired difference to `base`."""
    method = cfg.ablate.method
    runs, rows = [], {}
    for name, results in per_variant.items():
        entry = next(e for e in results.runs if e.method == method)
        entry.label = name
        runs.append(entry)
        rows[name] = [dict(row, seed=cfg.seed) for ds in entry.eval
                      for row in read_jsonl(predictions_path(variants[name].run_dir, method, ds))]
    domains = {d: tag for results in per_variant.values() for d, tag in (results.domains or {}).items()} or None
    comparisons = {ABLATION_COMPARISON: compare_methods(rows, BASE, groups=domain_groups(domains))} \
        if len(rows) > 1 else None
    return Results(runs=runs, name=f"{cfg.name} ablations", student=cfg.student.model, seed=cfg.seed,
                   config=cfg.to_dict(), comparisons=comparisons, provenance=provenance(cfg), domains=domains)
