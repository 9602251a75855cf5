"""Shared fixtures: a tiny Llama and a small byte-level BPE tokenizer built in code (offline, seconds)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]

CORPUS = [
    "Q: Is the following sentence plausible? \"Joao Moutinho caught the screen pass in the NFC championship.\"",
    "A: Let's think step by step. Joao Moutinho is a soccer player. The NFC championship is part of American football.",
    "Therefore, the answer is no. So the answer is yes. Options: (A) (B) (C) (D) (E) (F)",
    "Today is Christmas Eve of 1937. What is the date tomorrow in MM/DD/YYYY? 12/25/1937 01/04/1938",
    "Learning summary: 1. Identify the sport. 2. Check the event. Supplementary knowledge: 1. 2. 3.",
    "Knowledge: not True and False or ( True ) = valid invalid Yes No True False 0 1 2 3 4 5 6 7 8 9",
]


def build_tokenizer(vocab_size: int = 400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>")


def build_tiny_llama(vocab_size: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        eos_token_id=1,
        pad_token_id=0,
        bos_token_id=None,
        tie_word_embeddings=True,
        initializer_range=0.2,
    )
    return LlamaForCausalLM(config)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tokenizer()


@pytest.fixture
def tiny_model(tiny_tokenizer):
    return build_tiny_llama(len(tiny_tokenizer))


@pytest.fixture(scope="session")
def tiny_student_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A tiny student saved like any local model directory, for tests that go through `load_student`."""
    path = tmp_path_factory.mktemp("tiny-student")
    build_tiny_llama(len(tiny_tokenizer)).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The benchmark data: $SKINTERN_DATA_DIR, as the CLI reads it, else ../shared/data beside the repo."""
    path = Path(os.environ.get("SKINTERN_DATA_DIR") or REPO.parent / "shared" / "data")
    if not (path / "bbh" / "split.json").is_file():
        pytest.skip(f"shared benchmark data not found at {path} (set SKINTERN_DATA_DIR)")
    return path
