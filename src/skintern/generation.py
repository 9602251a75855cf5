"""One Generator for every pass of every method, for `ask` and for the benchmarks: greedy decoding of one
model under the `eval:` settings (backend, batch size, stop strings, token cap).

Backends share one contract: the same prompt token ids, greedy decoding, the same max_new_tokens and
stop strings, text cut the same way. `hf` batches `model.generate` by prompt length (less padding);
`vllm` (GPU machines with `pip install vllm`) writes the in-memory student (LoRA merged into a copy) to a
temp folder and loads it once per set of weights. Kernels differ, so a near-tie between two tokens can
still resolve differently in a long generation; vLLM's generated-token count may differ by one (it does
not count a stop string's last token the way HF does). `openai` sends every prompt to an OpenAI-compatible endpoint
(`eval.openai`) through the teacher's client, so it shares `skintern teach`'s concurrency, retries and response
cache; the served model decides the weights, the student only tokenizes. `llamacpp` (`pip install
llama-cpp-python`) scores a GGUF file (`eval.llamacpp`, e.g. `skintern export --gguf`) in place of the weights,
on the student tokenizer's prompt token ids."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import os
import tempfile
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import PeftModel
from tqdm.auto import tqdm

from skintern.errors import SkinternError
from skintern.llamacpp import warn_if_amx
from skintern.prompts import STOP_STRINGS, cut_at_stop
from skintern.schema import SettingError, check_choice, check_range
from skintern.student import save_merged
from skintern.teacher.cache import Answer, ResponseCache
from skintern.teacher.client import TeacherClient
from skintern.teacher.config import TeacherConfig

BACKENDS = ("auto", "hf", "vllm", "openai", "llamacpp")
APIS = ("completions", "chat")
_vllm_engine: dict = {}  # the one live vLLM engine of the process: {"key", "llm", "dir"}


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    generated_tokens: int
    hit_cap: bool = False
    """Stopped by max_new_tokens, not by EOS or a stop string: the text may be cut short."""


@dataclass
class OpenAIEvalConfig:
    """The `eval.openai:` section: the OpenAI-compatible endpoint that `eval.backend: openai` scores."""

    base_url: str
    """The endpoint, e.g. http://127.0.0.1:8080/v1 (llama.cpp, vLLM, Ollama) or https://api.openai.com/v1."""
    model: str
    """The model name the endpoint serves."""
    api_key_env: str = "OPENAI_API_KEY"
    """Name of the environment variable holding the key, never the key itself; it must be set (any value for
    a local server that takes none)."""
    api: str = "completions"
    """completions: the prompt text exactly as the student was evaluated with (plain-format students, or a
    prompt that already holds the student's chat template); chat: the prompt as one user message, templated by
    the server (teachers and chat models)."""
    concurrency: int = 8
    """Requests in flight at once (up to eval.batch_size, the prompts handed over per call)."""
    max_retries: int = 6
    """Retries after the first try, on 429 / 5xx / timeouts / malformed bodies."""
    timeout_s: float = 120.0
    """Per request."""
    cache_path: str = ".cache/teacher.sqlite"
    """The response cache, shared with `skintern teach`; keyed on endpoint, model, prompt and sampling."""

    def __post_init__(self):
        for key in ("base_url", "model", "api_key_env"):
            if not getattr(self, key).strip():
                raise SettingError(key, "expected a non-empty string")
        check_choice("api", self.api, APIS)
        check_range("concurrency", self.concurrency, 1)
        check_range("max_retries", self.max_retries, 0)
        check_range("timeout_s", self.timeout_s, 0, low_open=True)

    def check_key(self) -> None:
        if not os.environ.get(self.api_key_env):
            raise SettingError("api_key_env", f"${self.api_key_env} is not set (any value for a server that takes no key)")

    def client_config(self) -> TeacherConfig:
        """The teacher client's settings for this endpoint: greedy, backoff as for a teacher."""
        return TeacherConfig(base_url=self.base_url, model=self.model, api_key_env=self.api_key_env, temperature=0.0,
                             concurrency=self.concurrency, max_retries=self.max_retries, timeout_s=self.timeout_s,
                             cache_path=self.cache_path)


@dataclass
class LlamaCppEvalConfig:
    """The `eval.llamacpp:` section: the GGUF file that `eval.backend: llamacpp` scores with llama-cpp-python."""

    model_path: str
    """The .gguf file, e.g. what `skintern export RUN --gguf f16` wrote."""
    n_ctx: int = 4096
    """Context window in tokens: the longest prompt plus the token cap must fit."""
    n_threads: int | None = None
    """CPU threads (None: llama.cpp's default)."""

    def __post_init__(self):
        if not self.model_path.endswith(".gguf") or not Path(self.model_path).is_file():
            raise SettingError("model_path", f"expected an existing .gguf file, got {self.model_path!r}")
        check_range("n_ctx", self.n_ctx, 1)
        if self.n_threads is not None:
            check_range("n_threads", self.n_threads, 1)


def resolve_backend(backend: str) -> str:
    """`auto` is vLLM when it is importable and a CUDA GPU is present, else HF `generate`."""
    if backend not in BACKENDS:
        raise SkinternError(f"eval.backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "llamacpp" and importlib.util.find_spec("llama_cpp") is None:
        raise SkinternError("eval.backend: llamacpp needs `pip install llama-cpp-python`")
    if backend in ("openai", "llamacpp"):
        return backend
    available = importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()
    if backend == "vllm" and not available:
        raise SkinternError("eval.backend: vllm needs `pip install vllm` and a CUDA GPU (use auto or hf)")
    return "vllm" if backend == "vllm" or (backend == "auto" and available) else "hf"


class Generator:
    """Greedy generations of `model` (of the `endpoint` under the openai backend, of the `gguf` file under
    llamacpp); calling it with prompts returns one `Generation` per prompt, in order."""

    def __init__(self, model, tokenizer, *, backend: str = "hf", batch_size: int = 8, max_new_tokens: int = 256,
                 stop_strings: Sequence[str] = STOP_STRINGS, progress: bool = False,
                 endpoint: OpenAIEvalConfig | None = None, gguf: LlamaCppEvalConfig | None = None):
        self.model, self.tokenizer = model, tokenizer
        self.backend = resolve_backend(backend)
        if self.backend == "openai" and endpoint is None:
            raise SettingError("eval.openai", "required when eval.backend is openai")
        if self.backend == "llamacpp" and gguf is None:
            raise SettingError("eval.llamacpp", "required when eval.backend is llamacpp")
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.stop_strings, self.progress, self.endpoint, self.gguf = tuple(stop_strings), progress, endpoint, gguf
        self._llama = None  # the llama.cpp model, loaded on first use

    def __call__(self, prompts: Sequence[str], max_new_tokens: int | None = None) -> list[Generation]:
        cap = max_new_tokens or self.max_new_tokens
        if self.backend == "vllm":
            return self._vllm_generate(prompts, cap)
        if self.backend == "openai":
            return self._openai_generate(prompts, cap)
        if self.backend == "llamacpp":
            return self._llamacpp_generate(prompts, cap)
        return self._hf_generate(prompts, cap)

    def _llamacpp_generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[Generation]:
        """Greedy on the student tokenizer's prompt ids (the same ids HF generates from), one prompt at a time."""
        ids = [self.tokenizer(p).input_ids for p in prompts]
        longest = max((len(x) for x in ids), default=0)
        if longest + max_new_tokens > self.gguf.n_ctx:
            raise SkinternError(f"eval.llamacpp.n_ctx: a prompt of {longest} tokens plus the cap of {max_new_tokens} "
                                f"does not fit {self.gguf.n_ctx}; raise it")
        if self._llama is None:
            from llama_cpp import Llama

            warn_if_amx("eval.backend: llamacpp")
            self._llama = Llama(model_path=self.gguf.model_path, n_ctx=self.gguf.n_ctx, n_threads=self.gguf.n_threads,
                                seed=0, verbose=False)
        results = []
        for x in ids:
            out = self._llama.create_completion(x, max_tokens=max_new_tokens, temperature=0.0, stop=list(self.stop_strings))
            choice = out["choices"][0]
            results.append(Generation(text=cut_at_stop(choice["text"], self.stop_strings), prompt_tokens=len(x),
                                      generated_tokens=out["usage"]["completion_tokens"],
                                      hit_cap=choice["finish_reason"] == "length"))
        return results

    def _openai_generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[Generation]:
        """Greedy, the same cap and stop strings; a prompt's tokens are the server's count, else the student's."""
        cfg = self.endpoint
        params = {"temperature": 0.0, "max_tokens": max_new_tokens, "stop": list(self.stop_strings)}
        requests = [p if cfg.api == "completions" else [{"role": "user", "content": p}] for p in prompts]
        answers = asyncio.run(_ask_endpoint(cfg, requests, params))
        return [Generation(text=cut_at_stop(a.text, self.stop_strings),
                           prompt_tokens=a.prompt_tokens or len(self.tokenizer(p).input_ids),
                           generated_tokens=a.completion_tokens, hit_cap=a.finish_reason == "length")
                for p, a in zip(prompts, answers)]

    @torch.inference_mode()
    def _hf_generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[Generation]:
        model, tokenizer = self.model, self.tokenizer
        model.eval()
        tokenizer.padding_side = "left"
        lengths = [len(tokenizer(p).input_ids) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
        results: list[Generation | None] = [None] * len(prompts)
        bar = tqdm(total=len(prompts), desc="generate", disable=not self.progress, unit="q")
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True).to(model.device)
            with merged_lora(model):
                out = model.generate(
                    **batch,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    stop_strings=list(self.stop_strings),
                    tokenizer=tokenizer,
                    pad_token_id=tokenizer.pad_token_id,
                )
            new = out[:, batch["input_ids"].shape[1] :]
            for row, i in enumerate(idx):
                ids = new[row].tolist()
                n = generated_length(ids, tokenizer)
                full = tokenizer.decode(ids[:n], skip_special_tokens=True)
                text = cut_at_stop(full, self.stop_strings)
                hit_cap = n >= max_new_tokens and tokenizer.eos_token_id not in ids[:n] and text == full
                results[i] = Generation(text=text, prompt_tokens=lengths[i], generated_tokens=n, hit_cap=hit_cap)
            bar.update(len(idx))
        bar.close()
        return results  # type: ignore[return-value]

    def _vllm_generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[Generation]:
        from vllm import SamplingParams

        ids = [self.tokenizer(p).input_ids for p in prompts]
        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop=list(self.stop_strings),
                                skip_special_tokens=True)
        outputs = self._vllm_llm().generate([{"prompt_token_ids": x} for x in ids], params, use_tqdm=False)
        return [Generation(text=cut_at_stop(out.outputs[0].text, self.stop_strings), prompt_tokens=len(x),
                           generated_tokens=len(out.outputs[0].token_ids), hit_cap=out.outputs[0].finish_reason == "length")
                for x, out in zip(ids, outputs)]

    def _vllm_llm(self):
        """The engine for the model's current weights (the model object plus every parameter's version counter);
        one per process, since each holds a share of the GPU's memory."""
        from vllm import LLM

        key = (id(self.model), tuple(p._version for p in self.model.parameters()))
        if _vllm_engine.get("key") != key:
            _vllm_engine.clear()
            gc.collect()
            torch.cuda.empty_cache()
            folder = tempfile.TemporaryDirectory(prefix="skintern-vllm-")
            save_merged(self.model, self.tokenizer, folder.name)
            llm = LLM(model=folder.name, tokenizer=folder.name, dtype=str(self.model.dtype).removeprefix("torch."), seed=0,
                      gpu_memory_utilization=float(os.environ.get("SKINTERN_VLLM_GPU_MEMORY", "0.5")))
            _vllm_engine.update(key=key, llm=llm, dir=folder)
        return _vllm_engine["llm"]


async def _ask_endpoint(cfg: OpenAIEvalConfig, requests: list, params: dict) -> list[Answer]:
    cache = ResponseCache(cfg.cache_path)
    client = TeacherClient(cfg.client_config(), cache, label="eval endpoint")
    try:
        return await asyncio.gather(*(client.ask(r, params) for r in requests))
    finally:
        await client.aclose()
        cache.close()


@contextmanager
def merged_lora(model):
    """Generate with LoRA weights folded into the base weights: same outputs, no per-layer adapter matmuls."""
    merge = isinstance(model, PeftModel) and not any(getattr(m, "merged", False) for m in model.modules())
    if merge:
        model.merge_adapter()
    try:
        yield model
    finally:
        if merge:
            model.unmerge_adapter()


def generated_length(ids: list[int], tokenizer) -> int:
    """Tokens actually generated: up to and including the first EOS, without the padding after it."""
    eos = tokenizer.eos_token_id
    if eos in ids:
        return ids.index(eos) + 1
    while ids and ids[-1] == tokenizer.pad_token_id:
        ids = ids[:-1]
    return len(ids)
