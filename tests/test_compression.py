"""Self-information compression: keep-rate accuracy, forced tokens, order, and the cache."""

from __future__ import annotations

import re
import sys
import types

import pytest

from conftest import build_tiny_llama
from skintern.compression import (
    CompressionCache,
    LLMLingua2Compressor,
    SelfInformationCompressor,
    build_compressor,
    count_tokens,
    forced_positions,
    keep_rate,
)
from skintern.errors import SkinternError
from skintern.knowledge import KnowledgeStore

RATES = (0.2, 0.4, 0.6, 0.8)


@pytest.fixture(scope="module")
def texts(shared_data) -> list[str]:
    """Ten real knowledge blocks from different tasks."""
    records = KnowledgeStore.load(shared_data / "bbh" / "teacher" / "knowledge.jsonl").records()
    return [r.text() for r in records[::108]][:10]


@pytest.fixture(scope="module")
def tokenizer(shared_data):
    """A byte-level BPE trained in code on the knowledge texts, so tokens look like a real LM's."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [r.text() for r in KnowledgeStore.load(shared_data / "bbh" / "teacher" / "knowledge.jsonl").records()]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000, special_tokens=["<pad>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus[::4], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>")


@pytest.fixture(scope="module")
def model(tokenizer):
    return build_tiny_llama(len(tokenizer))


class ForwardCounter:
    def __init__(self, model):
        self.calls = 0
        model.register_forward_hook(self)

    def __call__(self, module, args, output):
        self.calls += 1


def _is_char_subsequence(short: str, long: str) -> bool:
    """Kept pieces appear in their original order (spaces aside: runs are joined with a space)."""
    chars = iter(long)
    return all(c in chars for c in short)


def test_keep_rate_within_005_of_rate(texts, model, tokenizer):
    compressor = SelfInformationCompressor(model, tokenizer)
    for rate in RATES:
        for text, out in zip(texts, compressor.compress_many(texts, rate)):
            enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            assert len(enc["input_ids"]) >= 60
            forced = sum(forced_positions(text, enc["offset_mapping"])) / len(enc["input_ids"])
            assert abs(keep_rate(text, out, tokenizer) - max(rate, forced)) <= 0.05, (rate, out)


def test_line_breaks_numbers_and_list_markers_survive(texts, model, tokenizer):
    compressor = SelfInformationCompressor(model, tokenizer)
    for text, out in zip(texts, compressor.compress_many(texts, 0.3)):
        assert out.count("\n") == text.count("\n")
        assert re.findall(r"\d+", out) == re.findall(r"\d+", text)
        markers = [re.match(r"\d+\.", line) for line in text.split("\n")]
        for line, marker in zip(out.split("\n"), markers):
            assert marker is None or line.startswith(marker.group())


def test_order_is_preserved(texts, model, tokenizer):
    compressor = SelfInformationCompressor(model, tokenizer)
    for rate in RATES:
        for text, out in zip(texts, compressor.compress_many(texts, rate)):
            assert _is_char_subsequence(out.replace(" ", ""), text)


def test_lower_rate_keeps_fewer_tokens(texts, model, tokenizer):
    compressor = SelfInformationCompressor(model, tokenizer)
    counts = [count_tokens(compressor.compress(texts[0], rate), tokenizer) for rate in (0.8, 0.5, 0.3)]
    assert counts[0] > counts[1] > counts[2]


def test_rate_one_is_identity_and_bad_rates_fail(texts, model, tokenizer):
    compressor = SelfInformationCompressor(model, tokenizer)
    counter = ForwardCounter(model)
    assert compressor.compress(texts[0], 1.0) == texts[0]
    assert counter.calls == 0
    for rate in (0, -0.1, 1.2, "0.5", True):
        with pytest.raises(SkinternError, match="rate"):
            compressor.compress(texts[0], rate)
    assert compressor.compress("  \n", 0.5) == "  \n"


def test_cache_scores_once_and_persists(texts, tmp_path, tokenizer):
    model = build_tiny_llama(len(tokenizer))
    counter = ForwardCounter(model)
    cache_path = tmp_path / "cache.sqlite"
    first = SelfInformationCompressor(model, tokenizer, cache=CompressionCache(cache_path))
    outs = first.compress_many(texts[:5], 0.5)
    assert counter.calls == 1  # five short texts fit one batched forward
    assert first.compress_many(texts[:5], 0.5) == outs
    first.compress_many(texts[:5], 0.35)  # token scores are reused for a new rate
    assert counter.calls == 1
    second = SelfInformationCompressor(model, tokenizer, cache=CompressionCache(cache_path))
    assert second.compress_many(texts[:5], 0.5) == outs
    second.compress(texts[0], 0.25)  # scores persisted on disk too
    assert counter.calls == 1
    assert CompressionCache(cache_path).size() == 11


def test_cache_keys_on_scorer_rate_and_text(tmp_path):
    cache = CompressionCache(tmp_path / "c.sqlite")
    cache.put("a", 0.5, "text", "t")
    assert cache.get("a", 0.5001, "text") == "t"
    assert cache.get("a", 0.6, "text") is None
    assert cache.get("b", 0.5, "text") is None
    cache.put_scores("a", "text", [1.5, float("inf")])
    assert cache.get_scores("a", "text") == [1.5, float("inf")]


def test_not_a_sqlite_file_is_a_clear_error(tmp_path):
    path = tmp_path / "c.sqlite"
    path.write_text("not a database " * 100)
    with pytest.raises(SkinternError, match="c.sqlite"):
        CompressionCache(path)


def test_long_text_is_scored_in_windows(texts, tokenizer):
    model = build_tiny_llama(len(tokenizer))
    model.config.max_position_embeddings = 48
    long_text = "\n".join(texts[:3])
    out = SelfInformationCompressor(model, tokenizer).compress(long_text, 0.5)
    assert abs(keep_rate(long_text, out, tokenizer) - 0.5) <= 0.05


def test_build_compressor(model, tokenizer, tmp_path):
    compressor = build_compressor("self-info", model=model, tokenizer=tokenizer, cache_path=tmp_path / "c.sqlite")
    assert isinstance(compressor, SelfInformationCompressor) and compressor.cache is not None
    assert compressor.name.startswith("self-info:")
    with pytest.raises(SkinternError, match="expected one of self-info, llmlingua2"):
        build_compressor("gzip")
    with pytest.raises(SkinternError, match="model_path"):
        build_compressor("llmlingua2")


def test_llmlingua2_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "llmlingua", None)
    with pytest.raises(SkinternError, match="pip install llmlingua"):
        LLMLingua2Compressor("/models/llmlingua-2")


def test_llmlingua2_wrapper_passes_rate_and_caches(monkeypatch, tmp_path):
    calls = []

    class FakePromptCompressor:
        def __init__(self, model_name, use_llmlingua2, device_map):
            assert use_llmlingua2 and device_map == "cpu"

        def compress_prompt(self, context, rate, **kwargs):
            calls.append((context, rate))
            words = context[0].split(" ")
            return {"compressed_prompt": " ".join(words[: max(1, round(rate * len(words)))])}

    monkeypatch.setitem(sys.modules, "llmlingua", types.SimpleNamespace(PromptCompressor=FakePromptCompressor))
    compressor = build_compressor("llmlingua2", model_path="/models/l2", cache_path=tmp_path / "c.sqlite")
    assert compressor.compress_many(["a b c d", "a b c d"], 0.5) == ["a b", "a b"]
    assert compressor.compress("a b c d", 0.5) == "a b"
    assert calls == [(["a b c d"], 0.5)]
