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
    forced_priorities,
    keep_rate,
    select_tokens,
)
from skintern.errors import SkinternError
from skintern.knowledge import KnowledgeRecord, KnowledgeStore

RATES = (0.2, 0.4, 0.6, 0.8)
SCHEDULE_RATES = (0.2, 1 / 3, 0.5, 2 / 3, 0.8)  # the keep-rates SKIntern's schedules ask for

# A number-heavy record in the shape `KnowledgeRecord.text()` gives, with a line-opening "1.5" that is no marker.
NUMBERED = KnowledgeRecord(
    "date_understanding",
    0,
    "1. Today is 12/24/1937, so tomorrow is 12/25/1937 and 10 days later is 01/04/1938.\n"
    "2) Count 3 steps of 7 days from 05/01/2021.\n- Write the answer as MM/DD/YYYY.",
    "1. A year has 365 days, 366 in a leap year such as 2020.\n1.5 weeks is 10.5 days, not 15 days.",
)


@pytest.fixture(scope="module")
def texts(shared_data) -> list[str]:
    """Ten real knowledge blocks from different tasks."""
    records = KnowledgeStore.load(shared_data / "bbh" / "teacher" / "knowledge.jsonl").records()
    return [r.text() for r in records[::108]][:10]


@pytest.fixture(scope="module")
def tokenizer(shared_data):
    """A byte-level BPE trained in code on the knowledge texts, so tokens look like a real LM's; digits
    are single tokens as in SmolLM2's, which is what makes number-heavy records long."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [r.text() for r in KnowledgeStore.load(shared_data / "bbh" / "teacher" / "knowledge.jsonl").records()]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000, special_tokens=["<pad>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus[::4], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>")


@pytest.fixture(scope="module")
def model(tokenizer):
    return build_tiny_llama(len(tokenizer))


@pytest.fixture(scope="module")
def all_texts(shared_data) -> list[str]:
    return [r.text() for r in KnowledgeStore.load(shared_data / "bbh" / "teacher" / "knowledge.jsonl").records()]


@pytest.fixture(scope="module")
def shared_compressor(model, tokenizer):
    """One compressor for the module's rate sweeps, so each record is scored once."""
    return SelfInformationCompressor(model, tokenizer)


@pytest.fixture(scope="module")
def smollm2_compressor():
    """SmolLM2-135M's own tokenizer, the one a real run measures in; the tiny in-code Llama scores
    (SmolLM2 itself takes ~15 min on 2 cores for every record: benchmarks/compression_keep_rate.py)."""
    from skintern.student import load_student

    tokenizer = load_student("smollm2-135m").tokenizer
    return SelfInformationCompressor(build_tiny_llama(len(tokenizer)), tokenizer)


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


def structure_kept(text: str, out: str) -> bool:
    """Same line breaks, both headers whole, and every "N." marker still opens its line."""
    markers = [re.match(r"\d+\.(?= )", line) for line in text.split("\n")]
    return (
        out.count("\n") == text.count("\n")
        and out.startswith("Learning summary:\n")
        and "\nSupplementary knowledge:\n" in out
        and all(m is None or line.startswith(m.group()) for line, m in zip(out.split("\n"), markers))
    )


def test_only_headers_line_breaks_and_list_markers_are_forced():
    text = NUMBERED.text()
    priority = forced_priorities(text, [(i, i + 1) for i in range(len(text))])  # one token per character
    classes = ["".join(c for c, p in zip(text, priority) if p == k) for k in range(4)]
    assert classes[:3] == ["Learning summary:Supplementary knowledge:", "\n" * 6, "1.2)-1."]
    assert len(re.findall(r"\d", classes[3])) == len(re.findall(r"\d", text)) - 3  # "1.5" opens no list item


def test_structure_is_taken_first_and_counts_against_the_budget():
    scores = [5.0, 1.0, 4.0, 2.0, 3.0, 0.5, 9.0]
    priority = [3, 0, 3, 2, 3, 1, 2]  # 0 header, 1 line break, 2 list marker, 3 free
    assert select_tokens(scores, priority, 5) == [0, 1, 3, 5, 6]
    assert select_tokens(scores, priority, 3) == [1, 3, 5]  # the budget wins; the last marker goes first
    assert select_tokens(scores, [3] * 7, 3) == [0, 2, 6]


def test_number_heavy_record_compresses_to_the_rate(model, tokenizer):
    text = NUMBERED.text()
    compressor = SelfInformationCompressor(model, tokenizer)
    for rate in (0.2, 0.5):
        out = compressor.compress(text, rate)
        assert abs(keep_rate(text, out, tokenizer) - rate) <= 0.05, (rate, out)
        assert structure_kept(text, out), out
        lines = out.split("\n")
        assert [lines[2][:2], lines[3][:1]] == ["2)", "-"], out
        assert len(re.findall(r"\d", out)) < len(re.findall(r"\d", text)) / 2


def test_too_low_a_rate_drops_the_last_markers_never_headers_or_line_breaks(model, tokenizer):
    text = NUMBERED.text()
    out = SelfInformationCompressor(model, tokenizer).compress(text, 0.1)
    assert abs(keep_rate(text, out, tokenizer) - 0.1) <= 0.05, out
    assert out.startswith("Learning summary:\n1.\n2)") and "\nSupplementary knowledge:\n" in out
    assert out.count("\n") == text.count("\n") and not structure_kept(text, out)


def test_keep_rate_within_005_of_rate(texts, model, tokenizer):
    compressor = SelfInformationCompressor(model, tokenizer)
    for rate in RATES:
        for text, out in zip(texts, compressor.compress_many(texts, rate)):
            assert count_tokens(text, tokenizer) >= 60
            assert abs(keep_rate(text, out, tokenizer) - rate) <= 0.05, (rate, out)


def _assert_keep_rate_holds_for_95_percent(texts: list[str], compressor, rate: float) -> None:
    achieved = [keep_rate(t, out, compressor.tokenizer) for t, out in zip(texts, compressor.compress_many(texts, rate))]
    misses = sorted(round(a, 3) for a in achieved if abs(a - rate) > 0.05)
    assert len(misses) <= 0.05 * len(texts), f"{len(misses)}/{len(texts)} records off by > 0.05: {misses}"


@pytest.mark.parametrize("rate", SCHEDULE_RATES, ids=lambda r: f"{r:.3f}")
def test_keep_rate_holds_for_95_percent_of_all_knowledge_records(all_texts, shared_compressor, rate):
    _assert_keep_rate_holds_for_95_percent(all_texts, shared_compressor, rate)


@pytest.mark.slow
@pytest.mark.parametrize("rate", SCHEDULE_RATES, ids=lambda r: f"{r:.3f}")
def test_keep_rate_holds_for_95_percent_of_records_in_smollm2_tokens(all_texts, smollm2_compressor, rate):
    _assert_keep_rate_holds_for_95_percent(all_texts, smollm2_compressor, rate)


@pytest.mark.parametrize("rate", (1 / 3, 0.5, 0.8), ids=lambda r: f"{r:.3f}")
def test_structure_survives_whenever_it_fits(all_texts, shared_compressor, tokenizer, rate):
    for text, out in zip(all_texts, shared_compressor.compress_many(all_texts, rate)):
        structure = sum(p < 3 for p in forced_priorities(text, tokenizer(text, return_offsets_mapping=True)["offset_mapping"]))
        assert structure <= rate * count_tokens(text, tokenizer)
        assert structure_kept(text, out), out


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


def test_cache_keys_on_scorer_rate_text_and_rule(tmp_path):
    cache = CompressionCache(tmp_path / "c.sqlite")
    cache.put("a", 0.5, "text", "t", rule="v2")
    assert cache.get("a", 0.5001, "text", rule="v2") == "t"
    assert cache.get("a", 0.6, "text", rule="v2") is None
    assert cache.get("b", 0.5, "text", rule="v2") is None
    assert cache.get("a", 0.5, "text", rule="v3") is None
    assert cache.get("a", 0.5, "text") is None
    cache.put_scores("a", "text", [1.5, float("inf")])
    assert cache.get_scores("a", "text") == [1.5, float("inf")]


def test_cache_never_returns_a_compression_made_under_the_old_rule(texts, model, tokenizer, tmp_path):
    cache = CompressionCache(tmp_path / "c.sqlite")
    compressor = SelfInformationCompressor(model, tokenizer, cache=cache)
    cache.put(compressor.name, 0.5, texts[0], "stale")  # keyed on (scorer, rate, text) only, as before the rule
    out = compressor.compress(texts[0], 0.5)
    assert out != "stale" and abs(keep_rate(texts[0], out, tokenizer) - 0.5) <= 0.05
    assert SelfInformationCompressor(model, tokenizer, cache=cache).compress(texts[0], 0.5) == out


def test_not_a_sqlite_file_is_a_clear_error(tmp_path):
    path = tmp_path / "c.sqlite"
    path.write_text("not a database " * 100)
    with pytest.raises(SkinternError, match="c.sqlite"):
        CompressionCache(path)


def _open_cache_and_write(path: str, tag: int) -> str:
    cache = CompressionCache(path)
    cache.put("s", 0.5, f"text {tag}", f"t{tag}")
    return cache.get("s", 0.5, f"text {tag}")


def test_processes_creating_one_cache_at_once_all_succeed(tmp_path):
    """Two ranks of a distributed run open a new cache together; the WAL switch must not fail one."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(6) as pool:
        for attempt in range(6):
            path = str(tmp_path / f"c{attempt}.sqlite")
            assert pool.starmap(_open_cache_and_write, [(path, i) for i in range(6)]) == [f"t{i}" for i in range(6)]
            assert CompressionCache(path).size() == 6


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
