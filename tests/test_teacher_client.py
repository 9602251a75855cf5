"""Teacher client against a misbehaving in-process server: retries, timeouts, cache, accounting."""

from __future__ import annotations

import asyncio
import email.utils
import time

import pytest

from fake_openai import FakeOpenAI
from skintern.errors import SkinternError
from skintern.teacher.cache import ResponseCache
from skintern.teacher.client import TeacherClient, TeacherUnavailable, retry_after
from skintern.teacher.config import TeacherConfig

MESSAGES = [{"role": "user", "content": "Is 2 even?"}]


def config(tmp_path, server: FakeOpenAI, **overrides) -> TeacherConfig:
    settings = dict(base_url=server.base_url, model="fake", timeout_s=0.5, max_retries=3, backoff_base_s=0.001,
                    backoff_max_s=0.05, cache_path=str(tmp_path / "cache.sqlite"))
    return TeacherConfig(**{**settings, **overrides})


def ask(cfg: TeacherConfig, requests: list[tuple[list[dict], int]] = ((MESSAGES, 0),)):
    """Send `requests` (messages, sample) concurrently through a fresh client; return texts and usage."""

    async def main():
        cache = ResponseCache(cfg.cache_path)
        client = TeacherClient(cfg, cache)
        try:
            return await asyncio.gather(*(client.complete(m, sample=s) for m, s in requests)), client.usage
        finally:
            await client.aclose()
            cache.close()

    return asyncio.run(main())


def test_429_honours_retry_after_then_succeeds(tmp_path):
    with FakeOpenAI(faults=["429"], retry_after="0.3") as server:
        start = time.monotonic()
        texts, usage = ask(config(tmp_path, server, backoff_max_s=5.0))
    assert time.monotonic() - start >= 0.3  # the server's wait, not the 1 ms backoff
    assert texts[0].endswith("So the answer is yes.")
    assert (usage.requests, usage.retries, usage.answered, server.received) == (2, 1, 1, 2)


@pytest.mark.parametrize("faults", [["500", "500"], ["hang"], ["malformed"], ["empty"], ["drop"],
                                    ["malformed", "empty", "drop"]])
def test_transient_failures_are_retried(tmp_path, faults):
    with FakeOpenAI(faults=faults) as server:
        texts, usage = ask(config(tmp_path, server, timeout_s=0.3))
    assert texts[0].endswith("yes.")
    assert (usage.requests, usage.retries, usage.answered) == (len(faults) + 1, len(faults), 1)
    assert server.answered == 1


def test_retries_are_bounded_and_the_error_is_one_line(tmp_path):
    with FakeOpenAI(faults=["500"] * 10) as server:
        with pytest.raises(TeacherUnavailable) as err:
            ask(config(tmp_path, server, max_retries=2))
    assert server.received == 3
    assert "gave up after 3 tries" in str(err.value) and "\n" not in str(err.value)
    assert isinstance(err.value, SkinternError)


def test_client_errors_are_not_retried(tmp_path):
    with FakeOpenAI(faults=["400"]) as server:
        with pytest.raises(TeacherUnavailable, match="HTTP 400"):
            ask(config(tmp_path, server))
    assert server.received == 1


def test_cache_answers_repeats_for_free_and_keys_on_sample(tmp_path):
    with FakeOpenAI() as server:
        cfg = config(tmp_path, server)
        ask(cfg)
        texts, usage = ask(cfg)  # a new process-like client on the same cache file
        assert (usage.requests, usage.cached, server.answered) == (0, 1, 1)
        _, usage = ask(cfg, [(MESSAGES, 1)])  # another sample index is another request
        assert (usage.requests, server.answered) == (1, 2)
        _, usage = ask(config(tmp_path, server, temperature=0.7))  # other sampling params too
        assert server.answered == 3


def test_concurrency_is_bounded_and_identical_requests_share_one(tmp_path):
    with FakeOpenAI(delay_s=0.05) as server:
        distinct = [([{"role": "user", "content": f"q{k}"}], 0) for k in range(12)]
        _, usage = ask(config(tmp_path, server, concurrency=3), distinct + [(MESSAGES, 0)] * 5)
    assert server.max_inflight == 3
    assert server.answered == usage.answered == 13


def test_token_usage_and_cost(tmp_path):
    with FakeOpenAI() as server:  # every answer reports 10 prompt + 5 completion tokens
        cfg = config(tmp_path, server, price_prompt_per_1m=2.0, price_completion_per_1m=8.0)
        _, usage = ask(cfg, [(MESSAGES, 0), (MESSAGES, 1)])
    assert (usage.prompt_tokens, usage.completion_tokens) == (20, 10)
    assert usage.cost_usd == pytest.approx((20 * 2.0 + 10 * 8.0) / 1e6)


def test_retry_after_header_forms():
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert retry_after({"retry-after-ms": "250"}) == 0.25
    assert retry_after({"retry-after": "2"}) == 2.0
    assert 25 < retry_after({"retry-after": later}) <= 30
    assert retry_after({}) is None and retry_after({"retry-after": "soon"}) is None


def test_endpoint_from_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("SKINTERN_TEACHER_MODEL", "big-teacher")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert TeacherConfig().endpoint() == ("http://127.0.0.1:9/v1", "big-teacher", "not-needed")
    monkeypatch.delenv("SKINTERN_TEACHER_MODEL")
    with pytest.raises(SkinternError, match="teacher.model"):
        TeacherConfig().endpoint()
    monkeypatch.delenv("OPENAI_BASE_URL")
    with pytest.raises(SkinternError, match="OPENAI_API_KEY"):
        TeacherConfig(model="gpt").endpoint()


def test_local_teacher_command_uses_the_packaged_gguf_on_loopback():
    from skintern.packaged_gguf import smollm2_gguf
    from skintern.teacher.serve import server_command

    gguf = smollm2_gguf("serve-teacher")
    assert gguf.is_file() and gguf.suffix == ".gguf"
    command = server_command(gguf, 8123, 2048)
    assert command[1:3] == ["-m", "llama_cpp.server"]
    assert command[command.index("--host") + 1] == "127.0.0.1" and command[command.index("--model_alias") + 1] == gguf.stem
