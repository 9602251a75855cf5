"""Teacher settings: the `teacher:` section of a run YAML, plus environment fallbacks.

Defaults suit a paid API (greedy CoT, modest concurrency, patient retries); tests and
local servers override the timing fields."""

from __future__ import annotations

import os
from dataclasses import dataclass

from skintern.errors import SkinternError

DEFAULT_BASE_URL = "https://api.openai.com/v1"
LOCAL_KEY = "not-needed"  # llama.cpp / vLLM / Ollama accept any key, but the client wants one


@dataclass
class TeacherConfig:
    base_url: str | None = None  # default: $OPENAI_BASE_URL, else the OpenAI API
    model: str | None = None  # default: $SKINTERN_TEACHER_MODEL
    api_key_env: str = "OPENAI_API_KEY"  # name of the variable holding the key, never the key itself
    temperature: float = 0.0  # raise it (e.g. 0.7) when n_samples > 1, or every sample is the same
    top_p: float = 1.0
    n_samples: int = 1  # rationales sampled per question; each is its own cached request
    max_tokens: int = 512
    concurrency: int = 8  # requests in flight at once
    timeout_s: float = 60.0  # per request
    max_retries: int = 6  # retries after the first try, on 429 / 5xx / timeouts / bad bodies
    backoff_base_s: float = 1.0  # retry k waits about base * 2**k (with jitter), capped below
    backoff_max_s: float = 60.0  # also the cap on a server's Retry-After
    knowledge_attempts: int = 3  # asks per question before the knowledge counts as invalid
    cache_path: str = ".cache/teacher.sqlite"
    price_prompt_per_1m: float = 0.0  # USD per 1M prompt tokens, for the cost report
    price_completion_per_1m: float = 0.0
    prompt_template: str | None = None  # few-shot CoT template file with {question} (and {task}); wins over BBH's

    def check(self, where: str) -> None:
        """Reject values that would make a run hang or do nothing; `where` names the source."""
        positive = {"n_samples": self.n_samples, "max_tokens": self.max_tokens, "concurrency": self.concurrency,
                    "timeout_s": self.timeout_s, "knowledge_attempts": self.knowledge_attempts}
        for name, value in positive.items():
            if value <= 0:
                raise SkinternError(f"{where}: teacher.{name}: expected a positive number, got {value!r}")
        for name in ("max_retries", "backoff_base_s", "backoff_max_s", "price_prompt_per_1m",
                     "price_completion_per_1m", "temperature"):
            if getattr(self, name) < 0:
                raise SkinternError(f"{where}: teacher.{name}: expected >= 0, got {getattr(self, name)!r}")

    def endpoint(self) -> tuple[str, str, str]:
        """(base_url, model, api_key) from this config, else the environment."""
        base_url = self.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        model = self.model or os.environ.get("SKINTERN_TEACHER_MODEL")
        if not model:
            raise SkinternError("teacher.model: not set; pass --model, set teacher.model, or set SKINTERN_TEACHER_MODEL")
        key = os.environ.get(self.api_key_env, "")
        if not key and base_url.rstrip("/") == DEFAULT_BASE_URL:
            raise SkinternError(f"teacher.api_key_env: ${self.api_key_env} is not set (needed for {DEFAULT_BASE_URL})")
        return base_url, model, key or LOCAL_KEY

    def price(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.price_prompt_per_1m + completion_tokens * self.price_completion_per_1m) / 1e6
