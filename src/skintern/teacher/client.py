"""Async client for any OpenAI-compatible endpoint: the teacher's chat completions, and the chat or plain
completions an `eval.backend: openai` evaluation sends.

The openai SDK's own retries are off (max_retries=0) so that every HTTP request, retry and
token is counted here; answers go through the SQLite cache before anyone sees them."""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from dataclasses import asdict, dataclass

import openai

from skintern.errors import SkinternError
from skintern.teacher.cache import Answer, ResponseCache, request_key
from skintern.teacher.config import TeacherConfig

RETRY_STATUS = {408, 409, 429}  # plus every 5xx


class BadBody(Exception):
    """A 200 response that is not a usable completion (malformed JSON, no choices)."""


class TeacherUnavailable(SkinternError):
    """A request failed for good; what was answered so far is in the cache."""


@dataclass
class Usage:
    requests: int = 0  # HTTP requests sent, retries included
    answered: int = 0  # new answers stored in the cache
    cached: int = 0  # answers served from the cache (not paid again)
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def retry_after(headers) -> float | None:
    """Seconds a server asked us to wait: retry-after-ms, retry-after seconds, or an HTTP date."""
    if value := headers.get("retry-after-ms"):
        try:
            return float(value) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        return max(0.0, email.utils.mktime_tz(parsed) - time.time()) if parsed else None


def parse_body(text: str) -> Answer:
    try:
        body = json.loads(text)
        choices = body["choices"]
    except (json.JSONDecodeError, TypeError, KeyError) as e:
        raise BadBody(f"malformed response body ({type(e).__name__}: {str(e)[:80]})") from None
    if not isinstance(choices, list) or not choices:
        raise BadBody("response has no choices")
    choice = choices[0] if isinstance(choices[0], dict) else {}
    content = (choice.get("message") or {}).get("content") if "message" in choice else choice.get("text")
    if not isinstance(content, str):
        raise BadBody("response choice has no message content or text")
    usage = body.get("usage") or {}
    return Answer(content, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0),
                  choice.get("finish_reason"))


class TeacherClient:
    """Cache first, then one bounded-concurrency request with retries; identical concurrent asks share one."""

    def __init__(self, config: TeacherConfig, cache: ResponseCache, label: str = "teacher"):
        self.config, self.label = config, label  # label: what errors call the endpoint
        self.base_url, self.model, key = config.endpoint()
        self.cache = cache
        self.usage = Usage()
        self._client = openai.AsyncOpenAI(base_url=self.base_url, api_key=key, max_retries=0, timeout=config.timeout_s)
        self._sem = asyncio.Semaphore(config.concurrency)
        self._inflight: dict[str, asyncio.Task] = {}
        self._failed: TeacherUnavailable | None = None

    async def complete(self, messages: list[dict], sample: int = 0) -> str:
        """The teacher's answer to a chat under the config's sampling settings."""
        params = {"temperature": self.config.temperature, "top_p": self.config.top_p,
                  "max_tokens": self.config.max_tokens, "sample": sample}
        return (await self.ask(messages, params)).text

    async def ask(self, prompt: list[dict] | str, params: dict) -> Answer:
        """One answer from the cache or the endpoint: chat completions for a list of messages, plain completions
        for a prompt text. Every entry of `params` keys the cache and is sent, except `sample` (a sample index)."""
        key = request_key(self.base_url, self.model, prompt, params)
        if (hit := self.cache.get(key)) is not None:
            self.usage.cached += 1
            return hit
        if key not in self._inflight:
            self._inflight[key] = asyncio.ensure_future(self._fetch(key, prompt, params))
            self._inflight[key].add_done_callback(lambda _t: self._inflight.pop(key, None))
        return await asyncio.shield(self._inflight[key])

    async def _fetch(self, key: str, prompt: list[dict] | str, params: dict) -> Answer:
        async with self._sem:
            answer = await self._with_retries(prompt, params)
        field = "prompt" if isinstance(prompt, str) else "messages"
        self.cache.put(key, self.model, {"base_url": self.base_url, field: prompt, "params": params}, answer)
        u = self.usage
        u.answered += 1
        u.prompt_tokens += answer.prompt_tokens
        u.completion_tokens += answer.completion_tokens
        u.cost_usd += self.config.price(answer.prompt_tokens, answer.completion_tokens)
        return answer

    async def _send(self, prompt: list[dict] | str, params: dict):
        sent = {k: v for k, v in params.items() if k != "sample"}
        if isinstance(prompt, str):
            return await self._client.completions.with_raw_response.create(model=self.model, prompt=prompt, **sent)
        return await self._client.chat.completions.with_raw_response.create(model=self.model, messages=prompt, **sent)

    async def _with_retries(self, prompt: list[dict] | str, params: dict) -> Answer:
        cfg = self.config
        for attempt in range(cfg.max_retries + 1):
            if self._failed:  # another request gave up: send nothing new, keep what is cached
                raise self._failed
            wait = None
            try:
                self.usage.requests += 1
                raw = await self._send(prompt, params)
                return parse_body(raw.text)
            except openai.APIStatusError as e:
                if e.status_code < 500 and e.status_code not in RETRY_STATUS:
                    self._failed = TeacherUnavailable(
                        f"{self.label} {self.base_url} model {self.model!r}: HTTP {e.status_code}: {_short(e)}")
                    raise self._failed from None
                error, wait = e, retry_after(e.response.headers)
            except (openai.APITimeoutError, openai.APIConnectionError, BadBody) as e:
                error = e
            if attempt == cfg.max_retries:
                break
            self.usage.retries += 1
            await asyncio.sleep(self._delay(attempt, wait))
        self._failed = TeacherUnavailable(
            f"{self.label} {self.base_url} model {self.model!r}: gave up after {cfg.max_retries + 1} tries "
            f"({_short(error)}); answers so far are cached in {cfg.cache_path}, rerun to resume")
        raise self._failed

    def _delay(self, attempt: int, server_wait: float | None) -> float:
        """Retry-After when the server gives one, else exponential backoff with equal jitter."""
        cap = self.config.backoff_max_s
        if server_wait is not None:
            return min(server_wait, cap)
        full = min(cap, self.config.backoff_base_s * 2**attempt)
        return full / 2 + random.uniform(0, full / 2)

    async def aclose(self) -> None:
        await self._client.close()


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return f"{type(error).__name__}: {text[:160]}"
