"""The method seam and the config: no import cycle, every setting checked when the config loads (before any
model or run folder), `--dry-run` plans from the data alone, and results of the previous release still load."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from skintern.cli import main
from skintern.config import RunConfig, config_from_dict, load_config
from skintern.methods import METHODS
from skintern.results import load_results

SRC = Path(__file__).resolve().parents[1] / "src"
DOCS = Path(__file__).resolve().parents[1] / "docs"


def import_graph(src: Path, package: str) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, at top level or inside functions (a module's own package
    does not count: importing a package runs its __init__ first anyway)."""
    files = {".".join(p.relative_to(src).with_suffix("").parts).removesuffix(".__init__"): p
             for p in (src / package).rglob("*.py")}

    def owner(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in files.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                target = owner(name) if name.startswith(package) else None
                if target and target != module and not module.startswith(target + "."):
                    edges.add(target)
        graph[module] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    return next((c for n in sorted(graph) if n not in state and (c := visit(n))), None)


def test_the_package_import_graph_is_acyclic():
    graph = import_graph(SRC, "skintern")
    assert "skintern.methods.base" in graph["skintern.methods.std_cot"]  # the graph sees real edges
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


# ---------------------------------------------------------------- checked when the config loads


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(f"name: bad\noutput_dir: {tmp_path / 'runs'}\n{text}")
    return path


def test_an_old_key_with_a_bad_value_names_its_new_place(tmp_path, capsys):
    path = write(tmp_path, "knowledge:\n  missing: generate\n")  # the 0.1.0 key
    assert main(["run", str(path)]) == 2
    assert "methods.skintern.missing_knowledge: expected one of skip, teacher" in capsys.readouterr().err


def test_duplicate_keys_name_the_line(tmp_path, capsys):
    path = write(tmp_path, "train:\n  epochs: 1\n  epochs: 2\n")
    assert main(["run", str(path)]) == 2
    assert f"{path}:5: malformed YAML (duplicate key 'epochs' (first at line 4))" in capsys.readouterr().err


def test_yaml_1_2_floats_and_overrides_parse_as_floats(tmp_path):
    cfg = load_config(write(tmp_path, "train:\n  learning_rate: 1e-4\n"), ["train.warmup_ratio=5e-2"])
    assert cfg.train.learning_rate == 1e-4 and cfg.train.warmup_ratio == 0.05


def test_old_keys_are_read_at_their_new_places(tmp_path, capsys):
    text = ("schedule: {decay_stages: 2}\nknowledge: {embedder: tfidf, compressor: self-info}\n"
            "methods: {alpha: 0.3, kard_top_k: 4, answer_max_new_tokens: 8}\n")
    cfg = load_config(write(tmp_path, text), ["schedule.initial_examples=1"])
    sk = cfg.methods["skintern"]
    assert (sk.schedule.steps, sk.schedule.examples, sk.schedule.epochs) == (3, 1, 3.0) and cfg.retrieval.embedder == "tfidf"
    assert [cfg.methods[m].alpha for m in ("mt-cot", "step-by-step", "cascod")] == [0.3] * 3
    assert cfg.methods["kard"].top_k == 4 and cfg.methods["cascod"].answer_max_new_tokens == 8
    assert "old keys" in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted([*DOCS.glob("results/*/results.json"), *DOCS.glob("results-first-edition/*/results.json")])
                         + [Path(__file__).parent / "fixtures" / "results.json"], ids=lambda p: p.parent.name)
def test_results_of_the_previous_release_load(path):
    results = load_results(path)
    assert results.runs and all(run.eval for run in results.runs)
    if results.config is not None:
        cfg = config_from_dict(results.config, str(path))
        assert cfg.to_dict()["methods"].keys() == METHODS.keys()


def test_every_method_says_where_its_weights_live_without_being_built(tmp_path):
    cfg = RunConfig()
    cfg.methods["skintern"].schedule.steps = 4
    dirs = {name: cls.weights_dir(tmp_path, cfg.settings(name)) for name, cls in METHODS.items()}
    assert dirs["std-cot"] == tmp_path / "train" / "std-cot"
    assert dirs["skintern"] == tmp_path / "train" / "skintern" / "stage-3"


# ---------------------------------------------------------------- --dry-run


def test_dry_run_plans_from_the_data_without_a_model(tmp_path, shared_data, capsys, monkeypatch):
    import skintern.run

    monkeypatch.setattr(skintern.run, "load_student", lambda *a: pytest.fail("a model was loaded in a dry run"))
    cfg = {"name": "plan", "output_dir": str(tmp_path / "runs"),
           "data": {"data_dir": str(shared_data), "tasks": ["sports_understanding"], "require_knowledge": True},
           "train": {"epochs": 2},
           "eval": {"datasets": ["bbh", "arc-easy"], "per_task": 5},
           "methods": {"skintern": {"schedule": {"decay_stages": 1, "initial_examples": 2}}},
           "compare": {"methods": ["prompt", "std-cot", "mt-cot", "skintern"], "seeds": [1, 2]}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["compare", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.split()}
    assert "test items: bbh 5, arc-easy 5" in out and "seeds 1, 2" in out
    assert lines["prompt"][1] == "no"
    items = int(lines["std-cot"][2])
    assert 0 < items <= 40 and lines["std-cot"][3:5] == [str(items), "2"]
    assert lines["mt-cot"][3] == str(2 * items)  # two pairs (answer, rationale) per item
    assert lines["skintern"][3:5] == [str(2 * items), "2"]  # two stages of one epoch: the baselines' two epochs
    assert "SKIntern schedule (linear, T=2 steps, K=2 examples" in out
    assert not (tmp_path / "runs").exists()


def test_dry_run_reports_bad_data_like_a_real_run(tmp_path, capsys):
    path = write(tmp_path, f"data:\n  data_dir: {tmp_path / 'nowhere'}\n")
    assert main(["run", str(path), "--dry-run"]) == 2
    assert "data dir not found" in capsys.readouterr().err


# ---------------------------------------------------------------- adding a method


def test_a_new_method_needs_only_its_class_and_a_registry_line(tmp_path, tiny_student_dir, shared_data, monkeypatch, capsys):
    """What a new method file holds, and the registry line: config, compare, report and dry-run find it."""
    from dataclasses import dataclass

    import skintern.methods
    from skintern.methods.base import Method, MethodSettings
    from skintern.schema import check_choice
    from skintern.train import SFTExample

    @dataclass
    class EchoSettings(MethodSettings):
        cue: str = "The answer is"

        def __post_init__(self):
            check_choice("cue", self.cue, ("The answer is", "Answer:"))

    class AnswerOnly(Method):
        name = "answer-only-test"
        Settings = EchoSettings

        def prompt(self, ex):
            return f"Q: {ex.question.strip()}\n{self.settings.cue}"

        def train_pairs(self):
            return [SFTExample(ex.id, self.prompt(ex), f" {ex.answer}.") for ex in self.ctx.data.train]

    monkeypatch.setitem(skintern.methods.METHODS, AnswerOnly.name, AnswerOnly)  # the registry line
    cfg = {"name": "new", "output_dir": str(tmp_path / "runs"),
           "data": {"data_dir": str(shared_data), "tasks": ["sports_understanding"], "train_per_task": 4},
           "student": {"model": str(tiny_student_dir)},
           "train": {"finetune": "full", "max_steps": 1, "batch_size": 2, "save_steps": 10},
           "eval": {"per_task": 2, "max_new_tokens": 4},
           "methods": {"answer-only-test": {"cue": "Answer:"}},
           "compare": {"methods": ["std-cot", "answer-only-test"]}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["compare", str(path), "--dry-run"]) == 0
    assert "answer-only-test yes" in " ".join(capsys.readouterr().out.split())
    assert main(["compare", str(path)]) == 0
    results = load_results(tmp_path / "runs" / "new" / "results.json")
    assert [r.method for r in results.runs] == ["std-cot", "answer-only-test"]
    assert results.config["methods"]["answer-only-test"] == {"cue": "Answer:"}
    assert "| answer-only-test |" in (tmp_path / "runs" / "new" / "report.md").read_text()
    rows = (tmp_path / "runs" / "new" / "predictions" / "answer-only-test-bbh.jsonl").read_text().splitlines()
    assert len(rows) == 2 and results.runs[1].train["steps"] == 1
    path.write_text(yaml.safe_dump({**cfg, "methods": {"answer-only-test": {"cue": "A:"}}}))
    assert main(["compare", str(path)]) == 2
    assert "methods.answer-only-test.cue: expected one of" in capsys.readouterr().err
