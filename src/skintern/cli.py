"""Thin command line over the pipeline stages. Bad input exits with code 2 and one line on stderr."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from skintern.errors import SkinternError
from skintern.teacher.cli import add_commands as add_teacher_commands


def _cmd_run(args) -> int:
    from skintern.config import load_config
    from skintern.run import dry_run, run
    from skintern.sweep import compare_seeds

    cfg = load_config(args.config, args.set)
    if args.dry_run:
        print(dry_run(cfg, compare=args.command == "compare"))
        return 0
    path = compare_seeds(cfg) if args.command == "compare" else run(cfg)
    print(f"results: {path}\nreport:  {path.parent / 'report.md'}")
    return 0


def _cmd_ablate(args) -> int:
    from skintern.ablate import ablate, dry_run_ablation
    from skintern.config import load_config

    cfg = load_config(args.config, args.set)
    only = args.variants.split(",") if args.variants else None
    if args.dry_run:
        print(dry_run_ablation(cfg, only))
        return 0
    path = ablate(cfg, only)
    print(f"results: {path}\nreport:  {path.parent / 'report.md'}")
    return 0


def _cmd_train(args) -> int:
    from skintern.config import load_config
    from skintern.run import train_only

    print(f"trained weights: {train_only(load_config(args.config, args.set))}")
    return 0


def _cmd_schedule(args) -> int:
    from skintern.config import load_config
    from skintern.methods import SKIntern

    cfg = load_config(args.config, args.set)
    print(SKIntern.describe(cfg.settings(SKIntern.name)))
    return 0


def _cmd_eval(args) -> int:
    from skintern.config import load_config
    from skintern.run import evaluate_trained

    entry = evaluate_trained(load_config(args.config, args.set), args.weights)
    for name, score in entry.eval.items():
        print(f"{name}: accuracy {100 * score.accuracy:.1f}% on {score.n} items")
    if entry.prompt_tokens_per_query is not None:  # None: the answers are not the student's (the teacher)
        print(f"prompt tokens per query: {entry.prompt_tokens_per_query:.1f}")
    return 0


def _cmd_internalization(args) -> int:
    from skintern.run import internalization_of_run

    path = internalization_of_run(args.run, args.set)
    print(f"results: {path}\nreport:  {path.parent / 'report.md'}")
    return 0


def _cmd_report(args) -> int:
    from skintern.report import merge_results, named_apart, render_report
    from skintern.results import load_results

    methods = args.methods.split(",") if args.methods else None
    loaded = named_apart([(Path(p), load_results(p)) for p in args.results])
    merged = merge_results([results for _, results in loaded], methods)
    if args.against:
        from skintern.run import paired_against

        merged.comparisons = paired_against(loaded, merged, args.against, methods)
    written = render_report(merged, args.out, title=args.title)
    print(f"report: {written['md']}")
    if args.against:
        from skintern.files import write_json

        print(f"paired differences: {write_json(Path(args.out) / 'comparisons.json', merged.comparisons)}")
    return 0


def _cmd_import_teacher(args) -> int:
    from skintern import data as D
    from skintern.teacher import import_rationales

    data_dir = D.resolve_data_dir(args.data_dir)
    tasks = args.tasks.split(",") if args.tasks else None
    examples = D.load_bbh(data_dir, args.split, tasks)
    path = args.rationales or data_dir / "bbh/teacher/code-davinci-002-cot.jsonl"
    print(import_rationales(path, examples).table())
    return 0


def _cmd_export(args) -> int:
    from skintern.export import export_run

    print(f"exported: {export_run(args.run, args.out, merge=args.merge, method=args.method, gguf=args.gguf)}")
    return 0


def _cmd_ask(args) -> int:
    from skintern import data as D
    from skintern.export import ask

    description, kind = "", "text"
    if args.task:
        data_dir = D.resolve_data_dir(args.data_dir)
        description = D.task_description(data_dir, args.task)
        kind = D.load_bbh(data_dir, "train", [args.task])[0].kind
    rationale, answer = ask(args.model, args.question, description, kind, max_new_tokens=args.max_new_tokens,
                            backend=args.backend)
    print(f"{rationale}\nanswer: {answer if answer is not None else '(none found)'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skintern", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    config_commands = [
        ("run", _cmd_run, "distill and evaluate as a config says; writes runs/<name>/results.json and report.md"),
        ("compare", _cmd_run, "train and evaluate every method of compare.methods on the same data and seeds"),
        ("ablate", _cmd_ablate, "run the paper's ablation grid (ablate.variants) as variants of the config, each against it"),
        ("train", _cmd_train, "train the config's method only (works under `accelerate launch -m skintern train`)"),
        ("schedule", _cmd_schedule, "print the SKIntern progressive schedule a config defines"),
        ("eval", _cmd_eval, "evaluate a trained student of a run with its method's inference prompt"),
    ]
    for name, func, help_text in config_commands:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("config", help="YAML config (schema: skintern.config.RunConfig)")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key, e.g. train.epochs=2")
        if name in ("run", "compare", "ablate"):
            p.add_argument("--dry-run", action="store_true",
                           help="check the config and the data and print the plan, without loading a model")
        if name == "ablate":
            p.add_argument("--variants", default=None, help="comma-separated variants to run, in this order "
                           "(default: all, in the config's order); base always runs")
        if name == "eval":
            p.add_argument("--weights", default=None, help="trained weights folder (default: the run's final training output)")
        p.set_defaults(func=func)

    p = sub.add_parser("internalization", help="the internalization check on a finished SKIntern run's stage weights "
                                               "(internalization.enabled: true); adds it to results.json and the report")
    p.add_argument("run", help="run folder (with its results.json) or the run's YAML config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key of a config file")
    p.set_defaults(func=_cmd_internalization)

    p = sub.add_parser("report", help="render one report from one or more results.json (a compare plus ablation runs)")
    p.add_argument("results", nargs="+", help="results.json files; a method found in several is labelled with its run name")
    p.add_argument("--out", required=True, help="folder for report.md, report.html and the plots")
    p.add_argument("--methods", default=None, help="comma-separated methods to keep (default: all)")
    p.add_argument("--against", default=None, metavar="LABEL",
                   help="add paired differences (95 %% CI, McNemar p) of every run against the run with this label "
                        "(a method, or 'method [results name]' when several results have it), from the per-item "
                        "predictions saved beside each results.json, paired on item and seed; also written to "
                        "comparisons.json in --out")
    p.add_argument("--title", default=None)
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("import-teacher", help="count the teacher rationales kept (correct answer) per BBH task")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--tasks", default=None, help="comma-separated BBH tasks (default: all)")
    p.add_argument("--split", default="train", choices=["train", "test"])
    p.add_argument("--rationales", default=None, help="rationale JSONL (default: the shared code-davinci-002 CoT)")
    p.set_defaults(func=_cmd_import_teacher)

    p = sub.add_parser("export", help="write a run's trained student as one model folder (merged safetensors + model card)")
    p.add_argument("run", help="run folder, e.g. runs/quickstart")
    p.add_argument("--out", default=None, help="output folder (default: RUN/export/<method>)")
    p.add_argument("--merge", action=argparse.BooleanOptionalAction, default=True, help="fold LoRA into the weights (default) or keep the adapter")
    p.add_argument("--method", default=None, help="which trained method of a compare run (default: the config's method)")
    p.add_argument("--gguf", default=None, metavar="f16|q8_0",
                   help="also write a GGUF file with llama.cpp's converter (pip install 'skintern[gguf]'); the Modelfile uses it")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("ask", help="answer one question with a student from the question alone (rationale + answer)")
    p.add_argument("model", help="exported folder, student alias, local model folder or hub id")
    p.add_argument("question")
    p.add_argument("--task", default=None, help="BBH task: adds its description to the prompt and picks the answer format")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--backend", default="hf", choices=["auto", "hf", "vllm"], help="generation engine (as eval.backend)")
    p.set_defaults(func=_cmd_ask)

    add_teacher_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SkinternError as e:
        print(f"skintern: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("skintern: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
