"""`skintern ablate`: the paper's ablation grid (Tables 2 and 3) as variants of one base config.

Every variant is the base config with a few keys overridden (`ablate.variants`), run as its own one-method
compare in runs/<name>/ablate/<variant>/, so a stopped ablation resumes where it stopped: finished variants are
reused by `run`'s own resume (their entries are keyed on the settings that produced them). The base config is
the variant `base`; one results.json and report put the variants side by side, each with its paired difference
to `base` on the same test items."""

from __future__ import annotations

import copy
import os
from pathlib import Path

from skintern.config import RunConfig, apply_dotted, config_from_dict
from skintern.errors import SkinternError
from skintern.files import atomic_write_bytes
from skintern.methods import METHODS
from skintern.report import ABLATION_COMPARISON, domain_groups, render_report
from skintern.results import Results, load_entry, load_results, write_results
from skintern.run import (checked_data, config_digest, copy_entry, entry_path, internalization_path, provenance, run,
                          saved_internalization, seeded_predictions)
from skintern.stats import compare_methods
from skintern.sweep import combine_seeds, seed_run_dir

BASE = "base"
"""The unmodified config: the reference of every variant's paired difference."""


POOLED = "all-seeds"
"""The folder under ablate/ of the results pooled over `ablate.seeds`."""


def ablation_dir(cfg: RunConfig, seed: int | None = None) -> Path:
    """Where the variants of `seed` run: ablate/ for the config's own seed, ablate/seed-<s>/ for every other."""
    folder = cfg.run_dir / "ablate"
    return folder if seed is None or seed == cfg.seed else folder / f"seed-{seed}"


def ablation_seeds(cfg: RunConfig) -> list[int]:
    return cfg.ablate.seeds or [cfg.seed]


def variant_configs(cfg: RunConfig, only: list[str] | None = None, seed: int | None = None) -> dict[str, RunConfig]:
    """`base` and every variant of `ablate.variants` (or those named in `only`, in the order named: the run order, so
    a user puts first the variants that matter most to them) as checked configs for `seed` (default: the config's),
    before any run: a bad override fails here, naming the variant and the key."""
    grid = {BASE: {}, **cfg.ablate.variants}
    if only:
        unknown = [name for name in only if name not in grid]
        if unknown:
            raise SkinternError(f"ablate: unknown variant(s) {', '.join(unknown)} (known: {', '.join(grid)})")
        grid = {BASE: {}, **{name: grid[name] for name in only if name != BASE}}
    seed = cfg.seed if seed is None else seed
    base = cfg.to_dict()
    out = {}
    for name, overrides in grid.items():
        raw = copy.deepcopy(base)
        for key, value in overrides.items():
            apply_dotted(raw, key, copy.deepcopy(value), f"ablate.variants.{name}")
        raw.update(name=name, output_dir=str(ablation_dir(cfg, seed)), method=cfg.ablate.method, seed=seed)
        raw["compare"] = {"methods": [cfg.ablate.method], "seeds": [seed]}
        out[name] = config_from_dict(raw, f"ablate variant {name!r}")
    return out


def dry_run_ablation(cfg: RunConfig, only: list[str] | None = None) -> str:
    """Each variant's overrides and its method's plan, from the configs and the data alone."""
    variants = variant_configs(cfg, only)
    method = METHODS[cfg.ablate.method]
    seeds = ablation_seeds(cfg)
    lines = [f"ablation folder: {ablation_dir(cfg)}; method {cfg.ablate.method}, "
             f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}; {len(variants)} variants, each against {BASE!r}"]
    for name, variant in variants.items():
        checked_data(variant, compare=True)
        overrides = cfg.ablate.variants.get(name, {})
        lines.append(f"\n== {name}: " + (", ".join(f"{k}={v}" for k, v in overrides.items()) or "the config as written"))
        lines.append(method.describe(variant.settings(cfg.ablate.method)))
    return "\n".join(lines)


def ablate(cfg: RunConfig, only: list[str] | None = None) -> Path:
    """Run every variant for every seed of `ablation_seeds` (finished ones are reused), then write each seed's
    side-by-side results and report in its folder and, with several seeds, the pooled ones in ablate/all-seeds/ (the
    path returned). With `only`, the results also hold the grid's other variants that an earlier command finished
    under their current settings, so an ablation run one variant per command still reports every finished variant."""
    seeds = ablation_seeds(cfg)
    grids = {seed: variant_configs(cfg, only, seed) for seed in seeds}
    for variants in grids.values():
        for variant in variants.values():
            checked_data(variant, compare=True)  # every variant's data and plan before the first model loads
    per_seed = {seed: run_seed(cfg, seed, variants) for seed, variants in grids.items()}
    paths = [write_ablation(cfg, *per_seed[seed], folder=ablation_dir(cfg, seed)) for seed in seeds]
    if len(seeds) == 1:
        return paths[0]
    return write_ablation(cfg, *pool_seeds(cfg, per_seed), folder=ablation_dir(cfg) / POOLED)


def run_seed(cfg: RunConfig, seed: int, variants: dict[str, RunConfig]) -> tuple[dict[str, list[RunConfig]], dict[str, Results]]:
    """Run `variants` of one seed, then add the grid's variants finished earlier for that seed; each variant's config
    (a list of one: the seeds it ran) and results, in the grid's order."""
    reuse_compare_entry(cfg, variants[BASE], seed)
    per_variant = {name: load_results(run(variant, compare=True)) for name, variant in variants.items()}
    grid = variant_configs(cfg, seed=seed)
    for name, variant in grid.items():
        if name not in per_variant and (finished := finished_results(cfg, variant)) is not None:
            print(f"ablate: the results of seed {seed} also hold {name}, finished earlier under the same settings", flush=True)
            variants[name], per_variant[name] = variant, finished
    order = [name for name in grid if name in per_variant]
    return {n: [variants[n]] for n in order}, {n: per_variant[n] for n in order}


def pool_seeds(cfg: RunConfig, per_seed: dict[int, tuple[dict[str, list[RunConfig]], dict[str, Results]]]
               ) -> tuple[dict[str, list[RunConfig]], dict[str, Results]]:
    """Each variant's results merged over the seeds it finished (mean, spread, per-seed accuracies), with the configs
    of those seeds, in the grid's order."""
    order = [name for name in (BASE, *cfg.ablate.variants) if any(name in variants for variants, _ in per_seed.values())]
    configs, pooled = {}, {}
    for name in order:
        ran = [(variants[name], results[name]) for variants, results in per_seed.values() if name in variants]
        configs[name] = [variant for seed_variants, _ in ran for variant in seed_variants]
        pooled[name] = combine_seeds([results for _, results in ran])
    return configs, pooled


def write_ablation(cfg: RunConfig, variants: dict[str, list[RunConfig]], per_variant: dict[str, Results],
                   folder: Path) -> Path:
    results = combine_variants(cfg, variants, per_variant, folder)
    path = write_results(folder / "results.json", results)
    seeds = f"seeds {', '.join(map(str, results.seeds))}" if results.seeds else f"seed {results.seed}"
    render_report(results, folder, title=f"skintern ablate: {cfg.name} ({len(per_variant)} variants, {seeds})")
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


def reuse_compare_entry(cfg: RunConfig, base: RunConfig, seed: int) -> None:
    """Give `base` the finished entry of the ablated method that `skintern compare` of this config made for `seed`,
    when it was made under the same settings (the config digest), so the ablation trains only its variants.
    Under `internalization.enabled` the compare's saved check must exist too: the base variant has no weights to
    check."""
    method = cfg.ablate.method
    compare_dir = seed_run_dir(cfg, seed)
    source = entry_path(compare_dir, method)
    if (entry_path(base.run_dir, method).is_file() or not source.is_file()
            or load_entry(source).config_digest != config_digest(base)):
        return
    if cfg.internalization.enabled:
        if saved_internalization(compare_dir, base) is None:
            return
        atomic_write_bytes(internalization_path(base.run_dir), internalization_path(compare_dir).read_bytes())
    copy_entry(compare_dir, base.run_dir, method, base)
    print(f"ablate: {BASE} of seed {seed} reuses {source} (the compare's run under the same settings)", flush=True)


def combine_variants(cfg: RunConfig, variants: dict[str, list[RunConfig]], per_variant: dict[str, Results],
                     folder: Path) -> Results:
    """One entry per variant, labelled with its name and naming the run folders of its predictions (relative to
    `folder`, where the results go), and each variant's paired difference to `base`, paired on item and seed over the
    seeds it ran (`variants`: each variant's config per seed)."""
    method = cfg.ablate.method
    runs, rows = [], {}
    for name, results in per_variant.items():
        entry = next(e for e in results.runs if e.method == method)
        entry.label = name
        entry.prediction_dirs = {str(v.seed): Path(os.path.relpath(v.run_dir, folder)).as_posix() for v in variants[name]}
        runs.append(entry)
        seed_runs = [(variant.run_dir, variant.seed) for variant in variants[name]]
        rows[name] = [row for ds in entry.eval for row in seeded_predictions(seed_runs, method, ds)]
    domains = {d: tag for results in per_variant.values() for d, tag in (results.domains or {}).items()} or None
    comparisons = {ABLATION_COMPARISON: compare_methods(rows, BASE, groups=domain_groups(domains))} \
        if len(rows) > 1 else None
    seeds = sorted({seed for results in per_variant.values() for seed in results.seeds or [results.seed]})
    return Results(runs=runs, name=f"{cfg.name} ablations", student=cfg.student.model,
                   seed=seeds[0], seeds=seeds if len(seeds) > 1 else None,
                   config=cfg.to_dict(), comparisons=comparisons, provenance=provenance(cfg), domains=domains)
