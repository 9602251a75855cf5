"""vLLM generation behind `eval.backend`, for GPU machines with `pip install vllm` (never imported otherwise).

Contract with the HF backend (`evaluate.generate`): the same prompt token ids, greedy decoding,
the same max_new_tokens and stop strings, text cut the same way, so the same answers on the same
items. Kernels differ, so a near-tie between two tokens can still resolve differently in a long
generation; generated-token counts may differ by one (vLLM does not count a stop string's last token
the way HF does). The in-memory student (LoRA merged into a copy) is written to a temp folder and
loaded once per set of weights; training the model again makes the next call reload it."""

from __future__ import annotations

import gc
import importlib.util
import os
import tempfile
from collections.abc import Sequence

import torch

from skintern.errors import SkinternError

BACKENDS = ("auto", "hf", "vllm")
_engine: dict = {}  # the one live engine: {"key", "llm", "dir"}


def resolve_backend(backend: str) -> str:
    """`auto` is vLLM when it is importable and a CUDA GPU is present, else HF `generate`."""
    if backend not in BACKENDS:
        raise SkinternError(f"eval.backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    available = importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()
    if backend == "vllm" and not available:
        raise SkinternError("eval.backend: vllm needs `pip install vllm` and a CUDA GPU (use auto or hf)")
    return "vllm" if backend == "vllm" or (backend == "auto" and available) else "hf"


def _weights_key(model) -> tuple:
    """Identifies the weights: the model object plus every parameter's in-place version counter."""
    return (id(model), tuple(p._version for p in model.parameters()))


def _llm(model, tokenizer):
    from vllm import LLM

    from skintern.export import save_merged

    key = _weights_key(model)
    if _engine.get("key") != key:
        _engine.clear()
        gc.collect()
        torch.cuda.empty_cache()
        folder = tempfile.TemporaryDirectory(prefix="skintern-vllm-")
        save_merged(model, tokenizer, folder.name)
        llm = LLM(model=folder.name, tokenizer=folder.name, dtype=str(model.dtype).removeprefix("torch."), seed=0,
                  gpu_memory_utilization=float(os.environ.get("SKINTERN_VLLM_GPU_MEMORY", "0.5")))
        _engine.update(key=key, llm=llm, dir=folder)
    return _engine["llm"]


def vllm_generate(model, tokenizer, prompts: Sequence[str], max_new_tokens: int, stop_strings: Sequence[str]):
    """Greedy generations of `prompts` (in order) as `evaluate.Generation`s."""
    from vllm import SamplingParams

    from skintern.evaluate import Generation
    from skintern.prompts import cut_at_stop

    ids = [tokenizer(p).input_ids for p in prompts]
    params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop=list(stop_strings), skip_special_tokens=True)
    outputs = _llm(model, tokenizer).generate([{"prompt_token_ids": x} for x in ids], params, use_tqdm=False)
    return [Generation(text=cut_at_stop(out.outputs[0].text, stop_strings), prompt_tokens=len(x),
                       generated_tokens=len(out.outputs[0].token_ids)) for x, out in zip(ids, outputs)]
