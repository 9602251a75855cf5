"""The analytic FLOP formulas must match what torch actually executes on a tiny Llama."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import (
    DynamicCache,
    Gemma3Config,
    Gemma3TextConfig,
    GPT2Config,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
)

from skintern.errors import SkinternError
from skintern.flops import (
    ModelShape,
    forward_flops,
    generation_flops,
    model_shape,
    prefill_flops,
    query_flops,
)

VOCAB = 300
TOLERANCE = 0.02


def _sdpa_cpu_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FlopCounterMode has no formula for the CPU SDPA kernel; count Q K^T and P V with GQA broadcasting."""
    batch, q_heads, q_len, head_dim = query_shape
    key_len, value_dim = key_shape[-2], value_shape[-1]
    return 2 * batch * q_heads * q_len * key_len * (head_dim + value_dim)


def _counter() -> FlopCounterMode:
    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flops}
    return FlopCounterMode(display=False, custom_mapping=mapping)


def count_flops_measured(model: torch.nn.Module, input_ids: torch.Tensor, **kw) -> float:
    """FLOPs torch dispatches for one forward, including the CPU SDPA kernel."""
    with torch.no_grad(), _counter() as counter:
        model(input_ids, **kw)
    return float(counter.get_total_flops())


@pytest.fixture(scope="module", params=["sdpa", "eager"])
def tiny_llama(request) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        num_hidden_layers=2,
        hidden_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        vocab_size=VOCAB,
        attn_implementation=request.param,
    )
    return LlamaForCausalLM(config).eval()


def _ids(n: int) -> torch.Tensor:
    return torch.randint(3, VOCAB, (1, n), generator=torch.Generator().manual_seed(n))


def _assert_close(formula: float, measured: float) -> None:
    assert measured > 0
    assert abs(formula / measured - 1) < TOLERANCE, f"formula {formula:.0f} vs measured {measured:.0f}"


def test_full_forward_matches_counter(tiny_llama):
    shape = model_shape(tiny_llama.config)
    _assert_close(forward_flops(shape, 24), count_flops_measured(tiny_llama, _ids(24)))


def test_prefill_matches_counter(tiny_llama):
    shape = model_shape(tiny_llama.config)
    measured = count_flops_measured(tiny_llama, _ids(32), logits_to_keep=1)
    _assert_close(prefill_flops(shape, 32), measured)


def test_decode_step_with_cache_matches_counter(tiny_llama):
    shape = model_shape(tiny_llama.config)
    past = 20
    cache = DynamicCache(config=tiny_llama.config)
    with torch.no_grad():
        tiny_llama(_ids(past), cache=cache, use_cache=True)
    measured = count_flops_measured(tiny_llama, _ids(1), cache=cache, use_cache=True)
    _assert_close(forward_flops(shape, 1, past_tokens=past), measured)


def test_generate_matches_prefill_plus_generation(tiny_llama):
    shape = model_shape(tiny_llama.config)
    prompt, new = 16, 10
    ids = _ids(prompt)
    with torch.no_grad(), _counter() as counter:
        out = tiny_llama.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new,
            min_new_tokens=new,
            do_sample=False,
            pad_token_id=0,
        )
    assert out.shape[1] == prompt + new
    _assert_close(query_flops(shape, prompt, new)["total"], float(counter.get_total_flops()))


def test_generation_is_sum_of_decode_steps():
    shape = ModelShape(n_layers=3, hidden=32, n_heads=4, n_kv_heads=1, head_dim=8, intermediate=96, vocab=50)
    steps = sum(forward_flops(shape, 1, past_tokens=10 + i) for i in range(6))
    assert generation_flops(shape, 10, 7) == pytest.approx(steps)
    assert generation_flops(shape, 10, 1) == 0.0
    assert query_flops(shape, 10, 7)["total"] == pytest.approx(prefill_flops(shape, 10) + steps)


def test_model_shape_qwen2():
    config = Qwen2Config(
        num_hidden_layers=3, hidden_size=96, num_attention_heads=6, num_key_value_heads=2,
        intermediate_size=256, vocab_size=1000,
    )
    assert model_shape(config) == ModelShape(3, 96, 6, 2, 16, 256, 1000, gated_mlp=True)


def test_model_shape_gemma3_uses_explicit_head_dim():
    text = Gemma3TextConfig(
        num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=1,
        head_dim=32, intermediate_size=128, vocab_size=500,
    )
    expected = ModelShape(2, 64, 4, 1, 32, 128, 500, gated_mlp=True)
    assert model_shape(text) == expected
    assert model_shape(Gemma3Config(text_config=text.to_dict())) == expected


def test_model_shape_gpt2_plain_mlp():
    shape = model_shape(GPT2Config(n_layer=2, n_embd=48, n_head=4, vocab_size=100))
    assert shape == ModelShape(2, 48, 4, 4, 12, 192, 100, gated_mlp=False)


def test_model_shape_unknown_config_names_missing_field():
    class Bare:
        hidden_size = 64
        num_attention_heads = 4

    with pytest.raises(SkinternError, match="num_hidden_layers"):
        model_shape(Bare())
