"""`eval.backend: openai`: any OpenAI-compatible endpoint scored like a student, against tests/fake_openai.py."""

from __future__ import annotations

import json
import shutil

import pytest

from fake_openai import FakeOpenAI
from skintern.cli import main
from skintern.config import RunConfig
from skintern.evaluate import EvalConfig
from skintern.generation import Generator, OpenAIEvalConfig
from skintern.prompts import cot_prompt
from skintern.run import config_digest, run_settings
from test_cli import write_config

ANSWER = " Golf is played on a course. Therefore, the answer is yes."


def endpoint(server: FakeOpenAI, tmp_path, **overrides) -> OpenAIEvalConfig:
    settings = dict(base_url=server.base_url, model="served-student", max_retries=2, timeout_s=5.0,
                    cache_path=str(tmp_path / "cache.sqlite"))
    return OpenAIEvalConfig(**{**settings, **overrides})


def test_completions_send_the_prompt_verbatim_greedy_with_the_cap_and_stop_strings(tmp_path, tiny_tokenizer, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    replies = {"Is 1 odd?": (ANSWER + "\nQ: an invented next question", "stop"), "Is 2 odd?": (" Two is", "length")}
    reply = lambda body: next(r for q, r in replies.items() if q in body["prompt"])  # noqa: E731
    prompts = [cot_prompt("Answer yes or no.", "Is 1 odd?"), cot_prompt("Answer yes or no.", "Is 2 odd?")]
    with FakeOpenAI(reply=reply) as server:
        generate = Generator(None, tiny_tokenizer, backend="openai", max_new_tokens=32, endpoint=endpoint(server, tmp_path))
        out = generate(prompts)
    assert [g.text for g in out] == [ANSWER, " Two is"]  # cut at the stop string, as the HF backend cuts
    assert [g.hit_cap for g in out] == [False, True]  # finish_reason "length"
    assert [(g.prompt_tokens, g.generated_tokens) for g in out] == [(10, 5), (10, 5)]  # the server's usage
    assert server.paths == ["/v1/completions"] * 2
    sent = sorted(server.bodies, key=lambda b: b["prompt"])
    assert [b["prompt"] for b in sent] == prompts
    assert all(b["temperature"] == 0 and b["max_tokens"] == 32 and b["stop"] == ["\nQ:"] for b in sent)


def test_chat_sends_the_prompt_as_the_user_message(tmp_path, tiny_tokenizer, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with FakeOpenAI(reply=lambda body: ANSWER) as server:
        cfg = endpoint(server, tmp_path, api="chat")
        out = Generator(None, tiny_tokenizer, backend="openai", max_new_tokens=16, endpoint=cfg)(["Q: Is 1 odd?\nA:"])
    assert out[0].text == ANSWER
    assert server.paths == ["/v1/chat/completions"]
    assert server.bodies[0]["messages"] == [{"role": "user", "content": "Q: Is 1 odd?\nA:"}]


def test_a_500_is_retried_and_the_cache_answers_a_repeat(tmp_path, tiny_tokenizer, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with FakeOpenAI(reply=lambda body: ANSWER, faults=["500"]) as server:
        cfg = endpoint(server, tmp_path)
        first = Generator(None, tiny_tokenizer, backend="openai", max_new_tokens=16, endpoint=cfg)(["Q: Is 1 odd?\nA:"])
        assert (server.received, server.answered) == (2, 1)
        again = Generator(None, tiny_tokenizer, backend="openai", max_new_tokens=16, endpoint=cfg)(["Q: Is 1 odd?\nA:"])
        assert server.received == 2  # no second request
        other_cap = Generator(None, tiny_tokenizer, backend="openai", max_new_tokens=17, endpoint=cfg)(["Q: Is 1 odd?\nA:"])
        assert server.received == 3  # the sampling settings key the cache
    assert first[0] == again[0] == other_cap[0]


def openai_config(tmp_path, student, data_dir, server: FakeOpenAI, **sections):
    evaluation = {"backend": "openai", "before_training": False, "per_task": 6,
                  "openai": {"base_url": server.base_url, "model": "served-student", "max_retries": 2,
                             "cache_path": str(tmp_path / "cache.sqlite")}}
    return write_config(tmp_path, student, data_dir, data={"tasks": ["sports_understanding"], "train_per_task": 6},
                        eval=evaluation, **sections)


def test_run_scores_the_endpoint_with_the_same_prompts_and_extraction(tmp_path, tiny_student_dir, shared_data, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with FakeOpenAI(reply=lambda body: ANSWER) as server:
        config = openai_config(tmp_path, tiny_student_dir, shared_data, server, method="prompt")
        assert main(["run", str(config)]) == 0
        run_dir = tmp_path / "runs" / "tiny"
        rows = [json.loads(x) for x in (run_dir / "predictions" / "prompt-bbh.jsonl").read_text().splitlines()]
        assert server.answered == len(rows) == 6
        assert [b["prompt"] for b in server.bodies] and all(b["prompt"].endswith("A: Let's think step by step.")
                                                            for b in server.bodies)
        # every answer is "yes": the accuracy is the share of items whose gold answer is yes
        expected = sum(r["gold"] == "Yes" for r in rows) / len(rows)
        assert 0 < expected < 1
        entry = json.loads((run_dir / "results.json").read_text())["runs"][0]
        assert entry["eval"]["bbh"]["accuracy"] == pytest.approx(expected)
        assert all(r["prediction"] == "Yes" for r in rows)

        # `skintern eval` of a std-cot student the endpoint serves: no trained weights needed; its own prompt
        config = openai_config(tmp_path, tiny_student_dir, shared_data, server, method="std-cot")
        assert main(["eval", str(config)]) == 0
        assert server.answered == 12
        assert all(b["prompt"].endswith("\nA: Let's think step by step.") and "End with" not in b["prompt"]
                   for b in server.bodies[6:])
        # evaluated again from scratch: the response cache answers every prompt, nothing is sent
        shutil.rmtree(run_dir / "eval")
        assert main(["eval", str(config)]) == 0
        assert server.received == 12
    rows = [json.loads(x) for x in (run_dir / "eval" / "predictions" / "std-cot-bbh.jsonl").read_text().splitlines()]
    assert sum(r["correct"] for r in rows) / len(rows) == pytest.approx(expected)


@pytest.mark.parametrize("method, env, expected", [
    ("prompt", None, "eval.openai.api_key_env: $OPENAI_API_KEY is not set"),
    ("std-cot", "sk-test", "eval.backend: openai scores the endpoint, not what std-cot would train"),
])
def test_bad_setups_fail_in_one_line_before_any_work(tmp_path, tiny_student_dir, shared_data, monkeypatch, capsys,
                                                     method, env, expected):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    if env:
        monkeypatch.setenv("OPENAI_API_KEY", env)
    with FakeOpenAI() as server:
        config = openai_config(tmp_path, tiny_student_dir, shared_data, server, method=method)
        assert main(["run", str(config)]) == 2
        assert server.received == 0
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err
    assert not (tmp_path / "runs" / "tiny").exists()


def test_unset_backend_sections_leave_the_digest_of_earlier_runs_alone(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert {"openai", "llamacpp"}.isdisjoint(run_settings(RunConfig())["eval"])
    served = RunConfig(eval=EvalConfig(backend="openai", openai=OpenAIEvalConfig(base_url="http://h/v1", model="m")))
    assert run_settings(served)["eval"]["openai"]["model"] == "m"
    assert config_digest(served) != config_digest(RunConfig())
