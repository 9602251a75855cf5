"""llama-cpp-python, which `eval.backend: llamacpp` and `skintern serve-teacher` run GGUF files with.

pip compiles it on the machine with `-march=native`. On a CPU with AMX (Intel Sapphire Rapids and later) that
build repacks weights for llama.cpp's AMX kernels, which segfault at the first decode on some of these machines
(llama.cpp issue #20824; seen here with SmolLM2-135M, Q4_1 and f16): the process dies with no message. A build
for AVX2 without AMX (`PORTABLE_BUILD`, what `.ci/run` compiles) runs on every x86-64 CPU of the last decade."""

from __future__ import annotations

import sys

PORTABLE_CMAKE_ARGS = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
"""llama.cpp's CPU features for AVX2, without -march=native (so without AMX); `.ci/run` builds with these."""
PORTABLE_BUILD = f'CMAKE_ARGS="{PORTABLE_CMAKE_ARGS}" pip install --force-reinstall --no-cache-dir --no-deps llama-cpp-python'


def uses_amx() -> bool:
    """Whether the installed llama-cpp-python was built with AMX kernels (its system info says AMX_INT8 = 1)."""
    import llama_cpp

    return "AMX_INT8 = 1" in llama_cpp.llama_print_system_info().decode(errors="replace")


def warn_if_amx(who: str) -> None:
    """One line on stderr before a model loads, so that a segfault in the AMX kernels comes with its fix."""
    if uses_amx():
        print(f"skintern: warning: {who}: llama-cpp-python was built with AMX kernels, which crash on some CPUs "
              f"(llama.cpp #20824); if it segfaults, rebuild it without them: {PORTABLE_BUILD}", file=sys.stderr, flush=True)
